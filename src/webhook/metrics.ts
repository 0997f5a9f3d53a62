// The webhook's Prometheus metrics (its own registry). Labels carry outcomes only, never pod content.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from '../ops/process-metrics.ts';

export class WebhookMetrics {
  readonly registry = new Registry();

  /** Reviews answered, by outcome: injected, not_requested, already_injected, denied, ignored (not a pod CREATE), bad_request. */
  readonly admissions = new Counter({
    name: 'spiffe_connector_webhook_admissions_total',
    help: 'AdmissionReviews answered, by outcome.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly warnings = new Counter({
    name: 'spiffe_connector_webhook_warnings_total',
    help: 'Warnings returned to the API server (explicit env vars left alone, unreadable SVID volumes).',
    registers: [this.registry],
  });

  readonly duration = new Histogram({
    name: 'spiffe_connector_webhook_admission_duration_seconds',
    help: 'Time from a complete request body to the response, per AdmissionReview.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [this.registry],
  });

  /** ServiceAccount lookups (webhook.serviceAccounts), by outcome: found, not_found, error; cache hits included. */
  readonly serviceAccountLookups = new Counter({
    name: 'spiffe_connector_webhook_service_account_lookups_total',
    help: 'ServiceAccount annotation lookups, by outcome (found, not_found, error); answers from the cache count too.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly serviceAccountLookupDuration = new Histogram({
    name: 'spiffe_connector_webhook_service_account_lookup_duration_seconds',
    help: "Time to get a ServiceAccount's annotations (from the cache or the API server).",
    buckets: [0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly reloads = new Counter({
    name: 'spiffe_connector_webhook_tls_reloads_total',
    help: 'Serving certificate loads, by outcome (accepted, refused).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly certificateExpiry = new Gauge({
    name: 'spiffe_connector_webhook_certificate_expiry_timestamp_seconds',
    help: 'notAfter of the serving certificate in use, as a Unix timestamp.',
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics) registerProcessMetrics(this.registry);
  }
}
