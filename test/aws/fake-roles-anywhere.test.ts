// The Roles Anywhere stand-in refuses what AWS refuses, each with AWS's error shape (status,
// x-amzn-ErrorType, JSON {"message"}): requests are signed by the product's SigV4-X509 signer and then
// broken one way each, so a stand-in that accepted any of them would let a signing bug through.

import assert from 'node:assert/strict';
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { type TestContext, test } from 'node:test';
import { request } from 'undici';
import { signX509Request } from '../../src/providers/aws/roles-anywhere-sign.ts';
import { DevCa } from '../helpers/pki.ts';
import {
  issueSvid,
  PROFILE_ARN,
  REGION,
  ROLE_ARN,
  SPIFFE_ID,
  type SvidOptions,
  startFakeRolesAnywhere,
  TD,
  TRUST_ANCHOR_ARN,
} from './roles-anywhere-support.ts';

interface Sent {
  status: number;
  errorType: string | undefined;
  body: Record<string, unknown>;
}

interface SendOptions {
  certificates: X509Certificate[];
  key: KeyObject;
  date?: Date;
  query?: Record<string, string>;
  body?: string;
  region?: string;
  tamper?: (headers: Record<string, string>) => void;
}

async function send(url: string, o: SendOptions): Promise<Sent> {
  const target = new URL(`${url}/sessions`);
  const query = { profileArn: PROFILE_ARN, roleArn: ROLE_ARN, trustAnchorArn: TRUST_ANCHOR_ARN, ...o.query };
  for (const [k, v] of Object.entries(query)) target.searchParams.set(k, v);
  const body = o.body ?? '{"durationSeconds":3600}';
  const signed = signX509Request({
    method: 'POST',
    url: target,
    headers: { 'content-type': 'application/json' },
    body,
    date: o.date ?? new Date(),
    region: o.region ?? REGION,
    certificates: o.certificates,
    privateKey: o.key,
  });
  o.tamper?.(signed.headers);
  const res = await request(target, { method: 'POST', headers: signed.headers, body });
  const text = await res.body.text();
  const errorType = res.headers['x-amzn-errortype'];
  return {
    status: res.statusCode,
    errorType: Array.isArray(errorType) ? errorType[0] : errorType,
    body: JSON.parse(text) as Record<string, unknown>,
  };
}

async function world(t: TestContext) {
  const ca = await DevCa.create({ trustDomain: TD });
  const fake = await startFakeRolesAnywhere(ca);
  t.after(() => fake.close());
  const svid = async (o: SvidOptions = {}, issuer: DevCa = ca) => {
    const issued = await issueSvid(issuer, o);
    const chain =
      issued.chainPem
        .match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)
        ?.map((p) => new X509Certificate(p)) ?? [];
    return { certificates: chain, key: createPrivateKey(issued.keyPem) };
  };
  return { ca, fake, svid };
}

function refused(sent: Sent, status: number, type: string, message: RegExp): void {
  assert.equal(sent.status, status, JSON.stringify(sent.body));
  assert.equal(sent.errorType, type);
  assert.match(String(sent.body['message']), message);
}

test('a correctly signed CreateSession (EC and RSA, with an intermediate) gets one credential set', async (t) => {
  const { ca, fake, svid } = await world(t);
  const ec = await send(fake.url, await svid());
  assert.equal(ec.status, 201, JSON.stringify(ec.body));
  const set = (
    ec.body['credentialSet'] as Array<{
      credentials: { accessKeyId: string };
      assumedRoleUser: { arn: string };
      sourceIdentity?: string;
    }>
  )[0];
  assert.match(set?.credentials.accessKeyId ?? '', /^ASIA/);
  assert.match(set?.assumedRoleUser.arn ?? '', /^arn:aws:sts::111122223333:assumed-role\/app\/[0-9a-f]+$/);
  assert.equal(set?.sourceIdentity, 'app');
  assert.equal(fake.sessions()[0]?.algorithm, 'AWS4-X509-ECDSA-SHA256');
  assert.equal(fake.sessions()[0]?.principalTags['x509SAN/URI'], SPIFFE_ID);
  assert.equal(fake.sessions()[0]?.principalTags['x509Subject/CN'], 'app');
  const rsa = await send(fake.url, await svid({ keyType: 'rsa-2048' }));
  assert.equal(rsa.status, 201, JSON.stringify(rsa.body));
  assert.equal(fake.sessions()[1]?.algorithm, 'AWS4-X509-RSA-SHA256');
  const viaIntermediate = await send(fake.url, await svid({}, await ca.issueIntermediate()));
  assert.equal(viaIntermediate.status, 201, JSON.stringify(viaIntermediate.body));
});

