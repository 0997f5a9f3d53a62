// argv → config → app → start; signals. Nothing else (CONTRIBUTING.md#where-things-live).
// Exit codes: 0 ok, 1 invalid config or identity, 2 usage, 70 an uncaught exception (see ops/stray-errors.ts).
// SIGTERM drains and exits 0.
// First, before any other module is evaluated: startup runs without TurboFan (ops/startup-tiering.ts).
import './ops/startup-tiering.ts';
import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import pkg from '../package.json' with { type: 'json' };
import { systemClock } from './base/clock.ts';
import { toConnectorError } from './base/errors.ts';
import { ConfigError } from './config/common.ts';
import { CONFIG_ENV, loadSidecarConfig, loadSidecarConfigFrom, processEnvironment } from './config/load.ts';
import { HeapRelease } from './ops/heap-release.ts';
import { createLogger, type Logger } from './ops/logger.ts';
import { Metrics } from './ops/metrics.ts';
import { optimizeFromNowOn } from './ops/startup-tiering.ts';
import { exitOnStrayErrors } from './ops/stray-errors.ts';

const EXIT_INVALID = 1;
const EXIT_USAGE = 2;
/** The longest the sidecar runs without TurboFan while it waits for its first credentials. */
const STARTUP_TIERING_LIMIT_MS = 60_000;
/** Set by `run`: the sidecar lets TurboFan in when ready, not when its listeners are up. */
let sidecarStarting: Promise<void> | undefined;

/**
 * A serving program is up (the sidecar ready, the issuer or webhook listening): TurboFan from now on, and the heap
 * start-up left behind given back, with the code it compiled (ops/heap-release.ts).
 */
function startedUp(heap: HeapRelease): void {
  optimizeFromNowOn();
  heap.now('start-up', 'drop');
}

