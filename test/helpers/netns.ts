// The guard every process a link-local test starts runs before it sends anything: it must be inside a network
// namespace whose only interface is lo (made by the test with `unshare -n`), so that no packet can ever reach a
// link-local address of the machine's own network (169.254.169.254 answers on cloud VMs). It asks the kernel
// twice: netlink (`ip -o link show`, every interface, with or without an address) and node's own list.

import { execFileSync } from 'node:child_process';
import { networkInterfaces } from 'node:os';

/** The interfaces of this process's network namespace, or why they cannot be listed. */
export function namespaceInterfaces(): { names: string[] } | { error: string } {
  let text: string;
  try {
    text = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8', timeout: 5_000 });
  } catch (error) {
    return { error: `cannot list the interfaces with ip: ${(error as Error).message.split('\n')[0]}` };
  }
  // "1: lo: <LOOPBACK,UP> ..." or "3: veth0@if2: <...>"
  const names = text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => /^\d+:\s*([^:@\s]+)/.exec(l)?.[1] ?? `unparsed(${l.slice(0, 40)})`);
  for (const name of Object.keys(networkInterfaces())) if (!names.includes(name)) names.push(name);
  return { names };
}

/** Exits this process (code 3, after one JSON line saying why) unless lo is its namespace's only interface. */
export function abortUnlessIsolated(): string[] {
  const found = namespaceInterfaces();
  if ('error' in found || found.names.length !== 1 || found.names[0] !== 'lo') {
    const why = 'error' in found ? found.error : `interfaces: ${found.names.join(', ')}`;
    process.stdout.write(`${JSON.stringify({ ok: false, error: `not in an isolated network namespace (${why})` })}\n`);
    process.exit(3);
  }
  return found.names;
}
