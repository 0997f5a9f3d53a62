// prom-client's default collectors, one module each; the package ships no types for them. Each registers
// its metrics on the registry given (see src/ops/process-metrics.ts).
declare module 'prom-client/lib/metrics/*.js' {
  import type { Registry } from 'prom-client';

  const register: (registry: Registry, config: Record<string, unknown>) => void;
  export default register;
}
