// A role per container: aws.containers gives container `api` role/api and `worker` role/worker, each on its
// own container-credentials path with its own token file. The real AWS SDK for JavaScript, told only what
// `env --container` prints for its container, gets that container's role from the sidecar; the STS stand-in
// sees a distinct role per container, exchanged with the same JWT-SVID, and verifies the SigV4 signatures made
// with what was served. One container's token on another's path is refused.

import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type TestContext, test } from 'node:test';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromContainerMetadata, fromHttp } from '@aws-sdk/credential-providers';
import { validate } from '../../src/config/common.ts';
import { sidecarSchema } from '../../src/config/schema.ts';
import { appEnvironment } from '../../src/env.ts';
import { roleSessionName } from '../../src/providers/aws/exchange.ts';
import { createAwsProvider } from '../../src/providers/aws/module.ts';
import { mountProvider } from '../helpers/provider-harness.ts';
import { cli, parseEnvLines } from '../helpers/sidecar.ts';
import { ACCOUNT, AUDIENCE, awsJwtSource, ROLE_ARN, raw, SPIFFE_ID, startStsWorld, until } from './support.ts';

const API = `arn:aws:iam::${ACCOUNT}:role/api`;
const WORKER = `arn:aws:iam::${ACCOUNT}:role/worker`;

type AwsCredentialIdentity = Awaited<ReturnType<ReturnType<typeof fromHttp>>>;

function rawConfig(stateDir: string, stsEndpoint: string) {
  return {
    spiffe: { trustDomain: 'example.org', jwt: { file: '/unused/jwt-svid' } },
    server: { metadataAddress: '127.0.0.1:0', stateDir },
    aws: {
      roleArn: ROLE_ARN,
      region: 'eu-west-1',
      stsEndpoint,
      imds: false,
      containers: { api: { roleArn: API }, worker: { roleArn: WORKER, tokenFile: `${stateDir}/own/worker/token` } },
    },
  };
}

async function world(t: TestContext) {
  const sts = await startStsWorld();
  t.after(() => sts.close());
  // Both roles trust the pod's SPIFFE ID through the same OIDC provider, as the pod's role does.
  for (const arn of [API, WORKER])
    sts.fake.addRole({ arn, issuer: sts.signer.issuer, audience: AUDIENCE, subject: SPIFFE_ID });
  const sidecar = await mountProvider({
    config: (stateDir) => validate(sidecarSchema, rawConfig(stateDir, sts.fake.url), 'test config'),
    identity: { x509: undefined, jwt: awsJwtSource(sts.signer) },
    create: (ctx) => createAwsProvider(ctx),
  });
  t.after(() => sidecar.close());
  await until(() => sidecar.provider.readiness().ready, 'the pod role and both container roles');
  /** What the container is told (the same function as `env --container` and the webhook). */
  const envOf = (container?: string) => Object.fromEntries(appEnvironment(sidecar.config, sidecar.origin, container));
  return { sts, sidecar, envOf };
}

async function callerArn(stsUrl: string, credentials: AwsCredentialIdentity): Promise<string | undefined> {
  const client = new STSClient({ region: 'eu-west-1', endpoint: stsUrl, credentials, maxAttempts: 1 });
  try {
    return (await client.send(new GetCallerIdentityCommand({}))).Arn;
  } finally {
    client.destroy();
  }
}

