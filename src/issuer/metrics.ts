// The issuer's Prometheus metrics, in a registry of their own (one per issuer, so tests can run many):
// tokens issued by audience, refusals by reason, latency, key and bundle reloads. No label carries a secret.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from '../ops/process-metrics.ts';

export class IssuerMetrics {
  readonly registry = new Registry();

  readonly tokensIssued = new Counter({
    name: 'spiffe_connector_issuer_tokens_issued_total',
    help: 'JWT-SVIDs issued, by audience and signing algorithm.',
    labelNames: ['audience', 'alg'] as const,
    registers: [this.registry],
  });

  readonly refusals = new Counter({
    name: 'spiffe_connector_issuer_refusals_total',
    help: 'Token requests refused, by OAuth error and reason.',
    labelNames: ['error', 'reason'] as const,
    registers: [this.registry],
  });

  readonly latency = new Histogram({
    name: 'spiffe_connector_issuer_request_duration_seconds',
    help: 'Time from a token request arriving to its answer, by outcome (issued, refused).',
    labelNames: ['outcome'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });

  readonly discoveryRequests = new Counter({
    name: 'spiffe_connector_issuer_discovery_requests_total',
    help: 'Requests to the discovery listener, by document (discovery, jwks, other) and status.',
    labelNames: ['document', 'status'] as const,
    registers: [this.registry],
  });

  readonly reloads = new Counter({
    name: 'spiffe_connector_issuer_reloads_total',
    help: 'Reloads of signing keys, trust bundle and serving certificate, by what and outcome (accepted, refused).',
    labelNames: ['what', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly signingKeys = new Gauge({
    name: 'spiffe_connector_issuer_signing_keys',
    help: 'Signing keys published in the JWKS.',
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics) registerProcessMetrics(this.registry);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
