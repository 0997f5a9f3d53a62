// A free TCP port on 127.0.0.1, for a listener whose URL must be known before it starts (the dev issuer's `iss`,
// configs that `env` prints before the sidecar runs, the tests' sidecars). Found by binding a port and closing it,
// so the port is free only until someone else binds it. A port from `listen(0)` lies in the kernel's ephemeral range,
// which every other `listen(0)` and outgoing connection on the machine draws from: one of them could take it in
// between (tests running side by side saw EADDRINUSE). So the port is drawn at random from below that range, where
// the kernel never hands out ports on its own; one already taken there is skipped.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Ports drawn from here: above the ones systems commonly reserve, below Linux's default ephemeral range. */
export const FREE_PORT_RANGE = { first: 20_000, last: 32_767 } as const;
const ATTEMPTS = 50;

/** The kernel's ephemeral range (Linux), or Linux's default where it cannot be read. */
export function ephemeralRange(): { first: number; last: number } {
  try {
    const [first, last] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (Number.isInteger(first) && Number.isInteger(last)) return { first: first as number, last: last as number };
  } catch {
    // not Linux, or no /proc
  }
  return { first: 32_768, last: 60_999 };
}

/** Binds 127.0.0.1:`port` (0: any) and closes it again: the port it got, or undefined when it was taken. */
function bindAndRelease(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

export async function freeLoopbackPort(): Promise<number> {
  const ephemeral = ephemeralRange();
  const { first, last } = FREE_PORT_RANGE;
  // A machine whose ephemeral range reaches down into ours gets a port from listen(0), as before.
  if (ephemeral.first > first) {
    const top = Math.min(last, ephemeral.first - 1);
    for (let i = 0; i < ATTEMPTS; i++) {
      const port = first + Math.floor(Math.random() * (top - first + 1));
      if ((await bindAndRelease(port)) !== undefined) return port;
    }
  }
  const any = await bindAndRelease(0);
  if (any === undefined) throw new Error('cannot bind any port on 127.0.0.1');
  return any;
}
