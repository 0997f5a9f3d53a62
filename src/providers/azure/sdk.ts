// The one part of @azure/identity the sidecar uses, named: a static re-export lets the bundler keep only
// what ClientAssertionCredential needs (the package declares no side effects) instead of every credential
// of the package. module.ts imports this file only when Azure is configured.
export { ClientAssertionCredential } from '@azure/identity';
