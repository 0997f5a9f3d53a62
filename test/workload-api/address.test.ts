// Workload API endpoint addresses (docs/spiffe.md#endpoint-address, go-spiffe workloadapi/addr_test.go).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectorError } from '../../src/base/errors.ts';
import { parseWorkloadApiAddress, unixEndpointUri } from '../../src/workload-api/address.ts';

test('accepts unix:///path, unix:/path and tcp://IP:port, normalised to grpc-js targets', () => {
  assert.deepEqual(parseWorkloadApiAddress('unix:///run/spire/agent.sock'), {
    kind: 'unix',
    path: '/run/spire/agent.sock',
    target: 'unix:///run/spire/agent.sock',
  });
  assert.deepEqual(parseWorkloadApiAddress('unix:/run/spire/agent.sock'), {
    kind: 'unix',
    path: '/run/spire/agent.sock',
    target: 'unix:///run/spire/agent.sock',
  });
  assert.deepEqual(parseWorkloadApiAddress('tcp://127.0.0.1:8000'), {
    kind: 'tcp',
    host: '127.0.0.1',
    port: 8000,
    target: 'ipv4:127.0.0.1:8000',
  });
  assert.deepEqual(parseWorkloadApiAddress('tcp://[::1]:8000'), {
    kind: 'tcp',
    host: '::1',
    port: 8000,
    target: 'ipv6:[::1]:8000',
  });
  assert.equal(unixEndpointUri('/run/spiffe/agent.sock'), 'unix:///run/spiffe/agent.sock');
});

test('refuses everything else, saying why', () => {
  const refused: [string, RegExp][] = [
    ['', /not a URI/],
    ['/run/agent.sock', /not a URI/],
    ['unix:agent.sock', /absolute path/],
    ['unix://host/agent.sock', /no authority/],
    ['unix:///', /name the socket file/],
    ['unix:///a.sock?x=1', /query/],
    ['unix:///a.sock#f', /fragment/],
    ['unix://user@/a.sock', /not a URI|user info|authority/],
    ['tcp://localhost:8000', /IP address/],
    ['tcp://127.0.0.1', /port/],
    ['tcp://127.0.0.1:0', /port/],
    ['tcp://127.0.0.1:8000/foo', /path/],
    ['tcp://user@127.0.0.1:8000', /user info/],
    ['http://127.0.0.1:8000', /scheme/],
  ];
  for (const [value, why] of refused) {
    assert.throws(
      () => parseWorkloadApiAddress(value),
      (e: unknown) => e instanceof ConnectorError && e.code === 'config_invalid' && why.test(e.message),
      value,
    );
  }
});
