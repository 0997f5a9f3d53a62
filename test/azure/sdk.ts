// Runs sdk-client.ts in a child process with exactly the given environment (plus PATH), and reads its answer.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLIENT = fileURLToPath(new URL('./sdk-client.ts', import.meta.url));

export type SdkAnswer =
  | { ok: true; tokens: Array<{ scope: string; token: string; expiresOnTimestamp: number }> }
  | { ok: false; name: string; message: string };

export interface SdkRequest {
  credential: 'managed-identity' | 'default' | 'workload-identity';
  scopes: string[];
  clientId?: string;
  maxRetries?: number;
  trustCaFile?: string;
}

export function runSdk(request: SdkRequest, env: Record<string, string>): Promise<SdkAnswer> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [CLIENT, JSON.stringify(request)],
      // A dead loopback proxy for anything not on loopback: a stray request fails here, never leaves the machine.
      {
        env: {
          PATH: process.env['PATH'] ?? '',
          HTTPS_PROXY: 'http://127.0.0.1:9',
          HTTP_PROXY: 'http://127.0.0.1:9',
          NO_PROXY: '127.0.0.1,localhost',
          ...env,
        },
        maxBuffer: 1 << 20,
      },
      (error, stdout, stderr) => {
        const line = stdout.trim().split('\n').pop() ?? '';
        try {
          resolve(JSON.parse(line) as SdkAnswer);
        } catch {
          reject(new Error(`the SDK client failed: ${error?.message ?? ''}\n${stderr}`));
        }
      },
    );
  });
}
