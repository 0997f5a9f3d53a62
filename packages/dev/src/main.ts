// `npm start`: the dev mode, everything on this machine's loopback (dev-mode.ts). Runs from a clone of the
// repository only: the installed program and the image do not carry it.
import { Command, CommanderError } from 'commander';
import { runDev } from './dev-mode.ts';

const program = new Command()
  .name('npm start --')
  .description('spiffe-connector dev mode: a dev trust domain, the issuer, AWS/Google/Entra stand-ins and the sidecar, all on 127.0.0.1')
  .option('--port <port>', 'metadata listener port on 127.0.0.1 (0 picks a free one)', '8181')
  .option('--rotate-seconds <seconds>', 'how often the dev X.509-SVID rotates', '300')
  .exitOverride()
  .showHelpAfterError();

try {
  program.parse(process.argv);
} catch (error) {
  process.exit(error instanceof CommanderError && error.exitCode === 0 ? 0 : 2);
}
const options = program.opts<{ port: string; rotateSeconds: string }>();
const running = await runDev({ metadataPort: Number(options.port), rotateSeconds: Number(options.rotateSeconds) });
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
