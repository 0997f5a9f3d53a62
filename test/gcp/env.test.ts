// The pure parts: env lines, the `check` description, and how Google's errors are classified and
// turned into metadata-server answers (retryable vs permanent; upstream text kept, tokens never).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectorError } from '../../src/base/errors.ts';
import { validate } from '../../src/config/common.ts';
import { sidecarSchema } from '../../src/config/schema.ts';
import { cloudEnvironment } from '../../src/env.ts';
import { describeGcp, gcpEnv, googleSubjectProblem, stsTokenUrl } from '../../src/providers/gcp/env.ts';
import { metadataError } from '../../src/providers/gcp/responses.ts';
import { upstreamError } from '../../src/providers/gcp/upstream-errors.ts';
import { PROJECT_ID, PROJECT_NUMBER, PROVIDER, SERVICE_ACCOUNT } from './support.ts';

function config(spiffe: object, gcp: object = {}) {
  return validate(
    sidecarSchema,
    {
      spiffe: { trustDomain: 'example.org', ...spiffe },
      gcp: { projectId: PROJECT_ID, projectNumber: PROJECT_NUMBER, workloadIdentityProvider: PROVIDER, ...gcp },
    },
    'test',
  );
}

test('env lines: the three GCE_METADATA_* as host:port without a scheme, and the project', () => {
  const c = config({ jwt: { file: '/x' } });
  assert.deepEqual(gcpEnv(c, 'http://127.0.0.1:8181'), [
    ['GCE_METADATA_HOST', '127.0.0.1:8181'],
    ['GCE_METADATA_IP', '127.0.0.1:8181'],
    ['GCE_METADATA_ROOT', '127.0.0.1:8181'],
    ['GOOGLE_CLOUD_PROJECT', PROJECT_ID],
  ]);
  assert.deepEqual(cloudEnvironment('gcp', c, 'http://127.0.0.1:8181'), gcpEnv(c, 'http://127.0.0.1:8181'));
});

test('describe: which path, which principal, the 127-byte subject limit', () => {
  const jwt = describeGcp(
    config({ jwt: { file: '/x' } }, { serviceAccount: SERVICE_ACCOUNT }),
    'http://127.0.0.1:8181',
  ).join('\n');
  assert.match(jwt, /JWT-SVID for audience \/\/iam\.googleapis\.com\/projects\/123456789012\//);
  assert.match(jwt, /impersonating app@my-project\.iam\.gserviceaccount\.com/);
  assert.match(jwt, /127 bytes/);
  const x509 = describeGcp(config({ x509: {} }), 'http://127.0.0.1:8181').join('\n');
  assert.match(x509, /X\.509-SVID over mTLS .* https:\/\/sts\.mtls\.googleapis\.com\/v1\/token/);
  assert.match(
    x509,
    /principal:\/\/iam\.googleapis\.com\/projects\/123456789012\/locations\/global\/workloadIdentityPools\/spiffe-pool\/subject\//,
  );
  const gcp = config({ x509: {} }).gcp;
  assert.ok(gcp);
  assert.equal(stsTokenUrl(gcp, false), 'https://sts.googleapis.com/v1/token');
});

test('check: a SPIFFE ID over 127 bytes is a problem when Google is configured', () => {
  const c = config({ jwt: { file: '/x' } });
  assert.equal(googleSubjectProblem(c, `spiffe://example.org/${'a'.repeat(106)}`), undefined);
  assert.match(
    googleSubjectProblem(c, `spiffe://example.org/${'a'.repeat(107)}`) ?? '',
    /128 bytes; Google limits google\.subject to 127 bytes/,
  );
});

test('config refuses a malformed provider resource name, with its path', () => {
  assert.throws(
    () =>
      config(
        { jwt: { file: '/x' } },
        { workloadIdentityProvider: 'projects/my-project/locations/global/workloadIdentityPools/p/providers/x' },
      ),
    /gcp\.workloadIdentityProvider: must be projects\/<number>/,
  );
});

test('Google errors: 5xx, 429 and network failures are retryable; refusals are not; tokens never survive', () => {
  const sts400 = upstreamError(
    {
      status: 400,
      response: {
        status: 400,
        data: {
          error: 'invalid_grant',
          error_description: 'ID Token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln has expired.',
        },
      },
    },
    'Google STS',
  );
  assert.equal(sts400.retryable, false);
  assert.equal(sts400.code, 'upstream_rejected');
  assert.equal(sts400.upstreamCode, 'invalid_grant');
  assert.equal(sts400.cause, undefined);
  assert.match(sts400.message, /invalid_grant: ID Token \[redacted\] has expired/);
  const iam403 = upstreamError(
    {
      response: {
        status: 403,
        data: {
          error: {
            code: 403,
            status: 'PERMISSION_DENIED',
            message: "Permission 'iam.serviceAccounts.getAccessToken' denied",
          },
        },
      },
    },
    'IAM',
  );
  assert.equal(iam403.retryable, false);
  assert.equal(iam403.upstreamCode, 'PERMISSION_DENIED');
  for (const status of [500, 503, 429, 408])
    assert.equal(upstreamError({ response: { status, data: {} } }, 'x').retryable, true, String(status));
  const refused = upstreamError(
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {
      code: 'ECONNREFUSED',
      config: { body: 'subject_token=secret' },
    }),
    'Google STS',
  );
  assert.equal(refused.retryable, true);
  assert.doesNotMatch(refused.message, /secret/);
  assert.equal(upstreamError(Object.assign(new Error('aborted'), { name: 'AbortError' }), 'x').code, 'timeout');
});

test('metadata answers: retryable → 503 + Retry-After, Google refusal → its 4xx', () => {
  assert.deepEqual(metadataError(new ConnectorError('upstream_unavailable', 'down', { retryable: true }), 7), {
    status: 503,
    body: 'Service Unavailable: no valid credentials yet: down\n',
    retryAfter: 7,
  });
  assert.equal(metadataError(new ConnectorError('upstream_rejected', 'nope', { upstreamStatus: 400 }), 1).status, 400);
  assert.equal(metadataError(new ConnectorError('upstream_rejected', 'nope', { upstreamStatus: 502 }), 1).status, 403);
  assert.equal(metadataError(new ConnectorError('svid_invalid', 'too long'), 1).status, 503);
});
