// Broken tokens for refusal tests.

/** The same JWT with its signature's first byte flipped (header and claims untouched). */
export function withBadSignature(token: string): string {
  const [header, payload, signature = ''] = token.split('.');
  const bytes = Buffer.from(signature, 'base64url');
  bytes[0] = (bytes[0] ?? 0) ^ 0xff;
  return `${header}.${payload}.${bytes.toString('base64url')}`;
}
