// Start without V8's optimizing compilers, TurboFan and Maglev; optimize from the moment the program serves.
// Starting up runs Node's path code hot enough (module resolution: a few hundred path.resolve calls) for V8 to
// compile one function with TurboFan, and that one compilation leaves ~6 MB resident for the process's life: the
// compiler's own code pages and its zone memory. Maglev, left on, compiles a few dozen start-up functions instead,
// and its code pages stay resident too (~1.4 MB idle, README.md "Measured"). Startup code runs once, so Ignition
// and Sparkplug serve it well; the request paths get Maglev and TurboFan as soon as they run hot, as before.
// Imported first by main.ts, so that the flags are set before any other module is evaluated.
import { setFlagsFromString } from 'node:v8';

/** V8's own default: every function may be optimized. */
const EVERY_FUNCTION = '*';

setFlagsFromString('--turbo-filter=-*');
setFlagsFromString('--maglev-filter=-*');

let optimizing = false;

/** Lets Maglev and TurboFan optimize again (idempotent): call once the program is up. */
export function optimizeFromNowOn(): void {
  if (optimizing) return;
  optimizing = true;
  setFlagsFromString(`--maglev-filter=${EVERY_FUNCTION}`);
  setFlagsFromString(`--turbo-filter=${EVERY_FUNCTION}`);
}
