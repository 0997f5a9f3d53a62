// What the app container is told about the Workload API we serve (docs/spiffe.md#endpoint-address):
// SPIFFE_ENDPOINT_SOCKET, the variable go-spiffe, java-spiffe, py-spiffe and spiffe-helper read.

import type { EnvLines } from '../../base/env-lines.ts';
import type { SidecarConfig } from '../../config/schema.ts';
import { unixEndpointUri } from '../../workload-api/address.ts';

/** `SPIFFE_ENDPOINT_SOCKET=unix://<path>` when server.workloadApiSocket is set; nothing otherwise. */
export function workloadApiEnv(config: SidecarConfig): EnvLines {
  const path = config.server.workloadApiSocket;
  return path === undefined ? [] : [['SPIFFE_ENDPOINT_SOCKET', unixEndpointUri(path)]];
}
