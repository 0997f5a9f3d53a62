// `spiffe-connector webhook --config FILE`: load and validate the config once, then serve until stopped.
import { systemClock } from '../base/clock.ts';
import { loadWebhookConfig } from '../config/webhook.ts';
import { createLogger } from '../ops/logger.ts';
import { WebhookMetrics } from './metrics.ts';
import { type RunningWebhook, startWebhook } from './server.ts';

export async function runWebhook(configFile: string): Promise<RunningWebhook> {
  const config = await loadWebhookConfig(configFile);
  const logger = createLogger({ level: config.log.level, name: 'spiffe-connector-webhook' });
  return startWebhook(config, { clock: systemClock, logger, metrics: new WebhookMetrics({ defaultMetrics: true }) });
}
