// The pure parts of the Azure provider: request parsing, Entra error mapping, env lines and description.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { azureSchema } from '../../src/config/azure.ts';
import { validate } from '../../src/config/common.ts';
import { resourceProblem, scopeForResource } from '../../src/providers/azure/credential.ts';
import { azureEnv, describeAzure, tokenFilePath } from '../../src/providers/azure/env.ts';
import { parseTokenRequest } from '../../src/providers/azure/request.ts';
import {
  type AssertionFacts,
  aadstsCode,
  entraError,
  isEntraErrorWire,
} from '../../src/providers/azure/upstream-errors.ts';

const CLIENT = '11111111-2222-3333-4444-555555555555';
const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const facts: AssertionFacts = {
  tenantId: TENANT,
  clientId: CLIENT,
  issuer: 'https://oidc.example.org/spiffe',
  subject: 'spiffe://example.org/app',
  audience: 'api://AzureADTokenExchange',
};

test('scopes: <resource>/.default, a trailing slash kept (Entra v1 resource IDs)', () => {
  assert.equal(scopeForResource('https://storage.azure.com'), 'https://storage.azure.com/.default');
  assert.equal(
    scopeForResource('https://management.core.windows.net/'),
    'https://management.core.windows.net//.default',
  );
  assert.equal(resourceProblem('https://vault.azure.net'), undefined);
  assert.equal(resourceProblem('e406a681-f3d4-42a8-90b6-c2b029497af1'), undefined);
  assert.match(resourceProblem('https://vault.azure.net/.default') ?? '', /scope/);
  assert.match(resourceProblem('a b') ?? '', /whitespace/);
  assert.match(resourceProblem('x'.repeat(2049)) ?? '', /longer/);
});

test('parseTokenRequest: api-version per surface, identity selectors, duplicates', () => {
  const served = { clientId: CLIENT };
  const ok = (
    params: Record<string, unknown>,
    surface: 'azure-appservice' | 'azure-imds' | 'azure-msi' = 'azure-imds',
  ) => parseTokenRequest(params, surface, served);
  assert.deepEqual(ok({ 'api-version': '2018-02-01', resource: 'r' }), { ok: true, request: { resource: 'r' } });
  assert.equal(ok({ resource: 'r' }, 'azure-msi').ok, true);
  assert.equal(ok({ resource: 'r' }, 'azure-imds').ok, false);
  assert.equal(ok({ 'api-version': '2019-08-01', resource: 'r' }, 'azure-appservice').ok, true);
  assert.equal(ok({ 'api-version': '2018-02-01', resource: 'r' }, 'azure-appservice').ok, false);
  assert.equal(ok({ 'api-version': '2018-02-01', resource: 'r', client_id: '' }).ok, true);
  assert.equal(ok({ 'api-version': '2018-02-01', resource: 'r', clientid: CLIENT }).ok, true);
  assert.equal(ok({ 'api-version': '2018-02-01', resource: 'r', client_id: [CLIENT, CLIENT] }).ok, false);
  assert.equal(
    ok({ 'api-version': '2018-02-01', resource: 'r', object_id: CLIENT }).ok,
    false,
    'no objectId configured: not ours',
  );
  const unknown = ok({ 'api-version': '2018-02-01', resource: 'r', mi_res_id: '/subscriptions/x' });
  assert.equal(unknown.ok, false);
  if (!unknown.ok) assert.match(unknown.refusal.description, /^Identity not found/);
});

