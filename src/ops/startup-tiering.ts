// Start without TurboFan, V8's optimizing compiler; optimize from the moment the program serves. Starting up runs
// Node's path code hot enough (module resolution: a few hundred path.resolve calls) for V8 to compile one function
// with TurboFan, and that one compilation leaves ~6 MB resident for the process's life: the compiler's own code
// pages and its zone memory. Startup code runs once, so Ignition, Sparkplug and Maglev serve it well; the request
// paths get TurboFan as soon as they run hot, as before. Imported first by main.ts, so that the flag is set
// before any other module is evaluated (README.md "Measured").
import { setFlagsFromString } from 'node:v8';

/** V8's own default: every function may be optimized. */
const EVERY_FUNCTION = '*';

setFlagsFromString('--turbo-filter=-*');

let optimizing = false;

/** Lets TurboFan optimize again (idempotent): call once the program is up. */
export function optimizeFromNowOn(): void {
  if (optimizing) return;
  optimizing = true;
  setFlagsFromString(`--turbo-filter=${EVERY_FUNCTION}`);
}
