// `npm start`: the dev mode, everything on this machine's loopback (dev-mode.ts). Runs from a clone of the
// repository only: the installed program and the image do not carry it.
import { Command, CommanderError } from 'commander';
import { runDev } from './dev-mode.ts';

const program = new Command()
  .name('npm start --')
  .description(
    'spiffe-connector dev mode: a dev trust domain, the issuer, AWS/Google/Entra stand-ins and the sidecar, all on 127.0.0.1',
  )
  .option('--port <port>', 'metadata listener port on 127.0.0.1 (0 picks a free one)', '8181')
  .option('--rotate-seconds <seconds>', 'how often the dev X.509-SVID rotates', '300')
  .option('-v, --verbose', 'log every line (each exchange, each rotation), not only warnings and errors')
  .exitOverride()
  .showHelpAfterError();

try {
  program.parse(process.argv);
} catch (error) {
  process.exit(error instanceof CommanderError && error.exitCode === 0 ? 0 : 2);
}
const options = program.opts<{ port: string; rotateSeconds: string; verbose?: boolean }>();
const port = Number(options.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`--port ${options.port}: not a port number (0 picks a free one)\n`);
  process.exit(2);
}

let running: Awaited<ReturnType<typeof runDev>>;
try {
  running = await runDev({
    metadataPort: port,
    rotateSeconds: Number(options.rotateSeconds),
    verbose: options.verbose === true,
  });
} catch (error) {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') {
    process.stderr.write(
      `port ${port} on 127.0.0.1 is in use (another npm start?): pick another with \`npm start -- --port ${port + 1}\`, or \`npm start -- --port 0\` for any free one\n`,
    );
  } else {
    process.stderr.write(`dev mode could not start: ${(error as Error).message}\n`);
  }
  process.exit(1);
}
let stopping = false;
const stop = (): void => {
  if (stopping) process.exit(0);
  stopping = true;
  running.close().then(
    () => process.exit(0),
    () => process.exit(0),
  );
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
