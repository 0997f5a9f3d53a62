// The smallest whole AWS world an end-to-end test of `run` needs: an OIDC signer, the STS stand-in that
// trusts it, a JWT-SVID file it signed and a config file for a sidecar reading that file, on free loopback
// ports. Everything stops and is removed after the test.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { freePort } from './sidecar.ts';

export const AWS_WORLD_ROLE = 'arn:aws:iam::111122223333:role/app';
export const AWS_WORLD_ID = 'spiffe://example.org/ns/default/sa/app';

export interface AwsJwtWorld {
  readonly dir: string;
  readonly configFile: string;
  readonly metadataPort: number;
  readonly opsPort: number;
  readonly sts: FakeSts;
}

/** `extraConfig` is appended to the YAML config (e.g. `log: { level: warn }`). */
export async function startAwsJwtWorld(t: TestContext, prefix: string, extraConfig = ''): Promise<AwsJwtWorld> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    providers: [{ issuer: signer.issuer, audiences: ['sts.amazonaws.com'] }],
    roles: [{ arn: AWS_WORLD_ROLE, issuer: signer.issuer, audience: 'sts.amazonaws.com' }],
  });
  t.after(() => sts.close());
  const jwtFile = join(dir, 'tokens', 'jwt-svid');
  await mkdir(join(dir, 'tokens'));
  await writeFile(jwtFile, await signer.sign({ sub: AWS_WORLD_ID, aud: 'sts.amazonaws.com', ttlSeconds: 3600 }));
  const [metadataPort, opsPort] = [await freePort(), await freePort()];
  const configFile = join(dir, 'config.yaml');
  await writeFile(
    configFile,
    `spiffe: { trustDomain: example.org, jwt: { file: ${jwtFile} } }
server: { metadataAddress: "127.0.0.1:${metadataPort}", opsAddress: "127.0.0.1:${opsPort}", stateDir: ${join(dir, 'state')}, drainSeconds: 0 }
aws: { roleArn: "${AWS_WORLD_ROLE}", region: eu-west-1, stsEndpoint: "${sts.url}" }
${extraConfig}`,
  );
  return { dir, configFile, metadataPort, opsPort, sts };
}
