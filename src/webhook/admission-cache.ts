// Memoizes admitPod for pods that are the same in everything it reads (annotations, labels, spec, their
// ServiceAccount's annotations): the replicas of a Deployment differ only in their names. The per-pod secret is a placeholder in the cached
// patch, replaced by a fresh value for each pod, so no two pods ever share it.
import type { MutationContext, MutationResult, ServiceAccountAnnotations } from './mutate.ts';
import { admitPod } from './mutate.ts';
import type { Pod } from './pod.ts';

/**
 * Matches the identity-header and AWS token rules (azure.ts, aws.ts: at least 32 characters with its number), and
 * cannot come from a pod: pods containing it bypass the cache. Numbered, so each per-pod secret gets its own value.
 */
const PLACEHOLDER = 'spiffe-connector.per-pod-secret.placeholder';
const NUMBERED = /spiffe-connector\.per-pod-secret\.placeholder-(\d{4})/g;

export interface Admission {
  readonly result: MutationResult;
  /** The JSON Patch, serialized, with this pod's own secret (injected pods only). */
  readonly patchJson?: string;
}

interface Entry {
  readonly result: MutationResult;
  readonly patchJson?: string;
}

export class AdmissionCache {
  readonly #entries = new Map<string, Entry>();
  readonly #max: number;

  constructor(max = 256) {
    this.#max = max;
  }

  admit(pod: Pod, context: MutationContext, serviceAccount?: ServiceAccountAnnotations): Admission {
    const key = JSON.stringify([
      pod.metadata?.annotations ?? null,
      pod.metadata?.labels ?? null,
      pod.spec,
      serviceAccount ?? null,
    ]);
    if (key.includes(PLACEHOLDER)) return serialize(admitPod(pod, context, serviceAccount));
    let entry = this.#entries.get(key);
    if (entry) {
      // Most recently used last.
      this.#entries.delete(key);
      this.#entries.set(key, entry);
    } else {
      let n = 0;
      entry = serialize(
        admitPod(
          pod,
          { ...context, randomSecret: () => `${PLACEHOLDER}-${String(n++).padStart(4, '0')}` },
          serviceAccount,
        ),
      );
      if (this.#entries.size >= this.#max) {
        const oldest = this.#entries.keys().next().value;
        if (oldest !== undefined) this.#entries.delete(oldest);
      }
      this.#entries.set(key, entry);
    }
    if (entry.patchJson === undefined || !entry.patchJson.includes(PLACEHOLDER)) return entry;
    const fresh = new Map<string, string>();
    const patchJson = entry.patchJson.replace(NUMBERED, (_all, n: string) => {
      const known = fresh.get(n);
      if (known !== undefined) return known;
      const secret = context.randomSecret();
      fresh.set(n, secret);
      return secret;
    });
    return { result: entry.result, patchJson };
  }
}

function serialize(result: MutationResult): Entry {
  return result.outcome === 'injected' ? { result, patchJson: JSON.stringify(result.patch) } : { result };
}
