// Keeps one Workload API server stream open (docs/spiffe.md#workload-api-streams): reconnects at once when the
// server ends it, with jittered exponential backoff after errors (reset by a good message), and stops
// for good on InvalidArgument or Unimplemented (docs/spiffe.md#workload-api-errors).
import type { ClientReadableStream, StatusObject } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { Clock, TimerHandle } from '../../base/clock.ts';
import { ConnectorError } from '../../base/errors.ts';
import { backoffDelay, type RefreshPolicy } from '../../cache/refresh-policy.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import { isFinalStatus, statusName } from '../../workload-api/status.ts';

/** Reconnect backoff: 1 s doubling to 30 s, "equal jitter" (go-spiffe caps at 30 s, java-spiffe at 60 s). */
export const STREAM_BACKOFF: RefreshPolicy = { marginMs: 0, backoffBaseMs: 1_000, backoffMaxMs: 30_000, jitter: 0.1 };

export interface StreamWatcherOptions {
  /** The RPC, for logs and the retry metric: "FetchX509SVID", ... */
  readonly rpc: string;
  /** Opens the stream (with the security header). */
  readonly open: () => ClientReadableStream<unknown>;
  /** Handles one message; returns true when it was good (that resets the backoff). */
  readonly onMessage: (message: unknown) => boolean;
  /** Called once when the stream stops for good (a final status). */
  readonly onFinal?: (error: ConnectorError) => void;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  readonly backoff?: RefreshPolicy;
  readonly random?: () => number;
}

export class StreamWatcher {
  readonly #o: StreamWatcherOptions;
  #call: ClientReadableStream<unknown> | undefined;
  #timer: TimerHandle | undefined;
  #failures = 0;
  #stopped = false;

  constructor(options: StreamWatcherOptions) {
    this.#o = options;
  }

  start(): void {
    if (this.#stopped || this.#call || this.#timer) return;
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#call?.cancel();
    this.#call = undefined;
  }

  /** Failed attempts since the last good message. */
  get failures(): number {
    return this.#failures;
  }

  #connect(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    let goodMessages = 0;
    let call: ClientReadableStream<unknown>;
    try {
      call = this.#o.open();
    } catch (error) {
      this.#retry(`could not open the stream: ${(error as Error).message}`, status.UNAVAILABLE);
      return;
    }
    this.#call = call;
    call.on('data', (message: unknown) => {
      if (this.#call !== call) return;
      if (this.#o.onMessage(message)) {
        goodMessages += 1;
        this.#failures = 0;
      }
    });
    // The failure is handled on 'status' (always emitted); this listener keeps 'error' from throwing.
    call.on('error', () => undefined);
    call.on('status', (s: StatusObject) => {
      if (this.#call !== call) return;
      this.#call = undefined;
      if (this.#stopped) return;
      this.#ended(s, goodMessages);
    });
  }

  #ended(s: StatusObject, goodMessages: number): void {
    const { logger, rpc } = this.#o;
    if (s.code === status.OK) {
      if (goodMessages > 0) {
        // A closed stream is reopened at once (docs/spiffe.md#workload-api-streams).
        logger.info({ rpc }, 'the Workload API ended the stream; reopening it');
        this.#connect();
      } else {
        this.#retry('the stream ended without a usable message', s.code);
      }
      return;
    }
    if (isFinalStatus(s.code)) {
      const error = new ConnectorError(
        'upstream_rejected',
        `the Workload API refused ${rpc} (${statusName(s.code)}: ${s.details}); not retried`,
        { retryable: false, upstreamCode: statusName(s.code) },
      );
      logger.error(
        { rpc, status: statusName(s.code), details: s.details },
        `the Workload API refused ${rpc} with ${statusName(s.code)}; this is not retried (SPIFFE_Workload_Endpoint.md §6)`,
      );
      this.#stopped = true;
      this.#o.onFinal?.(error);
      return;
    }
    this.#retry(s.details, s.code);
  }

  #retry(details: string, code: number): void {
    const { logger, metrics, clock, rpc } = this.#o;
    this.#failures += 1;
    const delay = backoffDelay(this.#o.backoff ?? STREAM_BACKOFF, this.#failures, this.#o.random);
    metrics?.refreshRetries.inc({ cloud: 'workload-api', credential: rpc });
    logger.warn(
      {
        retry: `workload-api-${rpc}`,
        rpc,
        status: statusName(code),
        details,
        attempt: this.#failures,
        retryInMs: delay,
      },
      `the Workload API stream ${rpc} failed; reconnecting after a backoff`,
    );
    this.#timer = clock.setTimeout(() => this.#connect(), delay);
  }
}