test('each container gets its own role through fromHttp with only its own env lines; STS saw a role per container', async (t) => {
  const { sts, sidecar, envOf } = await world(t);
  const seen = new Map<string, string>();
  for (const [container, roleArn, roleName] of [
    ['api', API, 'api'],
    ['worker', WORKER, 'worker'],
    [undefined, ROLE_ARN, 'app'],
  ] as const) {
    const env = envOf(container);
    const fullUri = env['AWS_CONTAINER_CREDENTIALS_FULL_URI'] ?? '';
    const tokenFile = env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '';
    assert.equal(fullUri, `${sidecar.origin}/v1/credentials${container === undefined ? '' : `/${container}`}`);
    const creds = await fromHttp({
      awsContainerCredentialsFullUri: fullUri,
      awsContainerAuthorizationTokenFile: tokenFile,
    })();
    const issued = sts.fake.issued().find((c) => c.accessKeyId === creds.accessKeyId);
    assert.ok(issued, `${container ?? 'the pod'}: the SDK got credentials STS issued`);
    assert.equal(issued.roleArn, roleArn);
    assert.equal(issued.subject, SPIFFE_ID, 'exchanged with the pod’s own JWT-SVID');
    const session = container === undefined ? 'ns.default.sa.app' : `${container}@ns.default.sa.app`;
    assert.equal(issued.sessionName, session, 'the session name says which container');
    // The credentials sign: STS recomputes the SigV4 signature with the secret it issued.
    assert.equal(await callerArn(sts.fake.url, creds), `arn:aws:sts::${ACCOUNT}:assumed-role/${roleName}/${session}`);
    seen.set(container ?? '(pod)', tokenFile);
  }
  assert.equal(new Set(sts.fake.issued().map((c) => c.roleArn)).size, 3);
  assert.equal(sts.fake.stats.signaturesVerified, 3);

  // Three token files, three secrets; the containers' own in directories of their own, 0750, files 0640.
  const files = [...seen.values()];
  assert.equal(seen.get('worker'), `${sidecar.stateDir}/own/worker/token`);
  assert.equal(seen.get('api'), `${sidecar.stateDir}/containers/api/aws-container-token`);
  const tokens = await Promise.all(files.map((f) => readFile(f, 'utf8')));
  assert.equal(new Set(tokens).size, 3);
  for (const f of files) assert.equal((await stat(f)).mode & 0o777, 0o640);
  for (const container of ['api', 'worker'])
    assert.equal((await stat(dirname(seen.get(container) ?? '')).then((s) => s.mode)) & 0o777, 0o750);

  // A container's own lines carry nothing of the pod's: not its token file, not its path.
  const api = envOf('api');
  assert.equal(api['AWS_REGION'], 'eu-west-1');
  assert.ok(!Object.values(api).includes(envOf()['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '-'));
});

test('fromContainerMetadata with a container’s token in the environment gets that container’s role', async (t) => {
  const { sts, sidecar, envOf } = await world(t);
  const env = envOf('worker');
  const token = await readFile(env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '', 'utf8');
  const saved = {
    uri: process.env['AWS_CONTAINER_CREDENTIALS_FULL_URI'],
    token: process.env['AWS_CONTAINER_AUTHORIZATION_TOKEN'],
  };
  process.env['AWS_CONTAINER_CREDENTIALS_FULL_URI'] = `${sidecar.origin}/v1/credentials/worker`;
  process.env['AWS_CONTAINER_AUTHORIZATION_TOKEN'] = token;
  let creds: AwsCredentialIdentity;
  try {
    creds = await fromContainerMetadata()();
  } finally {
    for (const [k, v] of [
      ['AWS_CONTAINER_CREDENTIALS_FULL_URI', saved.uri],
      ['AWS_CONTAINER_AUTHORIZATION_TOKEN', saved.token],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  assert.equal(sts.fake.issued().find((c) => c.accessKeyId === creds.accessKeyId)?.roleArn, WORKER);
  assert.match((await callerArn(sts.fake.url, creds)) ?? '', /:assumed-role\/worker\/worker@ns\.default\.sa\.app$/);
});

test('one container’s token on another’s path, or the pod’s, is refused in the container-credentials shape', async (t) => {
  const { sidecar, envOf } = await world(t);
  const tokenOf = async (container?: string) =>
    readFile(envOf(container)['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '', 'utf8');
  const api = await tokenOf('api');
  const worker = await tokenOf('worker');
  const pod = await tokenOf();
  const get = (path: string, token?: string) =>
    raw(sidecar.port, 'GET', path, token === undefined ? {} : { authorization: token });

  for (const [path, token] of [
    ['/v1/credentials/worker', api],
    ['/v1/credentials/api', worker],
    ['/v1/credentials/api', pod],
    ['/v1/credentials', api],
  ] as const) {
    const answer = await get(path, token);
    assert.equal(answer.status, 403, `${path} with another's token`);
    assert.equal(answer.headers['content-type'], 'application/json');
    const body = JSON.parse(answer.body) as { code: string; message: string };
    assert.equal(body.code, 'AccessDenied');
    assert.doesNotMatch(answer.body, /AccessKeyId|SecretAccessKey/);
    for (const secret of [api, worker, pod]) assert.ok(!answer.body.includes(secret), 'no token in the answer');
  }
  assert.equal((await get('/v1/credentials/api')).status, 401);
  // A container that is not configured has no path at all.
  assert.equal((await get('/v1/credentials/other', api)).status, 404);
  // Each token on its own path.
  assert.equal(JSON.parse((await get('/v1/credentials/api', api)).body).RoleArn, API);
  assert.equal(JSON.parse((await get('/v1/credentials/worker', worker)).body).RoleArn, WORKER);
  assert.equal(JSON.parse((await get('/v1/credentials', pod)).body).RoleArn, ROLE_ARN);

  // The SDK, given the worker's path and the api's token file, gets nothing.
  await assert.rejects(
    fromHttp({
      awsContainerCredentialsFullUri: `${sidecar.origin}/v1/credentials/worker`,
      awsContainerAuthorizationTokenFile: envOf('api')['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '',
      maxRetries: 0,
    })(),
  );
});

test('a container role STS refuses keeps the sidecar unready, naming the container; the others are served', async (t) => {
  const sts = await startStsWorld();
  t.after(() => sts.close());
  // Only api's trust policy names this SPIFFE ID; worker's names another workload.
  sts.fake.addRole({ arn: API, issuer: sts.signer.issuer, audience: AUDIENCE, subject: SPIFFE_ID });
  sts.fake.addRole({
    arn: WORKER,
    issuer: sts.signer.issuer,
    audience: AUDIENCE,
    subject: 'spiffe://example.org/other',
  });
  const sidecar = await mountProvider({
    config: (stateDir) => validate(sidecarSchema, rawConfig(stateDir, sts.fake.url), 'test config'),
    identity: { x509: undefined, jwt: awsJwtSource(sts.signer) },
    create: (ctx) => createAwsProvider(ctx),
  });
  t.after(() => sidecar.close());
  await until(() => /container worker/.test(sidecar.provider.readiness().reason ?? ''), 'worker named as not ready');
  assert.equal(sidecar.provider.readiness().ready, false);
  const api = await readFile(`${sidecar.stateDir}/containers/api/aws-container-token`, 'utf8');
  const answer = await raw(sidecar.port, 'GET', '/v1/credentials/api', { authorization: api });
  assert.equal(answer.status, 200);
});

test('role session names: the container first, within STS’s 64 characters and alphabet, distinct', () => {
  assert.equal(roleSessionName(SPIFFE_ID, 'api'), 'api@ns.default.sa.app');
  const long = `spiffe://example.org/${'segment/'.repeat(8)}end`;
  const a = roleSessionName(long, 'api');
  const b = roleSessionName(long, 'apj');
  assert.ok(a.length <= 64 && /^[\w+=,.@-]{2,64}$/.test(a), a);
  assert.ok(a.startsWith('api@'), a);
  assert.notEqual(a, b, 'distinct containers stay distinct after the cut');
  const longName = 'c'.repeat(63);
  assert.match(roleSessionName(SPIFFE_ID, longName), /^[\w+=,.@-]{2,64}$/);
  assert.notEqual(roleSessionName(SPIFFE_ID, longName), roleSessionName(`${SPIFFE_ID}x`, longName));
});

test('config: container names are Kubernetes names; their roles need the container endpoint, not Roles Anywhere, nor IMDS in check', async (t) => {
  const problems = (aws: Record<string, unknown>): string => {
    try {
      validate(
        sidecarSchema,
        {
          spiffe: { trustDomain: 'example.org', jwt: { file: '/x' }, x509: {} },
          aws: { roleArn: ROLE_ARN, region: 'eu-west-1', ...aws },
        },
        'c',
      );
      return '';
    } catch (error) {
      return (error as Error).message;
    }
  };
  assert.match(problems({ containers: { API: { roleArn: API } } }), /aws\.containers\.API: must be a container name/);
  assert.match(
    problems({ containers: { api: { roleArn: 'nope' } } }),
    /aws\.containers\.api\.roleArn: must be an IAM role ARN/,
  );
  assert.match(problems({ containers: { api: { roleArn: API, extra: 1 } } }), /aws\.containers\.api/);
  assert.match(
    problems({ containerCredentials: false, containers: { api: { roleArn: API } } }),
    /aws\.containers: roles per container are served on the container-credentials endpoint/,
  );
  assert.equal(problems({ containers: { api: { roleArn: API } } }), '');

  // check refuses per-container roles beside IMDS (the pod role for every process), and prints each container's role.
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(`${tmpdir()}/per-container-`);
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = `${dir}/c.yaml`;
  const yaml = (
    imds: boolean,
  ) => `spiffe: { trustDomain: example.org, jwt: { exchange: { url: "https://issuer.example.org/token" } }, x509: { dir: ${dir} } }
server: { stateDir: ${dir} }
aws: { roleArn: "${ROLE_ARN}", region: eu-west-1, imds: ${imds}, containers: { api: { roleArn: "${API}" } } }
`;
  await writeFile(file, yaml(true));
  const on = await cli(['check', '--config', file]);
  assert.equal(on.code, 1);
  assert.match(on.stdout + on.stderr, /aws\.imds: EC2 IMDS carries no per-container secret/);
  await writeFile(file, yaml(false));
  const off = await cli(['check', '--config', file]);
  assert.doesNotMatch(off.stdout + off.stderr, /aws\.imds: EC2 IMDS/);
  assert.match(
    off.stdout,
    /app container environment of api:\n {2}AWS_CONTAINER_CREDENTIALS_FULL_URI=http:\/\/127\.0\.0\.1:8181\/v1\/credentials\/api\n/,
  );
  assert.match(off.stdout, /AWS container api: assume arn:aws:iam::111122223333:role\/api/);

  // env --container prints that container's lines, the pod's otherwise (with a note on stderr for a name it does not know).
  const api = await cli(['env', '--config', file, '--container', 'api']);
  assert.equal(api.code, 0, api.stderr);
  const lines = parseEnvLines(api.stdout);
  assert.equal(lines['AWS_CONTAINER_CREDENTIALS_FULL_URI'], 'http://127.0.0.1:8181/v1/credentials/api');
  assert.equal(lines['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'], `${dir}/containers/api/aws-container-token`);
  const other = await cli(['env', '--config', file, '--container', 'web']);
  assert.equal(
    parseEnvLines(other.stdout)['AWS_CONTAINER_CREDENTIALS_FULL_URI'],
    'http://127.0.0.1:8181/v1/credentials',
  );
  assert.match(other.stderr, /container "web" has no identity of its own/);
});

test('with IAM Roles Anywhere each container’s role is a CreateSession of its own with the same X.509-SVID', async (t) => {
  const { DevCa } = await import('../helpers/pki.ts');
  const ra = await import('./roles-anywhere-support.ts');
  const ca = await DevCa.create({ trustDomain: ra.TD });
  const trust = { trustAnchorArns: [ra.TRUST_ANCHOR_ARN], sanUri: `spiffe://${ra.TD}/ns/default/*` };
  const fake = await ra.startFakeRolesAnywhere(ca, {
    profiles: [{ arn: ra.PROFILE_ARN, roleArns: [ra.ROLE_ARN, API], durationSeconds: 3600 }],
    roles: [
      { arn: ra.ROLE_ARN, ...trust },
      { arn: API, ...trust },
    ],
  });
  t.after(() => fake.close());
  const x509 = await ra.TestX509Source.create(ca);
  const sidecar = await mountProvider({
    config: (stateDir) => {
      const base = ra.rolesAnywhereConfig({ endpoint: fake.url, stateDir });
      return validate(
        sidecarSchema,
        {
          spiffe: { trustDomain: ra.TD, x509: { dir: '/unused' } },
          server: { metadataAddress: '127.0.0.1:0', stateDir },
          aws: {
            roleArn: ra.ROLE_ARN,
            region: ra.REGION,
            imds: false,
            rolesAnywhere: base.aws?.rolesAnywhere,
            containers: { api: { roleArn: API } },
          },
        },
        'test config',
      );
    },
    identity: { x509, jwt: undefined },
    create: (ctx) => createAwsProvider(ctx),
  });
  t.after(() => sidecar.close());
  await until(() => sidecar.provider.readiness().ready, 'the pod role and api’s');
  assert.deepEqual(
    fake
      .sessions()
      .map((s) => s.roleArn)
      .sort(),
    [ra.ROLE_ARN, API].sort(),
  );
  const env = Object.fromEntries(appEnvironment(sidecar.config, sidecar.origin, 'api'));
  const creds = await fromHttp({
    awsContainerCredentialsFullUri: env['AWS_CONTAINER_CREDENTIALS_FULL_URI'] ?? '',
    awsContainerAuthorizationTokenFile: env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '',
  })();
  const body = JSON.parse(
    (
      await raw(sidecar.port, 'GET', '/v1/credentials/api', {
        authorization: await readFile(env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '', 'utf8'),
      })
    ).body,
  ) as { RoleArn: string; AccessKeyId: string };
  assert.equal(body.RoleArn, API);
  assert.equal(creds.accessKeyId, body.AccessKeyId);
  const pod = await readFile(`${sidecar.stateDir}/aws-container-token`, 'utf8');
  assert.equal((await raw(sidecar.port, 'GET', '/v1/credentials/api', { authorization: pod })).status, 403);
});
