/**
 * The HTTP layer's shared state and the one place a generation runs: it
 * admits the request (refused while draining; the queue bound is the engine's), wires client
 * disconnects to the engine's abort signal, observes TTFT / inter-token /
 * end-to-end latency and the request counters, and hands each engine event
 * to the route's formatter.
 */
import type { FastifyReply } from 'fastify';
import type { Engine, GenerateEvent, GenerateRequest } from '../engine/types.js';
import { HttpError } from './errors.js';
import type { Endpoint, ServerMetrics } from './metrics.js';

export interface HttpOptions {
  engine: Engine;
  /** `--api-key`: null or absent = no authentication. */
  apiKey?: string | null | undefined;
  /** `--served-model-name`: null or absent = `engine.info.modelName`. */
  servedModelName?: string | null | undefined;
  /** Retry-After seconds on 503 (`--queue-full-retry-after`, default 1). */
  retryAfterSeconds?: number | undefined;
  /** `--max-n` (default 16). */
  maxN?: number | undefined;
  /** tsinfer version reported by /server_info and /v1/loads. */
  version?: string | undefined;
  /** Resolved flags, echoed by /server_info. */
  serverArgs?: Readonly<Record<string, unknown>> | undefined;
}

export type Finish = Extract<GenerateEvent, { type: 'finish' }>;
export type Tokens = Extract<GenerateEvent, { type: 'tokens' }>;

export class HttpState {
  readonly engine: Engine;
  readonly metrics: ServerMetrics;
  readonly apiKey: string | null;
  readonly modelName: string;
  readonly retryAfterSeconds: number;
  readonly maxN: number;
  readonly version: string;
  readonly serverArgs: Readonly<Record<string, unknown>>;
  readonly startedAt = Date.now();
  /** Generations accepted here without their first token yet. */
  waiting = 0;
  /** Generations running. */
  inflight = 0;
  #draining = false;
  readonly #idleWaiters: Array<() => void> = [];

  constructor(options: HttpOptions, metrics: ServerMetrics) {
    this.engine = options.engine;
    this.metrics = metrics;
    this.apiKey = options.apiKey ?? null;
    this.modelName = options.servedModelName ?? options.engine.info.modelName;
    this.retryAfterSeconds = options.retryAfterSeconds ?? 1;
    this.maxN = options.maxN ?? 16;
    this.version = options.version ?? options.engine.version;
    this.serverArgs = options.serverArgs ?? {};
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Refuse new generations from now on (503 TSI_ERR_SHUTTING_DOWN); in-flight ones go on. */
  beginDrain(): void {
    this.#draining = true;
  }

  /** Resolves when no generation is in flight. */
  idle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Throws TSI_ERR_SHUTTING_DOWN (503) once draining. The queue bound
   * (--max-queued-requests) is the engine's: `generate` throws
   * TSI_ERR_QUEUE_FULL, which leaves as a 503 with Retry-After.
   */
  admit(): void {
    if (this.#draining) {
      throw new HttpError('TSI_ERR_SHUTTING_DOWN', 'the server is shutting down and accepts no new requests');
    }
  }

  /**
   * Runs one generation: calls `onEvent` for every event in order and
   * returns the finish event. A start error (the engine refusing the request)
   * is thrown before any event; everything after is reported as a finish
   * event. Latency metrics are observed here.
   */
  async run(
    endpoint: Endpoint,
    request: GenerateRequest,
    onEvent: (event: GenerateEvent) => void | Promise<void>,
    startMs: number,
  ): Promise<Finish> {
    this.waiting++;
    this.inflight++;
    this.metrics.waitingFirstToken.inc();
    this.metrics.inflight.inc();
    let waiting = true;
    const leaveWaiting = (): void => {
      if (!waiting) return;
      waiting = false;
      this.waiting--;
      this.metrics.waitingFirstToken.dec();
    };
    let lastMs = 0;
    let sawToken = false;
    try {
      const iterator = this.engine.generate(request)[Symbol.asyncIterator]();
      for (;;) {
        const r = await iterator.next();
        if (r.done) {
          throw new HttpError('TSI_ERR_INTERNAL', 'the engine ended a request without a finish event');
        }
        const event = r.value;
        if (event.type === 'tokens') {
          const now = performance.now();
          const k = event.tokenIds.length;
          if (k > 0) {
            if (!sawToken) {
              sawToken = true;
              leaveWaiting();
              this.metrics.ttft.observe((now - startMs) / 1000);
            } else {
              const per = (now - lastMs) / 1000 / k;
              for (let i = 0; i < k; i++) this.metrics.itl.observe(per);
            }
            lastMs = now;
          }
          await onEvent(event);
          continue;
        }
        leaveWaiting();
        const m = this.metrics;
        m.requests.inc({ endpoint, finish_reason: event.reason });
        if (event.reason === 'abort') m.abortedRequests.inc({ endpoint });
        m.promptTokens.inc(event.promptTokens);
        m.generationTokens.inc(event.completionTokens);
        m.e2e.observe((performance.now() - startMs) / 1000);
        await onEvent(event);
        return event;
      }
    } finally {
      leaveWaiting();
      this.inflight--;
      this.metrics.inflight.dec();
      if (this.inflight === 0) for (const w of this.#idleWaiters.splice(0)) w();
    }
  }
}

/**
 * An AbortController that fires when the client goes away before the
 * response is complete (socket closed, stream destroyed).
 */
export function abortOnDisconnect(reply: FastifyReply): AbortController {
  const controller = new AbortController();
  const res = reply.raw;
  const onClose = (): void => {
    if (!res.writableFinished) controller.abort(new Error('client disconnected'));
  };
  res.once('close', onClose);
  return controller;
}