/** Closes `stop` on SIGTERM/SIGINT, then exits 0. A second signal exits at once. */
function onSignals(stop: () => Promise<void>, logger: Logger = createLogger()): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(0);
    stopping = true;
    logger.info({ signal }, `received ${signal}`);
    stop().then(
      () => process.exit(0),
      () => process.exit(0),
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

/**
 * Starts a server with the signal handlers already in place: it logs that it listens before `start`
 * resolves, and a SIGTERM sent on that line must drain and exit 0, not kill the process.
 */
async function serveUntilSignal(start: () => Promise<{ close(): Promise<void> }>): Promise<void> {
  let started: Promise<{ close(): Promise<void> }> | undefined;
  const logger = createLogger();
  onSignals(async () => {
    await (await started)?.close();
  }, logger);
  started = start();
  await started;
  startedUp(new HeapRelease({ clock: systemClock, logger }));
}

function fail(error: unknown): never {
  if (error instanceof ConfigError) {
    process.stderr.write(`invalid configuration: ${error.message}\n`);
    process.exit(EXIT_INVALID);
  }
  const e = toConnectorError(error);
  process.stderr.write(`error: ${e.message}\n`);
  process.exit(e.code === 'usage' ? EXIT_USAGE : EXIT_INVALID);
}

async function run(configFile: string | undefined): Promise<void> {
  exitOnStrayErrors();
  const env = processEnvironment();
  const config = await loadSidecarConfigFrom(configFile, env);
  if (!config) throw new CommanderError(EXIT_USAGE, 'usage', `run needs --config FILE or ${CONFIG_ENV}`);
  const logger = createLogger({ level: config.log.level });
  const metrics = new Metrics({ defaultMetrics: true });
  const { startApp } = await import('./app.ts');
  // The heap start-up leaves is given back once ready, and what each burst of requests leaves once it is over.
  const heap = new HeapRelease({ clock: systemClock, logger });
  // Signals first: a SIGTERM while the first credentials are still being fetched also exits 0.
  let app: Awaited<ReturnType<typeof startApp>> | undefined;
  onSignals(async () => {
    heap.stop();
    await app?.shutdown();
  }, logger);
  app = await startApp(config, { clock: systemClock, logger, metrics, onRequest: heap.touch });
  // TurboFan once the first credentials are in (the last of the start-up work), or after a minute without them.
  const limit = new AbortController();
  const timer = setTimeout(() => limit.abort(), STARTUP_TIERING_LIMIT_MS).unref();
  sidecarStarting = app.whenReady(limit.signal).then(() => {
    clearTimeout(timer);
    startedUp(heap);
  });
}

async function check(configFile: string): Promise<void> {
  const config = await loadSidecarConfig(configFile, processEnvironment());
  const { checkConfig } = await import('./commands/check.ts');
  const report = await checkConfig(config, new Date());
  for (const line of report.lines) process.stdout.write(`${line}\n`);
  if (!report.ok) {
    process.stderr.write(
      `\n${report.problems.length} problem${report.problems.length === 1 ? '' : 's'}:\n${report.problems.map((p) => `  - ${p}`).join('\n')}\n`,
    );
    process.exit(EXIT_INVALID);
  }
}

async function env(configFile: string, options: { export?: boolean; container?: string }): Promise<void> {
  const config = await loadSidecarConfig(configFile, processEnvironment());
  const { appEnvironment, ownIdentityContainers, shellQuote } = await import('./env.ts');
  const { container } = options;
  if (container !== undefined && !ownIdentityContainers(config).includes(container))
    process.stderr.write(
      `spiffe-connector env: container "${container}" has no identity of its own (aws.containers, azure.containers): these are the pod's lines\n`,
    );
  for (const [k, v] of appEnvironment(config, undefined, container)) {
    process.stdout.write(options.export ? `export ${k}=${shellQuote(v)}\n` : `${k}=${v}\n`);
  }
}

/** The credential_process protocol: the JSON on stdout and exit 0, or one line on stderr and exit 1 (2 for usage). */
async function credentialProcess(configFile: string, options: { role?: string }): Promise<void> {
  try {
    const config = await loadSidecarConfig(configFile, processEnvironment());
    const { credentialProcess: exchange } = await import('./commands/credential-process.ts');
    const output = await exchange(config, { clock: systemClock, role: options.role });
    await new Promise<void>((resolve) => process.stdout.write(`${JSON.stringify(output)}\n`, () => resolve()));
    process.exit(0);
  } catch (error) {
    process.stderr.write(`spiffe-connector credential-process: ${oneLine(error)}\n`);
    process.exit(toConnectorError(error).code === 'usage' ? EXIT_USAGE : EXIT_INVALID);
  }
}

/** An error as one line: a config's problems joined, any other message's newlines folded. */
function oneLine(error: unknown): string {
  if (error instanceof ConfigError)
    return `invalid configuration: ${error.message.split('\n')[0]}: ${error.problems.join('; ')}`;
  return toConnectorError(error).message.replace(/\s*\n\s*/g, ' ');
}

/** Prints the Google external-account credentials file whose executable source runs `gcp-subject-token`. */
async function gcpCredentials(
  configFile: string,
  options: { executable?: string; outputFile?: string },
): Promise<void> {
  const config = await loadSidecarConfig(configFile, processEnvironment());
  const { externalAccountFile } = await import('./commands/gcp-credentials.ts');
  const self =
    options.executable === undefined
      ? [process.execPath, resolve(process.argv[1] ?? '')]
      : options.executable.trim().split(/\s+/);
  const file = externalAccountFile(
    config,
    [...self, 'gcp-subject-token', '--config', resolve(configFile)],
    options.outputFile === undefined ? undefined : resolve(options.outputFile),
  );
  process.stdout.write(`${JSON.stringify(file, null, 2)}\n`);
}

/** The executable Google's libraries run: the response JSON on stdout (nothing on stderr, which they read too); exit 1 on failure. */
async function gcpSubjectToken(configFile: string): Promise<void> {
  const { gcpSubjectToken: subjectToken, failedResponse } = await import('./commands/gcp-credentials.ts');
  const env = processEnvironment();
  let response: Awaited<ReturnType<typeof subjectToken>>;
  try {
    response = await subjectToken(await loadSidecarConfig(configFile, env), { clock: systemClock, env });
  } catch (error) {
    response = failedResponse(error);
  }
  await new Promise<void>((done) => process.stdout.write(`${JSON.stringify(response)}\n`, () => done()));
  process.exit(response.success ? 0 : EXIT_INVALID);
}

async function issuer(configFile: string): Promise<void> {
  exitOnStrayErrors({ name: 'spiffe-connector-issuer' });
  const { runIssuer } = await import('./issuer/run.ts');
  await serveUntilSignal(() => runIssuer(configFile));
}

async function webhook(configFile: string): Promise<void> {
  exitOnStrayErrors({ name: 'spiffe-connector-webhook' });
  const { runWebhook } = await import('./webhook/run.ts');
  await serveUntilSignal(() => runWebhook(configFile));
}

const program = new Command()
  .name('spiffe-connector')
  .description(
    'Turns a pod’s SPIFFE identity into short-lived AWS, Google Cloud and Azure credentials on emulated metadata endpoints.',
  )
  .version(pkg.version, '-V, --version', 'print the version')
  .exitOverride()
  .showHelpAfterError();

program
  .command('run')
  .description('run the sidecar')
  .option('-c, --config <file>', `config file (or YAML in ${CONFIG_ENV})`)
  .action((o: { config?: string }) => run(o.config));
program
  .command('check')
  .description('validate config and identity; print what would be served')
  .requiredOption('-c, --config <file>', 'config file')
  .action((o: { config: string }) => check(o.config));
program
  .command('env')
  .description('print the KEY=VALUE lines an app container needs')
  .requiredOption('-c, --config <file>', 'config file')
  .option('--export', 'print as shell export lines')
  .option('--container <name>', 'the lines of that container (its own role or client id when the config gives it one)')
  .action((o: { config: string; export?: boolean; container?: string }) => env(o.config, o));
program
  .command('credential-process')
  .description('print AWS credential_process JSON after one exchange from this host’s SVID (no sidecar)')
  .requiredOption('-c, --config <file>', 'config file')
  .option('--role <name>', 'a role of aws.extraRoles, assumed with the base role’s credentials')
  .action((o: { config: string; role?: string }) => credentialProcess(o.config, o));
program
  .command('gcp-credentials')
  .description(
    'print a Google external-account credentials file that runs this program for the subject token (no metadata server)',
  )
  .requiredOption('-c, --config <file>', 'config file')
  .option(
    '--executable <command>',
    'how the Google libraries run this program (default: this node and script, by absolute path)',
  )
  .option('--output-file <path>', 'where the libraries may cache the subject token between runs (written mode 0600)')
  .action((o: { config: string; executable?: string; outputFile?: string }) => gcpCredentials(o.config, o));
program
  .command('gcp-subject-token')
  .description('the executable source of gcp-credentials: prints the JWT-SVID as an executable response')
  .requiredOption('-c, --config <file>', 'config file')
  .action((o: { config: string }) => gcpSubjectToken(o.config));
program
  .command('issuer')
  .description('run the X.509-SVID → JWT-SVID exchange with OIDC discovery')
  .requiredOption('-c, --config <file>', 'issuer config file')
  .action((o: { config: string }) => issuer(o.config));
program
  .command('webhook')
  .description('run the mutating admission webhook')
  .requiredOption('-c, --config <file>', 'webhook config file')
  .action((o: { config: string }) => webhook(o.config));
// Dev mode is not part of the installed program: it runs from a clone of the repository (packages/dev).
program
  .command('dev', { hidden: true })
  .allowUnknownOption()
  .allowExcessArguments()
  .action(() => {
    process.stderr.write(
      'dev mode is not part of the installed program: in a clone of the repository, run `npm ci && npm start`\n',
    );
    process.exit(EXIT_USAGE);
  });

// No top-level await: the bundle the build makes is CommonJS (scripts/build.ts).
program.parseAsync(process.argv).then(
  () => {
    // The one-shot commands are done (the issuer and webhook optimized once listening): optimize from here on.
    if (!sidecarStarting) optimizeFromNowOn();
  },
  (error: unknown) => {
    if (error instanceof CommanderError) {
      process.exit(
        error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.exitCode === 0
          ? 0
          : EXIT_USAGE,
      );
    }
    fail(error);
  },
);
