// The modules `npm run mutate` runs Stryker on (stryker.config.mjs), in order of risk: the files mutated
// and the test files that cover them (every mutant costs one run of those test files).
export interface MutationModule {
  readonly mutate: readonly string[];
  readonly tests: readonly string[];
}

export const MODULES: Record<string, MutationModule> = {
  x509: {
    mutate: ['src/spiffe/x509-svid.ts', 'src/spiffe/x509-lib.ts', 'src/spiffe/pem.ts'],
    tests: ['test/spiffe/x509-svid.test.ts', 'test/spiffe/bundle.test.ts'],
  },
  guards: { mutate: ['src/http/guards.ts'], tests: ['test/http/guards.test.ts', 'test/metadata/pipeline.test.ts'] },
  // The link-local test (in a network namespace of its own; it skips where none can be made) holds the Host check of
  // the 169.254.x listeners.
  pipeline: {
    mutate: ['src/metadata/pipeline.ts'],
    tests: ['test/metadata/pipeline.test.ts', 'test/metadata/link-local.test.ts'],
  },
  'aws-endpoints': { mutate: ['src/providers/aws/endpoints.ts'], tests: ['test/aws/endpoints.test.ts'] },
  'gcp-endpoints': {
    mutate: ['src/providers/gcp/endpoints.ts'],
    tests: ['test/gcp/metadata-server.test.ts', 'test/gcp/extra-service-accounts.test.ts'],
  },
  'azure-endpoints': {
    mutate: ['src/providers/azure/endpoints.ts'],
    tests: ['test/azure/endpoints.test.ts', 'test/azure/per-container.test.ts'],
  },
  'client-auth': {
    mutate: ['src/issuer/client-auth.ts'],
    tests: ['test/issuer/token.test.ts', 'test/issuer/bundle-reload.test.ts'],
  },
  'webhook-mutate': {
    mutate: ['src/webhook/mutate.ts'],
    tests: [
      'test/webhook/mutate.test.ts',
      'test/webhook/roles-anywhere.test.ts',
      'test/webhook/per-container.test.ts',
      'test/webhook/service-accounts.test.ts',
      'test/webhook/link-local.test.ts',
    ],
  },
  cache: {
    mutate: ['src/cache/*.ts'],
    tests: ['test/cache/credential-cache.test.ts', 'test/cache/refreshing-credential.test.ts'],
  },
  // The SPIFFE identity rules, one module per file so that each mutant runs only the test file that covers it
  // (the four spiffe test files together take about 17 s a run). `x509-svid.test.ts` and the issuer's config
  // test also load bundles; `bundle.test.ts` alone covers the parsing rules. `source.ts` (the sources'
  // interfaces and their listener set) is covered only through the providers' tests and is not mutated.
  'spiffe-id': { mutate: ['src/spiffe/spiffe-id.ts'], tests: ['test/spiffe/spiffe-id.test.ts'] },
  bundle: { mutate: ['src/spiffe/bundle.ts'], tests: ['test/spiffe/bundle.test.ts'] },
  'jwt-svid': { mutate: ['src/spiffe/jwt-svid.ts'], tests: ['test/spiffe/jwt-svid.test.ts'] },
  // The Workload API the sidecar offers the pod: the security header, the streams, JWT-SVIDs and their validation.
  'workload-api-server': {
    mutate: ['src/surfaces/workload-api/server.ts'],
    tests: ['test/workload-api/server.test.ts'],
  },
};
