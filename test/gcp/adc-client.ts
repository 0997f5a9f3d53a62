// An unmodified app, run as a child process with only the `env` lines: Application Default
// Credentials through the real google-auth-library and gcp-metadata. Prints one JSON line.
// argv: [idTokenAudience] [scope,scope]

import * as gcpMetadata from 'gcp-metadata';
import { GoogleAuth } from 'google-auth-library';

const audience = process.argv[2] ?? '';
const scopes = (process.argv[3] ?? '').split(',').filter((s) => s !== '');
const out: Record<string, unknown> = { errors: {} };
const errors = out.errors as Record<string, string>;

async function attempt(name: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    out[name] = await fn();
  } catch (error) {
    errors[name] = (error as Error).message;
  }
}

await attempt('available', () => gcpMetadata.isAvailable());
const auth = new GoogleAuth();
await attempt('projectId', () => auth.getProjectId());
await attempt('metadataProjectId', () => gcpMetadata.project('project-id'));
await attempt('numericProjectId', () => gcpMetadata.project('numeric-project-id'));
await attempt('accessToken', async () => (await auth.getAccessToken()) ?? null);
await attempt('email', async () => (await auth.getCredentials()).client_email ?? null);
if (scopes.length > 0) {
  await attempt('scopedToken', async () => (await new GoogleAuth({ scopes }).getAccessToken()) ?? null);
}
if (audience !== '') {
  await attempt('idToken', async () => {
    const client = await auth.getIdTokenClient(audience);
    const headers = await client.getRequestHeaders();
    const viaProvider = await client.idTokenProvider.fetchIdToken(audience);
    return { authorization: headers.get('authorization'), viaProvider };
  });
}
process.stdout.write(`${JSON.stringify(out)}\n`);
