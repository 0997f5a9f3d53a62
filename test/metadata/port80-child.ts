// Run by port80.test.ts inside a network namespace of its own, as an unprivileged user: the metadata listener
// also on 127.0.0.1:80 (server.metadataPort80) and an IMDS client that drops the port. Prints one JSON line.

import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromInstanceMetadata } from '@aws-sdk/credential-providers';
import { systemClock } from '../../src/base/clock.ts';
import { startMetadataListener } from '../../src/metadata/listener.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { createAwsProvider } from '../../src/providers/aws/module.ts';
import { awsConfig, awsJwtSource, raw, startStsWorld, until } from '../aws/support.ts';
import { abortUnlessIsolated } from '../helpers/netns.ts';

const report = (value: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(value)}\n`);
};

// Nothing is sent unless this namespace holds no interface but lo (asked of netlink too: test/helpers/netns.ts).
const interfaces = abortUnlessIsolated();

const metrics = new Metrics();
const logger = silentLogger();
let listener: Awaited<ReturnType<typeof startMetadataListener>>;
try {
  listener = await startMetadataListener({ host: '127.0.0.1', port: 0, alsoPorts: [80], metrics, logger });
} catch (error) {
  report({ ok: false, uid: process.getuid?.(), error: (error as Error).message });
  process.exit(0);
}
const sts = await startStsWorld();
const stateDir = await mkdtemp(join(tmpdir(), 'sc-port80-'));
const config = awsConfig({ stsEndpoint: sts.fake.url, stateDir });
const provider = await createAwsProvider({
  config,
  identity: { x509: undefined, jwt: awsJwtSource(sts.signer) },
  clock: systemClock,
  logger,
  metrics,
  metadataPort: listener.port,
  stateDir,
});
listener.mount(provider.surfaces);
await provider.start();
await until(() => provider.readiness().ready, 'first credentials');

// A client that drops the port: AWS_EC2_METADATA_SERVICE_ENDPOINT without one means port 80.
process.env['AWS_EC2_METADATA_SERVICE_ENDPOINT'] = 'http://127.0.0.1';
process.env['AWS_EC2_METADATA_V1_DISABLED'] = 'true';
const creds = await fromInstanceMetadata({ maxRetries: 0 })();
const client = new STSClient({ region: 'eu-west-1', endpoint: sts.fake.url, credentials: creds, maxAttempts: 1 });
const arn = (await client.send(new GetCallerIdentityCommand({}))).Arn;
client.destroy();
// On port 80 the Host must name port 80: one naming the configured port is another listener's.
const wrongHost = await raw(80, 'PUT', '/latest/api/token', {
  host: `127.0.0.1:${listener.port}`,
  'x-aws-ec2-metadata-token-ttl-seconds': '60',
});
const rightHost = await raw(80, 'PUT', '/latest/api/token', {
  host: '127.0.0.1',
  'x-aws-ec2-metadata-token-ttl-seconds': '60',
});
report({
  ok: true,
  uid: process.getuid?.(),
  interfaces,
  arn,
  signatures: sts.fake.stats.signaturesVerified,
  wrongHost: wrongHost.status,
  rightHost: rightHost.status,
});
await provider.stop();
await listener.close(0);
await sts.close();
