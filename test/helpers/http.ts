// Raw HTTP for endpoint tests: node:http so the Host header and every other header are exactly as
// given (fetch would set its own), and requests written byte for byte.
import { request } from 'node:http';
import { connect as netConnect } from 'node:net';
import type { TestContext } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { type MetadataListener, startMetadataListener } from '../../src/metadata/listener.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One request to 127.0.0.1:`port`; Host defaults to 127.0.0.1:`port`, `headers` may override it. Rejects,
 * saying why, when the answer is cut off or does not come within `timeoutMs`.
 */
export function raw(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, headers: { host: `127.0.0.1:${port}`, ...headers }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('aborted', () => reject(new Error(`the answer to ${method} ${path} was cut off`)));
        res.on('error', reject);
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer to ${method} ${path} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Request targets a hostile or buggy client may send, that URL parsers throw on. */
export const MALFORMED_TARGETS = [
  '//a:99999/x',
  '//[zz/x',
  'http://[',
  'http://a:99999/x',
  '//',
  '*',
  '/%zz',
  '/x?%zz=%',
  '/\u00ff',
];

export interface TargetAnswer {
  /** The status line, or undefined when none came within the bound. */
  readonly statusLine: string | undefined;
  /** Whether the server closed the connection (it was asked to: Connection: close). */
  readonly closed: boolean;
}

/**
 * Sends `GET <target>` exactly as given (a client library would normalise it) with Connection: close,
 * over TLS when `tls` is set, and waits at most `timeoutMs` for the answer and the close.
 */
export function sendTarget(
  port: number,
  target: string,
  options: { timeoutMs?: number; tls?: boolean; host?: string } = {},
): Promise<TargetAnswer> {
  return new Promise((resolve) => {
    const request = `GET ${target} HTTP/1.1\r\nHost: ${options.host ?? `127.0.0.1:${port}`}\r\nConnection: close\r\n\r\n`;
    const socket = options.tls
      ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => socket.write(request, 'latin1'))
      : netConnect(port, '127.0.0.1', () => socket.write(request, 'latin1'));
    let data = '';
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const line = data.split('\r\n')[0];
      resolve({ statusLine: line ? line : undefined, closed });
    };
    const timer = setTimeout(() => finish(false), options.timeoutMs ?? 3000);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (data += d));
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
}
/**
 * A request written byte for byte on a socket (repeated headers, absolute-form targets: what node:http
 * would not send), answered and closed within `timeoutMs`. The request should say `Connection: close`.
 */
export function rawSocket(port: number, request: string, timeoutMs = 5_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms to ${JSON.stringify(request.split('\r\n')[0])}`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      const head = (split === -1 ? text : text.slice(0, split)).split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const rest = split === -1 ? '' : text.slice(split + 4);
      resolve({ status, headers, body: headers['transfer-encoding'] === 'chunked' ? dechunk(rest) : rest });
    });
    socket.end(request);
  });
}

function dechunk(text: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const eol = text.indexOf('\r\n', at);
    const size = Number.parseInt(text.slice(at, eol), 16);
    if (eol === -1 || !(size > 0)) return out;
    out += text.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

/** A metadata listener on 127.0.0.1, port 0, for one test: closed when the test ends. */
export async function testListener(
  t: TestContext,
  options: { metrics?: Metrics; onRequest?: () => void } = {},
): Promise<MetadataListener> {
  const listener = await startMetadataListener({
    host: '127.0.0.1',
    port: 0,
    metrics: options.metrics ?? new Metrics(),
    logger: silentLogger(),
    ...(options.onRequest ? { onRequest: options.onRequest } : {}),
  });
  t.after(() => listener.close(0));
  return listener;
}