test('Entra errors: FIC mismatch says what to register and is retried; time window, discovery, malformed, throttling', () => {
  const wire = (code: number, error = 'invalid_request') => ({
    error,
    error_description: `AADSTS${code}: something.\r\nTrace ID: x`,
    error_codes: [code],
  });
  for (const code of [70021, 700211, 700212, 700213]) {
    const e = entraError({ status: 400, wire: wire(code) }, facts);
    assert.equal(e.retryable, true);
    assert.equal(e.upstreamCode, `AADSTS${code}`);
    assert.ok(
      e.message.includes(`issuer "${facts.issuer}"`) &&
        e.message.includes(`subject "${facts.subject}"`) &&
        e.message.includes(CLIENT) &&
        e.message.includes(TENANT),
    );
    assert.ok(!e.message.includes('Trace ID'), 'first line of the description only');
  }
  assert.equal(entraError({ status: 400, wire: wire(700024, 'invalid_client') }, facts).upstreamCode, 'AADSTS700024');
  assert.equal(entraError({ status: 400, wire: wire(90061) }, facts).code, 'upstream_unavailable');
  assert.equal(entraError({ status: 400, wire: wire(50027) }, facts).retryable, false);
  assert.equal(entraError({ status: 400, wire: wire(700016, 'unauthorized_client') }, facts).retryable, false);
  assert.equal(entraError({ status: 429, wire: undefined }, facts).retryable, true);
  assert.equal(entraError({ status: 503, wire: undefined }, facts).code, 'upstream_unavailable');
  assert.equal(entraError({ status: 400, wire: { error: 'temporarily_unavailable' } }, facts).retryable, true);
  assert.equal(entraError({ status: 400, wire: { error: 'invalid_grant' } }, facts).retryable, false);
  // The code comes from error_codes; the description prefix only when error_codes is absent.
  assert.equal(aadstsCode({ error: 'x', error_description: 'AADSTS123: y' }), 123);
  assert.equal(aadstsCode({ error: 'x', error_description: 'AADSTS123: y', error_codes: [456] }), 456);
  assert.equal(isEntraErrorWire({ error: 1 }), false);
  assert.equal(isEntraErrorWire({ error: 'x', error_codes: ['1'] }), false);
});

test('env lines: App Service, MSI_ENDPOINT, IMDS host, ids; file mode adds the token file and authority host', () => {
  const azure = validate(azureSchema, { tenantId: TENANT, clientId: CLIENT }, 'test');
  const lines = azureEnv(azure, '/state', 'http://127.0.0.1:8181', 'header-value');
  assert.deepEqual(lines, [
    ['IDENTITY_ENDPOINT', 'http://127.0.0.1:8181/msi/token'],
    ['IDENTITY_HEADER', 'header-value'],
    ['MSI_ENDPOINT', 'http://127.0.0.1:8181/msi/legacy'],
    ['AZURE_POD_IDENTITY_AUTHORITY_HOST', 'http://127.0.0.1:8181'],
    ['AZURE_CLIENT_ID', CLIENT],
    ['AZURE_TENANT_ID', TENANT],
  ]);
  const fileMode = validate(
    azureSchema,
    {
      tenantId: TENANT,
      clientId: CLIENT,
      tokenFile: 'azure-token',
      authorityHost: 'https://login.microsoftonline.us/',
    },
    'test',
  );
  assert.deepEqual(azureEnv(fileMode, '/state', 'http://127.0.0.1:8181', 'h').slice(6), [
    ['AZURE_FEDERATED_TOKEN_FILE', '/state/azure-token'],
    ['AZURE_AUTHORITY_HOST', 'https://login.microsoftonline.us'],
  ]);
  assert.equal(tokenFilePath({ ...fileMode, tokenFile: '/abs/token' }, '/state'), '/abs/token');
  const described = describeAzure(fileMode, '/state', 'http://127.0.0.1:8181').join('\n');
  assert.match(described, /\/state\/azure-identity-header/);
  assert.match(described, /\/state\/azure-token/);
  assert.ok(
    !describeAzure(
      validate(azureSchema, { tenantId: TENANT, clientId: CLIENT, identityHeader: 'secret-value-0123456789' }, 'test'),
      '/s',
      'http://x',
    )
      .join('\n')
      .includes('secret-value'),
  );
});

test('config: the additive keys are validated with their paths', () => {
  assert.throws(
    () => validate(azureSchema, { tenantId: TENANT, clientId: CLIENT, identityHeader: 'short' }, 'test'),
    /identityHeader: must be at least 16/,
  );
  assert.throws(
    () => validate(azureSchema, { tenantId: TENANT, clientId: CLIENT, objectId: 'nope' }, 'test'),
    /objectId/,
  );
  assert.throws(
    () => validate(azureSchema, { tenantId: TENANT, clientId: CLIENT, resourceId: '/subscriptions/x' }, 'test'),
    /resourceId/,
  );
  assert.deepEqual(validate(azureSchema, { tenantId: TENANT, clientId: CLIENT }, 'test').warmResources, [
    'https://management.azure.com',
  ]);
});
