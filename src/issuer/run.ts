// `spiffe-connector issuer --config FILE`: load the issuer config, start the issuer with the real clock,
// a JSON logger and process metrics; close() drains (readiness 503 for drainSeconds) and then closes.
import { systemClock } from '../base/clock.ts';
import { loadIssuerConfig } from '../config/issuer.ts';
import { createLogger } from '../ops/logger.ts';
import { type RunningIssuer, startIssuer } from './issuer.ts';
import { IssuerMetrics } from './metrics.ts';

export async function runIssuer(
  configFile: string,
): Promise<{ readonly issuer: RunningIssuer; close(): Promise<void> }> {
  const config = await loadIssuerConfig(configFile);
  const logger = createLogger({ level: config.log.level, name: 'spiffe-connector-issuer' });
  const issuer = await startIssuer(config.issuer, {
    logger,
    clock: systemClock,
    metrics: new IssuerMetrics({ defaultMetrics: true }),
  });
  let closing: Promise<void> | undefined;
  return {
    issuer,
    close: () => {
      closing ??= (async () => {
        logger.info({ drainSeconds: config.issuer.drainSeconds }, 'draining');
        issuer.beginDrain();
        await new Promise((resolve) => setTimeout(resolve, config.issuer.drainSeconds * 1000));
        await issuer.close();
        logger.info('issuer stopped');
        logger.flush();
      })();
      return closing;
    },
  };
}
