// Workload API endpoint addresses (docs/spiffe.md#endpoint-address, go-spiffe workloadapi/addr.go):
// `unix:///abs/path` (and `unix:/abs/path`) or `tcp://<IP>:<port>`, turned into a grpc-js target.
import { isIP } from 'node:net';
import { ConnectorError } from '../base/errors.ts';

export type WorkloadApiAddress =
  | { readonly kind: 'unix'; readonly path: string; readonly target: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly target: string };

/** Parses an endpoint address; throws ConnectorError('config_invalid') naming what is wrong. */
export function parseWorkloadApiAddress(value: string): WorkloadApiAddress {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(value, 'it is not a URI');
  }
  if (url.username !== '' || url.password !== '') throw invalid(value, 'it must not carry user info');
  if (url.search !== '' || value.includes('?')) throw invalid(value, 'it must not carry a query');
  if (url.hash !== '' || value.includes('#')) throw invalid(value, 'it must not carry a fragment');
  switch (url.protocol) {
    case 'unix:': {
      // `unix:foo` (opaque) and `unix://host/path` (an authority) are refused; the spec allows a path only.
      if (url.host !== '') throw invalid(value, 'a unix address has no authority: write unix:///absolute/path');
      if (!url.pathname.startsWith('/'))
        throw invalid(value, 'a unix address needs an absolute path: write unix:///absolute/path');
      let path: string;
      try {
        path = decodeURIComponent(url.pathname);
      } catch {
        throw invalid(value, 'its path is not valid percent-encoding');
      }
      if (path === '/' || path.endsWith('/')) throw invalid(value, 'its path must name the socket file');
      if (path.includes('\0')) throw invalid(value, 'its path must not contain NUL');
      return { kind: 'unix', path, target: `unix://${path}` };
    }
    case 'tcp:': {
      const host = url.hostname.replace(/^\[|\]$/g, '');
      const family = isIP(host);
      if (family === 0) throw invalid(value, 'a tcp address needs an IP address as its host (no DNS names)');
      if (url.port === '') throw invalid(value, 'a tcp address needs a port');
      if (url.pathname !== '' && url.pathname !== '/') throw invalid(value, 'a tcp address must not carry a path');
      if (/\/$/.test(value)) throw invalid(value, 'a tcp address must not carry a path');
      const port = Number(url.port);
      if (port === 0) throw invalid(value, 'a tcp address needs a port from 1 to 65535');
      return family === 4
        ? { kind: 'tcp', host, port, target: `ipv4:${host}:${port}` }
        : { kind: 'tcp', host, port, target: `ipv6:[${host}]:${port}` };
    }
    default:
      throw invalid(value, 'the scheme must be unix or tcp');
  }
}

/** The canonical `SPIFFE_ENDPOINT_SOCKET` value for a socket file path. */
export function unixEndpointUri(path: string): string {
  return `unix://${path}`;
}

function invalid(value: string, problem: string): ConnectorError {
  return new ConnectorError('config_invalid', `Workload API address ${JSON.stringify(value)} is invalid: ${problem}`);
}
