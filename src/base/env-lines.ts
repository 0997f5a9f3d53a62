// The environment an app container is told: ordered `NAME=value` pairs, joined by src/env.ts from each
// cloud's and the Workload API's own pure env functions.
export type EnvLines = Array<readonly [name: string, value: string]>;
