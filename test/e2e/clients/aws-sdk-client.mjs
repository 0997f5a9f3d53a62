// An unmodified app: the AWS SDK's default provider chain, configured only by the environment, then
// STS GetCallerIdentity signed with what it found. argv[2]: the STS endpoint; argv[3]: "imds" to use IMDS only.

import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromInstanceMetadata, fromNodeProviderChain } from '@aws-sdk/credential-providers';

const [endpoint, mode] = process.argv.slice(2);
const credentials = mode === 'imds' ? fromInstanceMetadata() : fromNodeProviderChain();
const resolved = await credentials();
const sts = new STSClient({ endpoint, credentials: resolved });
const identity = await sts.send(new GetCallerIdentityCommand({}));
process.stdout.write(
  JSON.stringify({
    arn: identity.Arn,
    account: identity.Account,
    accessKeyId: resolved.accessKeyId,
    region: await sts.config.region(),
  }),
);
