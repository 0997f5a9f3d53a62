// gRPC statuses from a Workload API endpoint, classified as docs/spiffe.md#workload-api-errors says a
// client must treat them: InvalidArgument and Unimplemented are final, everything else is retried.
import { type ServiceError, status } from '@grpc/grpc-js';
import { ConnectorError } from '../base/errors.ts';

/** The name of a gRPC status code, e.g. "INVALID_ARGUMENT". */
export function statusName(code: number): string {
  return (status as unknown as Record<number, string>)[code] ?? `status ${code}`;
}

/** docs/spiffe.md#workload-api-errors: the request itself is wrong (or not supported); retrying cannot help. */
export function isFinalStatus(code: number): boolean {
  return code === status.INVALID_ARGUMENT || code === status.UNIMPLEMENTED;
}

export function isServiceError(value: unknown): value is ServiceError {
  return value instanceof Error && typeof (value as { code?: unknown }).code === 'number';
}

/** A failed Workload API call as a ConnectorError, retryable unless the status is final. */
export function workloadApiError(error: unknown, what: string): ConnectorError {
  if (!isServiceError(error)) {
    return new ConnectorError(
      'upstream_unavailable',
      `${what} failed: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error, retryable: true },
    );
  }
  const name = statusName(error.code);
  const details = error.details || error.message;
  if (isFinalStatus(error.code)) {
    return new ConnectorError(
      'upstream_rejected',
      `${what} refused by the Workload API (${name}: ${details}); not retried`,
      { cause: error, retryable: false, upstreamCode: name },
    );
  }
  const code = error.code === status.PERMISSION_DENIED ? 'identity_unavailable' : 'upstream_unavailable';
  return new ConnectorError(code, `${what} failed (${name}: ${details})`, {
    cause: error,
    retryable: true,
    upstreamCode: name,
  });
}
