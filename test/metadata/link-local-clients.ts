// Real clients as a link-local test runs them, each in its own process with nothing but PATH and HOME (and the
// one variable its case names) in a network namespace whose only interface is lo: they find the metadata
// services where the real ones are, at 169.254.169.254 and 169.254.170.2, port 80. argv[2] names the client,
// argv[3] is JSON of its inputs. Prints one JSON line. Aborts before sending anything outside such a namespace.

import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromContainerMetadata, fromInstanceMetadata, fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { ManagedIdentityCredential } from '@azure/identity';
import * as gcpMetadata from 'gcp-metadata';
import { GoogleAuth } from 'google-auth-library';
import { abortUnlessIsolated } from '../helpers/netns.ts';

abortUnlessIsolated();

const [which = '', inputText = '{}'] = process.argv.slice(2);
const input = JSON.parse(inputText) as { stsUrl: string; clientId: string };

type Provider = () => Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string }>;

async function callerArn(provider: Provider): Promise<Record<string, unknown>> {
  const credentials = await provider();
  const sts = new STSClient({ region: 'us-east-1', endpoint: input.stsUrl, credentials, maxAttempts: 1 });
  try {
    const identity = await sts.send(new GetCallerIdentityCommand({}));
    return { arn: identity.Arn, accessKeyId: credentials.accessKeyId };
  } finally {
    sts.destroy();
  }
}

async function run(): Promise<Record<string, unknown>> {
  switch (which) {
    // The JS SDK's default chain with only AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: fromHttp at 169.254.170.2.
    case 'aws-chain':
      return callerArn(fromNodeProviderChain());
    // smithy fromContainerMetadata, what the chain fell back to before fromHttp: no token, 169.254.170.2 + the path.
    case 'aws-container-metadata':
      return callerArn(fromContainerMetadata({ maxRetries: 0, timeout: 5_000 }));
    // IMDSv2 with no variable at all: http://169.254.169.254 (the provider's built-in endpoint).
    case 'aws-imds':
      return callerArn(fromInstanceMetadata({ maxRetries: 0, timeout: 5_000 }));
    // google-auth-library and gcp-metadata with no GCE_METADATA_*: they ping 169.254.169.254 and metadata.google.internal.
    case 'gcp': {
      const auth = new GoogleAuth();
      return {
        available: await gcpMetadata.isAvailable(),
        projectId: await auth.getProjectId(),
        accessToken: (await auth.getAccessToken()) ?? null,
      };
    }
    // @azure/identity with no variable: it probes IMDS at 169.254.169.254, then MSAL asks it for the token.
    case 'azure': {
      const credential = new ManagedIdentityCredential(input.clientId, { retryOptions: { maxRetries: 1 } });
      const token = await credential.getToken('https://management.azure.com/.default');
      return { token: token.token };
    }
    default:
      throw new Error(`unknown client ${which}`);
  }
}

try {
  process.stdout.write(`${JSON.stringify({ ok: true, ...(await run()) })}\n`);
} catch (error) {
  process.stdout.write(`${JSON.stringify({ ok: false, error: (error as Error).message })}\n`);
}
