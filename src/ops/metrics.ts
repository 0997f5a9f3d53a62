// Prometheus metrics, one registry per process (not prom-client's global, so tests can run many).
// Labels never carry secrets: only surfaces, clouds, outcomes, statuses, audiences and reasons.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from './process-metrics.ts';

export type Cloud = 'aws' | 'gcp' | 'azure';

export class Metrics {
  readonly registry = new Registry();

  /**
   * Requests answered, by surface (aws-container, aws-imds, gcp-metadata, azure-imds, ..., workload-api) and status:
   * the HTTP status code of a metadata endpoint, the gRPC status name (OK, INVALID_ARGUMENT, ...) of a Workload
   * API call.
   */
  readonly requests = new Counter({
    name: 'spiffe_connector_requests_total',
    help: 'Requests answered by the sidecar, by surface and status: the HTTP status code of an emulated metadata endpoint, the gRPC status name of the Workload API.',
    labelNames: ['surface', 'status'] as const,
    registers: [this.registry],
  });

  /** Exchanges with a cloud (or the issuer), by outcome: success, retryable_error, permanent_error. */
  readonly exchanges = new Counter({
    name: 'spiffe_connector_exchanges_total',
    help: 'Credential exchanges with an upstream, by cloud and outcome.',
    labelNames: ['cloud', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly upstreamLatency = new Histogram({
    name: 'spiffe_connector_upstream_latency_seconds',
    help: 'Latency of upstream exchange calls, by cloud.',
    labelNames: ['cloud'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  /** One per credential a cloud issued (the audit event's counter), by cloud and credential name. */
  readonly credentialsIssued = new Counter({
    name: 'spiffe_connector_credentials_issued_total',
    help: 'Credentials a cloud issued to this sidecar, by cloud and credential name; each is also one audit log line.',
    labelNames: ['cloud', 'credential'] as const,
    registers: [this.registry],
  });

  readonly credentialExpiry = new Gauge({
    name: 'spiffe_connector_credential_expiry_timestamp_seconds',
    help: 'When the cached credential expires (the soonest of that cache), as a Unix timestamp, by cloud and credential name.',
    labelNames: ['cloud', 'credential'] as const,
    registers: [this.registry],
  });

  readonly svidExpiry = new Gauge({
    name: 'spiffe_connector_svid_expiry_timestamp_seconds',
    help: 'When the current SVID expires, as a Unix timestamp, by kind (x509, jwt).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly svidUpdates = new Counter({
    name: 'spiffe_connector_svid_updates_total',
    help: 'SVIDs read from a source, by kind and outcome (accepted, refused).',
    labelNames: ['kind', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly refreshRetries = new Counter({
    name: 'spiffe_connector_refresh_retries_total',
    help: 'Refresh attempts that failed and were scheduled again, by cloud and credential.',
    labelNames: ['cloud', 'credential'] as const,
    registers: [this.registry],
  });

  /** Upstream error answers by cloud and the upstream's own code (AADSTS number, STS Code, OAuth error). */
  readonly upstreamErrors = new Counter({
    name: 'spiffe_connector_upstream_errors_total',
    help: 'Error answers from an upstream, by cloud and the upstream error code.',
    labelNames: ['cloud', 'code'] as const,
    registers: [this.registry],
  });

  /** Immediate, named retries inside one exchange (e.g. a fresh assertion after AADSTS700024). */
  readonly immediateRetries = new Counter({
    name: 'spiffe_connector_immediate_retries_total',
    help: 'Retries made at once inside one exchange, by cloud and retry name.',
    labelNames: ['cloud', 'retry'] as const,
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics) registerProcessMetrics(this.registry);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
