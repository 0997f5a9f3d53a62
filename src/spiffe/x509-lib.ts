// The one import point for @peculiar/x509 (X.509 extensions, certificate minting). Its tsyringe
// dependency refuses to load without a Reflect metadata API, so a minimal one is installed first.
import './reflect-metadata.ts';

export * as x509 from '@peculiar/x509';
