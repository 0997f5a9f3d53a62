// Reading a request body with a size limit, for every small HTTP server of ours (the issuer, the
// webhook, the cloud stand-ins): a body over the limit is not buffered, and the caller answers 413.
import type { IncomingMessage } from 'node:http';

/** The whole body, or undefined when it is (or says it is) larger than `maxBytes`; the rest is discarded. */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer | undefined> {
  if (Number(req.headers['content-length'] ?? '0') > maxBytes) {
    req.resume();
    return Promise.resolve(undefined);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        req.off('data', onData);
        req.resume(); // discard the rest; the answer closes the connection
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
