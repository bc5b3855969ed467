/**
 * The gateway's routing state: the workers, the policy over them, and the
 * DP-rank choice for the chosen worker. No I/O here; the HTTP proxy
 * (gateway.ts) asks it for a worker per attempt.
 */
import type { Clock, Rng } from '@tsinfer/core';
import type { BreakerPermit } from './circuit-breaker.js';
import { type GatewayConfig, normalizeWorkerUrl } from './config.js';
import { GatewayError } from './errors.js';
import { createPolicy, type Policy } from './policies/index.js';
import { type InflightTicket, selectDpRank, Worker } from './worker.js';

export interface Pick {
  readonly worker: Worker;
  readonly permit: BreakerPermit;
  /** The rank to inject (`routed_dp_rank`), or null to inject nothing. */
  readonly dpRank: number | null;
}

export class Router {
  readonly config: GatewayConfig;
  readonly clock: Clock;
  readonly policy: Policy;
  readonly #workers = new Map<string, Worker>();
  /** Called with a worker that was just added (the gateway probes it at once). */
  onAdd: ((w: Worker) => void) | null = null;

  constructor(config: GatewayConfig, clock: Clock, rng: Rng) {
    this.config = config;
    this.clock = clock;
    this.policy = createPolicy(config.policy, {
      rng,
      clock,
      staleAfterMs: config.load.staleAfterMs,
      cacheAware: config.cacheAware,
    });
    for (const url of config.workerUrls) this.add(url);
  }

  workers(): Worker[] {
    return [...this.#workers.values()];
  }

  get(url: string): Worker | undefined {
    return this.#workers.get(url);
  }

  /** Adds a worker (healthy until its probes say otherwise). Returns it and whether it was new. */
  add(rawUrl: string): { worker: Worker; added: boolean } {
    const url = normalizeWorkerUrl(rawUrl, 'url');
    const existing = this.#workers.get(url);
    if (existing !== undefined) return { worker: existing, added: false };
    const w = new Worker(url, this.config.circuitBreaker, this.clock);
    this.#workers.set(url, w);
    this.onAdd?.(w);
    return { worker: w, added: true };
  }

  /** Removes a worker; its in-flight requests still finish. */
  remove(rawUrl: string): Worker {
    let url: string;
    try {
      url = normalizeWorkerUrl(rawUrl, 'url');
    } catch {
      url = rawUrl;
    }
    const w = this.#workers.get(url);
    if (w === undefined)
      throw new GatewayError('TSI_ERR_WORKER_NOT_FOUND', `no worker ${rawUrl} is registered`, 'url');
    w.removed = true;
    this.#workers.delete(url);
    this.policy.removeWorker(url);
    return w;
  }

  /** Workers a request may go to now: healthy, breaker admitting. */
  available(): Worker[] {
    return this.workers().filter((w) => w.isAvailable());
  }

  /**
   * Picks a worker for one attempt: among the available workers not in
   * `tried` (all available ones if every one was tried), by the policy; then
   * takes a breaker permit (a half-open breaker hands out its single probe)
   * and, with the DP-rank scheduler on, the rank to inject unless the
   * client pinned one. Null when no worker is available.
   */
  pick(text: string, tried: ReadonlySet<string>): Pick | null {
    const avail = this.available();
    const fresh = avail.filter((w) => !tried.has(w.url));
    const candidates = fresh.length > 0 ? fresh : avail;
    if (candidates.length === 0) return null;
    const worker = this.policy.select(candidates, { text });
    if (worker === null) return null;
    const permit = worker.breaker.tryAcquire();
    if (permit === null) return null;
    const dpRank = this.config.dpMinimumTokensScheduler
      ? selectDpRank(worker, this.clock.nowMs(), this.config.load.staleAfterMs)
      : null;
    return { worker, permit, dpRank };
  }

  /** Counts a request in flight on the picked worker and rank. */
  begin(worker: Worker, dpRank: number | null, tokens: number): InflightTicket {
    return worker.begin(dpRank, tokens);
  }
}
