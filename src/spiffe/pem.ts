// PEM text to labelled DER blocks (RFC 7468, "lax" parsing: text between blocks is ignored). Shared by
// bundles and X.509-SVIDs; error messages name labels and positions, never block contents.
import { ConnectorError, type ErrorCode } from '../base/errors.ts';

export interface PemBlock {
  /** The label, e.g. "CERTIFICATE", "PRIVATE KEY". */
  readonly label: string;
  readonly der: Uint8Array;
}

const BLOCK = /-----BEGIN ([A-Z0-9][A-Z0-9 ]*)-----\r?\n?([\s\S]*?)-----END ([A-Z0-9][A-Z0-9 ]*)-----/g;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Decodes every PEM block in `text`. Throws ConnectorError(code) for unterminated or undecodable blocks. */
export function decodePem(text: string, what: string, code: ErrorCode): PemBlock[] {
  const blocks: PemBlock[] = [];
  let consumed = 0;
  for (const match of text.matchAll(BLOCK)) {
    const [, begin = '', body = '', end = ''] = match;
    const n = blocks.length + 1;
    if (text.slice(consumed, match.index).includes('-----BEGIN ')) {
      throw new ConnectorError(code, `${what}: PEM block ${n} has BEGIN without a matching END (truncated file?)`);
    }
    if (begin !== end) {
      throw new ConnectorError(code, `${what}: PEM block ${n} begins as "${begin}" but ends as "${end}"`);
    }
    const b64 = body.replace(/\s+/g, '');
    if (b64.includes(':')) {
      throw new ConnectorError(code, `${what}: PEM block ${n} (${begin}) has headers; encrypted PEM is not supported`);
    }
    if (b64 === '' || b64.length % 4 !== 0 || !BASE64.test(b64)) {
      throw new ConnectorError(
        code,
        `${what}: PEM block ${n} (${begin}) is not valid base64 (truncated or corrupted?)`,
      );
    }
    blocks.push({ label: begin, der: new Uint8Array(Buffer.from(b64, 'base64')) });
    consumed = match.index + match[0].length;
  }
  if (text.slice(consumed).includes('-----BEGIN ')) {
    throw new ConnectorError(
      code,
      `${what}: PEM block ${blocks.length + 1} has BEGIN without a matching END (truncated file?)`,
    );
  }
  return blocks;
}

/** PEM-encodes DER with 64-character lines. */
export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
