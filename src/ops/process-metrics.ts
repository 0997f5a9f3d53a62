// Process and Node.js metrics for /metrics, every value read when Prometheus scrapes: nothing samples or
// ticks between scrapes, so an idle process stays asleep. These are prom-client's own default collectors
// (CPU, memory, file descriptors, handles, heap spaces, GC durations, version), all computed at scrape time,
// except its event-loop-delay monitor, which wakes the process every 10 ms to sample the loop (about 100
// wake-ups a second when idle). The event loop is described at scrape time instead: the lag of one turn
// (prom-client's own measure when no monitor is available) and the share of time it was busy since the
// previous scrape.
/// <reference path="./prom-client-collectors.d.ts" />
import { performance } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';
import gc from 'prom-client/lib/metrics/gc.js';
import heapSizeAndUsed from 'prom-client/lib/metrics/heapSizeAndUsed.js';
import heapSpacesSizeAndUsed from 'prom-client/lib/metrics/heapSpacesSizeAndUsed.js';
import osMemoryHeap from 'prom-client/lib/metrics/osMemoryHeap.js';
import processCpuTotal from 'prom-client/lib/metrics/processCpuTotal.js';
import processHandles from 'prom-client/lib/metrics/processHandles.js';
import processMaxFileDescriptors from 'prom-client/lib/metrics/processMaxFileDescriptors.js';
import processOpenFileDescriptors from 'prom-client/lib/metrics/processOpenFileDescriptors.js';
import processRequests from 'prom-client/lib/metrics/processRequests.js';
import processResources from 'prom-client/lib/metrics/processResources.js';
import processStartTime from 'prom-client/lib/metrics/processStartTime.js';
import version from 'prom-client/lib/metrics/version.js';

const COLLECTORS = [
  processCpuTotal,
  processStartTime,
  osMemoryHeap,
  processOpenFileDescriptors,
  processMaxFileDescriptors,
  processResources,
  processHandles,
  processRequests,
  heapSizeAndUsed,
  heapSpacesSizeAndUsed,
  version,
  gc,
];

/** Registers the process and Node.js metrics on `registry`; none of them arms a timer. */
export function registerProcessMetrics(registry: Registry): void {
  for (const collector of COLLECTORS) collector(registry, {});
  new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of the event loop in seconds: how long one setImmediate waited, measured at scrape.',
    registers: [registry],
    async collect() {
      const start = performance.now();
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.set((performance.now() - start) / 1000);
    },
  });
  let previous = performance.eventLoopUtilization();
  new Gauge({
    name: 'nodejs_eventloop_utilization_ratio',
    help: 'Share of time the event loop was busy (0 to 1) since the previous scrape, or since start for the first.',
    registers: [registry],
    collect() {
      const now = performance.eventLoopUtilization();
      this.set(performance.eventLoopUtilization(now, previous).utilization);
      previous = now;
    },
  });
}
