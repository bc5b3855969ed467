/**
 * One upstream worker (a `tsinfer serve` or SGLang instance) as the gateway
 * sees it: health, circuit breaker, the load it last polled, and what the
 * gateway itself has in flight there (requests, and estimated tokens per
 * DP rank).
 *
 * In-flight accounting is exact: `begin()` adds a request's estimate to the
 * rank it was sent to, and the returned ticket's `end()` takes the same
 * amount off again when that request completes (success, error, abort or a
 * failed attempt before a retry). SGLang's gateway instead only overwrote
 * its increments at the next poll, and re-added them on every retry (F-17).
 */
import type { Clock } from '@tsinfer/core';
import { CircuitBreaker } from './circuit-breaker.js';
import type { CircuitBreakerConfig } from './config.js';
import type { PolledLoad } from './load-parse.js';

/** Load as the policies see it: polled tokens plus the gateway's in-flight estimate. */
export interface KnownLoad {
  /** polled used tokens + in-flight estimate, per DP rank (null: the worker reports no ranks). */
  readonly ranks: ReadonlyMap<number, number> | null;
  /** polled total + every in-flight estimate on this worker. */
  readonly total: number;
}

export interface InflightTicket {
  readonly worker: Worker;
  /** The DP rank the request was sent to, or null (not pinned by the gateway and not known). */
  readonly dpRank: number | null;
  readonly tokens: number;
  /** Takes the request off the worker's in-flight counts; idempotent. */
  end(): void;
}

export class Worker {
  readonly url: string;
  readonly breaker: CircuitBreaker;
  healthy = true;
  healthFailures = 0;
  healthSuccesses = 0;
  lastHealthError: string | null = null;
  /** Set when removed at run time; in-flight requests still finish. */
  removed = false;
  /** Requests the gateway has in flight here. */
  inflightRequests = 0;
  /** Sum of their token estimates. */
  inflightTokens = 0;
  /** Requests completed (any outcome) through this worker. */
  processed = 0;
  #rankInflight = new Map<number, number>();
  #polled: PolledLoad | null = null;
  #polledAtMs = Number.NEGATIVE_INFINITY;
  lastPollError: string | null = null;
  pollFailures = 0;

  constructor(url: string, breaker: CircuitBreakerConfig, clock: Clock) {
    this.url = url;
    this.breaker = new CircuitBreaker(breaker, clock);
  }

  /** Healthy and its breaker would admit a request now. */
  isAvailable(): boolean {
    return !this.removed && this.healthy && this.breaker.canExecute();
  }

  /** Stores a successful poll. */
  setPolled(load: PolledLoad, atMs: number): void {
    this.#polled = load;
    this.#polledAtMs = atMs;
    this.lastPollError = null;
  }

  /** A failed poll: the old value stays until it ages out; it never becomes 0 (F-14). */
  pollFailed(error: string): void {
    this.lastPollError = error;
    this.pollFailures++;
  }

  /** The polled load if it is younger than `staleAfterMs`, else null. */
  polled(nowMs: number, staleAfterMs: number): PolledLoad | null {
    if (this.#polled === null || nowMs - this.#polledAtMs > staleAfterMs) return null;
    return this.#polled;
  }

  /** The last successful poll, however old (null if none). */
  lastPolled(): PolledLoad | null {
    return this.#polled;
  }

  get polledAtMs(): number {
    return this.#polledAtMs;
  }

  /** The gateway's in-flight token estimate on `rank`. */
  rankInflight(rank: number): number {
    return this.#rankInflight.get(rank) ?? 0;
  }

  rankInflightEntries(): Array<[number, number]> {
    return [...this.#rankInflight.entries()].sort((a, b) => a[0] - b[0]);
  }

  /** Polled + in-flight, or null when the polled load is unknown or stale (then the worker counts as busy). */
  knownLoad(nowMs: number, staleAfterMs: number): KnownLoad | null {
    const p = this.polled(nowMs, staleAfterMs);
    if (p === null) return null;
    let ranks: Map<number, number> | null = null;
    if (p.ranks !== null) {
      ranks = new Map();
      for (const [r, v] of p.ranks) ranks.set(r, v + this.rankInflight(r));
    }
    return { ranks, total: p.total + this.inflightTokens };
  }

  /** Counts a request as in flight here (on `dpRank` when known). */
  begin(dpRank: number | null, tokens: number): InflightTicket {
    this.inflightRequests++;
    this.inflightTokens += tokens;
    if (dpRank !== null) this.#rankInflight.set(dpRank, this.rankInflight(dpRank) + tokens);
    let ended = false;
    const ticket: InflightTicket = {
      worker: this,
      dpRank,
      tokens,
      end: () => {
        if (ended) return;
        ended = true;
        this.inflightRequests--;
        this.inflightTokens -= tokens;
        this.processed++;
        if (dpRank !== null) {
          const left = this.rankInflight(dpRank) - tokens;
          if (left === 0) this.#rankInflight.delete(dpRank);
          else this.#rankInflight.set(dpRank, left);
        }
      },
    };
    return ticket;
  }
}

/**
 * DP-rank minimum tokens (`--dp-minimum-tokens-scheduler`): the rank of
 * `worker` with the least polled used tokens plus in-flight estimate; ties go
 * to the lowest rank. Null when the worker's load is unknown or stale, or it
 * reports no ranks: then nothing is injected and the worker's own DP
 * controller decides.
 */
export function selectDpRank(worker: Worker, nowMs: number, staleAfterMs: number): number | null {
  const load = worker.knownLoad(nowMs, staleAfterMs);
  if (load === null || load.ranks === null) return null;
  let best: number | null = null;
  let bestLoad = Number.POSITIVE_INFINITY;
  for (const [r, v] of load.ranks) {
    if (v < bestLoad || (v === bestLoad && best !== null && r < best)) {
      best = r;
      bestLoad = v;
    }
  }
  return best;
}
