// A free TCP port on 127.0.0.1, for a listener whose URL must be known before it starts (the dev
// issuer's `iss`, configs that `env` prints before the sidecar runs). Listen on 0, read, close.
import { createServer } from 'node:net';

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
