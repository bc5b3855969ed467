/**
 * The gateway's own `/metrics` (prom-client, one registry per gateway).
 * Names are `tsinfer_gateway_*`; docs/gateway.md lists them.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { BREAKER_STATE_CODE } from './circuit-breaker.js';
import type { Worker } from './worker.js';

/** Buckets of the added-latency histogram (seconds). */
export const ADDED_LATENCY_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'worker' | 'dp_rank' | 'status'>;
  readonly retries: Counter<'worker' | 'reason'>;
  readonly failures: Counter<'route' | 'code'>;
  readonly addedLatency: Histogram<'route'>;
  readonly upstreamLatency: Histogram<'route'>;
  readonly clientAborts: Counter<'route'>;

  constructor(workers: () => readonly Worker[]) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'tsinfer_gateway_requests_total',
      help: 'Requests the gateway completed through a worker, by route, worker, injected DP rank ("" when none) and final status.',
      labelNames: ['route', 'worker', 'dp_rank', 'status'],
      registers,
    });
    this.retries = new Counter({
      name: 'tsinfer_gateway_retries_total',
      help: 'Retries, by the worker whose attempt failed and the reason (an HTTP status or a connection error code).',
      labelNames: ['worker', 'reason'],
      registers,
    });
    this.failures = new Counter({
      name: 'tsinfer_gateway_failed_requests_total',
      help: 'Requests the gateway answered with its own error (no worker, upstream failure, timeout), by route and code.',
      labelNames: ['route', 'code'],
      registers,
    });
    this.clientAborts = new Counter({
      name: 'tsinfer_gateway_client_aborts_total',
      help: 'Requests whose client went away before the end; the abort was passed upstream.',
      labelNames: ['route'],
      registers,
    });
    this.addedLatency = new Histogram({
      name: 'tsinfer_gateway_added_latency_seconds',
      help: "Time the gateway added to a request: its whole time minus the final attempt's time at the worker (retries and backoff included).",
      labelNames: ['route'],
      buckets: [...ADDED_LATENCY_BUCKETS],
      registers,
    });
    this.upstreamLatency = new Histogram({
      name: 'tsinfer_gateway_upstream_latency_seconds',
      help: "Time of a request's final attempt at its worker, from sending to the end of the response.",
      labelNames: ['route'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
    const gauge = (
      name: string,
      help: string,
      labelNames: string[],
      fill: (set: (labels: Record<string, string>, v: number) => void, w: Worker) => void,
    ): void => {
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const w of workers()) fill((l, v) => this.set(l, v), w);
        },
      });
    };
    gauge(
      'tsinfer_gateway_worker_healthy',
      'Whether a worker passes its health checks (1) or not (0).',
      ['worker'],
      (set, w) => set({ worker: w.url }, w.healthy ? 1 : 0),
    );
    gauge(
      'tsinfer_gateway_circuit_breaker_state',
      "A worker's circuit breaker: 0 closed, 1 open, 2 half-open.",
      ['worker'],
      (set, w) => set({ worker: w.url }, BREAKER_STATE_CODE[w.breaker.state]),
    );
    gauge(
      'tsinfer_gateway_circuit_breaker_transitions',
      "Number of state changes of a worker's circuit breaker.",
      ['worker'],
      (set, w) => set({ worker: w.url }, w.breaker.transitions),
    );
    gauge(
      'tsinfer_gateway_inflight_requests',
      'Requests the gateway has in flight at a worker.',
      ['worker'],
      (set, w) => set({ worker: w.url }, w.inflightRequests),
    );
    gauge(
      'tsinfer_gateway_inflight_tokens',
      'Estimated prompt tokens the gateway has in flight at a worker, per DP rank it injected.',
      ['worker', 'dp_rank'],
      (set, w) => {
        for (const [r, v] of w.rankInflightEntries()) set({ worker: w.url, dp_rank: String(r) }, v);
      },
    );
    gauge(
      'tsinfer_gateway_worker_used_tokens',
      'Used tokens per DP rank, as last polled from the worker (absent while unknown).',
      ['worker', 'dp_rank'],
      (set, w) => {
        const p = w.lastPolled();
        if (p?.ranks) for (const [r, v] of p.ranks) set({ worker: w.url, dp_rank: String(r) }, v);
      },
    );
    gauge(
      'tsinfer_gateway_load_poll_failures',
      'Failed load polls of a worker since it was added.',
      ['worker'],
      (set, w) => set({ worker: w.url }, w.pollFailures),
    );
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
