// The clouds this program knows, one line each: a cloud's pure side (env lines, description, audiences)
// and how to load its running side. The composition root, `env`, `check` and the webhook read this list;
// adding a cloud is its folder under providers/, its config section, and one line here.

import { awsEnvironment } from './providers/aws/env.ts';
import { azureEnvironment } from './providers/azure/env.ts';
import type { CloudEnvironment, CloudModule } from './providers/contract.ts';
import { gcpEnvironment } from './providers/gcp/env.ts';

export interface CloudEntry extends CloudEnvironment {
  /** Loads the cloud's running side (its endpoints, exchange and SDK) only when it is configured. */
  load(): Promise<CloudModule>;
}

export const CLOUDS: readonly CloudEntry[] = [
  { ...awsEnvironment, load: async () => (await import('./providers/aws/module.ts')).awsModule },
  { ...gcpEnvironment, load: async () => (await import('./providers/gcp/module.ts')).gcpModule },
  { ...azureEnvironment, load: async () => (await import('./providers/azure/module.ts')).azureModule },
];