test('a flipped signature byte, a tampered signed header, the wrong algorithm or serial are refused', async (t) => {
  const { fake, svid } = await world(t);
  const good = await svid();
  const flip = (h: Record<string, string>) => {
    const auth = h['authorization'] ?? '';
    const i = auth.length - 10;
    h['authorization'] = auth.slice(0, i) + (auth[i] === '0' ? '1' : '0') + auth.slice(i + 1);
  };
  refused(await send(fake.url, { ...good, tamper: flip }), 403, 'AccessDeniedException', /Signature validation failed/);
  refused(
    await send(fake.url, {
      ...good,
      tamper: (h) => {
        h['x-amz-date'] = h['x-amz-date']?.replace(/\dZ$/, (d) => `${(Number(d[0]) + 1) % 10}Z`) ?? '';
      },
    }),
    403,
    'AccessDeniedException',
    /Signature validation failed/,
  );
  refused(
    await send(fake.url, {
      ...good,
      tamper: (h) => {
        h['authorization'] = h['authorization']?.replace('ECDSA', 'RSA') ?? '';
      },
    }),
    403,
    'AccessDeniedException',
    /does not match the certificate's ec key/,
  );
  refused(
    await send(fake.url, {
      ...good,
      tamper: (h) => {
        h['authorization'] = h['authorization']?.replace(/Credential=\d+/, 'Credential=12345') ?? '';
      },
    }),
    403,
    'AccessDeniedException',
    /serial number/,
  );
  refused(
    await send(fake.url, { ...good, tamper: (h) => delete h['authorization'] }),
    403,
    'AccessDeniedException',
    /Authorization/,
  );
  refused(await send(fake.url, { ...good, region: 'us-east-1' }), 403, 'AccessDeniedException', /region/);
  assert.equal(fake.sessions().length, 0);
});

test('a certificate from another CA, an expired or not yet valid one, an empty subject, a stale date are refused', async (t) => {
  const { fake, svid } = await world(t);
  const other = await DevCa.create({ trustDomain: TD });
  refused(
    await send(fake.url, await svid({}, other)),
    403,
    'AccessDeniedException',
    /Untrusted certificate. The certificate does not chain to the trust anchor/,
  );
  const past = Date.now() - 3 * 3600_000;
  refused(
    await send(fake.url, await svid({ notBefore: new Date(past), notAfter: new Date(past + 3600_000) })),
    403,
    'AccessDeniedException',
    /has expired/,
  );
  refused(
    await send(
      fake.url,
      await svid({ notBefore: new Date(Date.now() + 3600_000), notAfter: new Date(Date.now() + 7200_000) }),
    ),
    403,
    'AccessDeniedException',
    /not yet valid/,
  );
  refused(await send(fake.url, await svid({ subject: '' })), 403, 'AccessDeniedException', /empty subject/);
  const good = await svid();
  refused(
    await send(fake.url, { ...good, date: new Date(Date.now() - 6 * 60_000) }),
    403,
    'AccessDeniedException',
    /Signature expired/,
  );
  refused(
    await send(fake.url, { ...good, date: new Date(Date.now() + 6 * 60_000) }),
    403,
    'AccessDeniedException',
    /Signature expired/,
  );
  assert.equal(
    (await send(fake.url, { ...good, date: new Date(Date.now() - 4 * 60_000) })).status,
    201,
    'within 5 minutes is fine',
  );
});

test('an unknown trust anchor or profile, a role the profile or trust policy does not allow, a duration out of bounds', async (t) => {
  const { fake, svid } = await world(t);
  const good = await svid();
  refused(
    await send(fake.url, { ...good, query: { trustAnchorArn: TRUST_ANCHOR_ARN.replace(/.$/, '9') } }),
    404,
    'ResourceNotFoundException',
    /Trust anchor not found/,
  );
  refused(
    await send(fake.url, { ...good, query: { profileArn: PROFILE_ARN.replace(/.$/, '9') } }),
    404,
    'ResourceNotFoundException',
    /Profile not found/,
  );
  refused(
    await send(fake.url, { ...good, query: { roleArn: 'arn:aws:iam::111122223333:role/other' } }),
    403,
    'AccessDeniedException',
    /not in the profile's roleArns/,
  );
  refused(
    await send(fake.url, await svid({ spiffeId: `spiffe://${TD}/ns/prod/sa/app` })),
    403,
    'AccessDeniedException',
    /x509SAN\/URI does not match/,
  );
  refused(
    await send(fake.url, { ...good, body: '{"durationSeconds":899}' }),
    400,
    'ValidationException',
    /between 900 and 43200/,
  );
  refused(
    await send(fake.url, { ...good, body: '{"durationSeconds":7200}' }),
    400,
    'ValidationException',
    /exceeds the profile's durationSeconds \(3600\)/,
  );
  refused(await send(fake.url, { ...good, body: 'not json' }), 400, 'ValidationException', /not JSON/);
  assert.equal(fake.sessions().length, 0);
  assert.equal(fake.stats.errors['AccessDeniedException'], 2);
});
