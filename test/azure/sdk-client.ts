// The black box: the real @azure/identity in a child process that knows only its environment (the `env`
// lines). argv[2] is JSON { credential, scopes, clientId?, maxRetries? }; prints one JSON line with what it got.
import { readFileSync } from 'node:fs';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import {
  DefaultAzureCredential,
  ManagedIdentityCredential,
  type TokenCredential,
  WorkloadIdentityCredential,
} from '@azure/identity';

interface Request {
  credential: 'managed-identity' | 'default' | 'workload-identity';
  scopes: string[];
  clientId?: string;
  maxRetries?: number;
  /** Trust this PEM file in-process (tls.setDefaultCACertificates) instead of NODE_EXTRA_CA_CERTS. */
  trustCaFile?: string;
}

const request = JSON.parse(process.argv[2] ?? '{}') as Request;
// disableInstanceDiscovery: with an authority host other than Entra's own, msal would otherwise ask
// login.microsoftonline.com about it (tests never leave loopback; real deployments need not set this).
const retryOptions = {
  disableInstanceDiscovery: true,
  ...(request.maxRetries === undefined ? {} : { retryOptions: { maxRetries: request.maxRetries } }),
};

if (request.trustCaFile)
  setDefaultCACertificates([...getCACertificates('default'), readFileSync(request.trustCaFile, 'utf8')]);

function credential(): TokenCredential {
  switch (request.credential) {
    case 'managed-identity':
      return request.clientId
        ? new ManagedIdentityCredential(request.clientId, retryOptions)
        : new ManagedIdentityCredential(retryOptions);
    case 'default':
      return new DefaultAzureCredential(retryOptions);
    case 'workload-identity':
      return new WorkloadIdentityCredential(retryOptions);
  }
}

try {
  const cred = credential();
  const tokens = await Promise.all(
    request.scopes.map(async (scope) => {
      const token = await cred.getToken(scope);
      if (!token) throw new Error(`no token for ${scope}`);
      return { scope, token: token.token, expiresOnTimestamp: token.expiresOnTimestamp };
    }),
  );
  process.stdout.write(`${JSON.stringify({ ok: true, tokens })}\n`);
} catch (error) {
  const e = error as Error;
  process.stdout.write(`${JSON.stringify({ ok: false, name: e.name, message: e.message })}\n`);
}
