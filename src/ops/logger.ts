// The JSON-lines logger. Secrets never reach it: known secret-bearing keys are redacted at the
// source, and credential types redact themselves (see redact.ts).
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

export const REDACT_PATHS = [
  'token',
  'accessToken',
  'access_token',
  'secretAccessKey',
  'SecretAccessKey',
  'sessionToken',
  'Token',
  'authorization',
  'headers.authorization',
  'headers["x-identity-header"]',
  'headers["x-aws-ec2-metadata-token"]',
  'req.headers.authorization',
  'req.headers["x-identity-header"]',
  'req.headers["x-aws-ec2-metadata-token"]',
  'privateKey',
  'key',
  'assertion',
  'client_assertion',
  'subject_token',
  '*.token',
  '*.accessToken',
  '*.secretAccessKey',
  '*.sessionToken',
  '*.privateKey',
];

export interface LoggerOptions {
  level?: string;
  name?: string;
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { name: options.name ?? 'spiffe-connector' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 2, sync: false }),
  );
}

/** A logger that drops everything, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
