/**
 * Worker-selection policies (spec §5.3). Each picks one worker out of the
 * candidates the router passes it: workers that are healthy, whose circuit
 * breaker admits a request now, and (on a retry) preferably not tried yet.
 *
 * - `round_robin`: the next candidate in turn.
 * - `random`: uniform over the candidates.
 * - `power_of_two`: two distinct candidates at random; the one with the
 *   lower load (polled used tokens + the gateway's in-flight estimate) wins,
 *   the first on a tie. A worker whose load is unknown or stale counts as
 *   busy (never as zero, F-14); if both are unknown, the one with fewer
 *   in-flight requests wins.
 * - `cache_aware`: prefix affinity with a balance threshold; see
 *   `CacheAwarePolicy`.
 */
import type { Clock, Rng } from '@tsinfer/core';
import type { CacheAwareConfig, PolicyName } from '../config.js';
import type { Worker } from '../worker.js';
import { PrefixTree } from './prefix-tree.js';

export interface SelectInput {
  /** The text prefix affinity is computed on (may be empty). */
  readonly text: string;
}

export interface Policy {
  readonly name: PolicyName;
  /** One of `candidates` (non-empty), or null only if it is empty. */
  select(candidates: readonly Worker[], input: SelectInput): Worker | null;
  /** A worker was removed from the gateway. */
  removeWorker(url: string): void;
  /** Periodic housekeeping (cache_aware: LRU eviction). */
  maintain(): void;
}

export class RoundRobinPolicy implements Policy {
  readonly name = 'round_robin' as const;
  #counter = 0;
  select(candidates: readonly Worker[]): Worker | null {
    if (candidates.length === 0) return null;
    const w = candidates[this.#counter % candidates.length]!;
    this.#counter = (this.#counter + 1) % Number.MAX_SAFE_INTEGER;
    return w;
  }
  reset(): void {
    this.#counter = 0;
  }
  removeWorker(): void {}
  maintain(): void {}
}

export class RandomPolicy implements Policy {
  readonly name = 'random' as const;
  readonly #rng: Rng;
  constructor(rng: Rng) {
    this.#rng = rng;
  }
  select(candidates: readonly Worker[]): Worker | null {
    if (candidates.length === 0) return null;
    return candidates[this.#rng.int(0, candidates.length - 1)]!;
  }
  removeWorker(): void {}
  maintain(): void {}
}

export class PowerOfTwoPolicy implements Policy {
  readonly name = 'power_of_two' as const;
  readonly #rng: Rng;
  readonly #clock: Clock;
  readonly #staleAfterMs: number;
  constructor(rng: Rng, clock: Clock, staleAfterMs: number) {
    this.#rng = rng;
    this.#clock = clock;
    this.#staleAfterMs = staleAfterMs;
  }
  select(candidates: readonly Worker[]): Worker | null {
    const n = candidates.length;
    if (n === 0) return null;
    if (n === 1) return candidates[0]!;
    const i = this.#rng.int(0, n - 1);
    const j = (i + 1 + this.#rng.int(0, n - 2)) % n;
    const a = candidates[i]!;
    const b = candidates[j]!;
    const now = this.#clock.nowMs();
    const la = a.knownLoad(now, this.#staleAfterMs);
    const lb = b.knownLoad(now, this.#staleAfterMs);
    if (la === null && lb === null) return a.inflightRequests <= b.inflightRequests ? a : b;
    if (la === null) return b;
    if (lb === null) return a;
    return la.total <= lb.total ? a : b;
  }
  removeWorker(): void {}
  maintain(): void {}
}

/**
 * Cache-aware (SGLang's default policy):
 *
 * 1. Imbalance test over the candidates' in-flight request counts:
 *    (max − min) > balanceAbsThreshold **and** max > min × balanceRelThreshold.
 * 2. Imbalanced: the candidate with the fewest in-flight requests (on a
 *    tie the one holding the fewest characters in the tree, then the first).
 * 3. Balanced: prefix-match the request text in the tree; if matched chars ÷
 *    text chars > cacheThreshold, the matched worker; otherwise the candidate
 *    with the fewest in-flight requests.
 * 4. The text is inserted under the chosen worker.
 */
export class CacheAwarePolicy implements Policy {
  readonly name = 'cache_aware' as const;
  readonly tree = new PrefixTree();
  readonly #config: CacheAwareConfig;
  readonly #clock: Clock;
  constructor(config: CacheAwareConfig, clock: Clock) {
    this.#config = config;
    this.#clock = clock;
  }
  select(candidates: readonly Worker[], input: SelectInput): Worker | null {
    if (candidates.length === 0) return null;
    // Least loaded: fewest in-flight requests; on a tie, the smallest prefix tree
    // (so distinct prefixes spread over idle workers), then the first.
    let least = candidates[0]!;
    let max = least.inflightRequests;
    for (const w of candidates) {
      const fewer = w.inflightRequests < least.inflightRequests;
      const tie =
        w.inflightRequests === least.inflightRequests && this.tree.size(w.url) < this.tree.size(least.url);
      if (fewer || tie) least = w;
      if (w.inflightRequests > max) max = w.inflightRequests;
    }
    const min = least.inflightRequests;
    const imbalanced =
      max - min > this.#config.balanceAbsThreshold && max > min * this.#config.balanceRelThreshold;
    let chosen = least;
    if (!imbalanced && input.text.length > 0) {
      const allowed = new Set(candidates.map((w) => w.url));
      const m = this.tree.match(input.text, allowed);
      const rate = m.matchedChars / input.text.length;
      if (m.tenant !== null && rate > this.#config.cacheThreshold) {
        chosen = candidates.find((w) => w.url === m.tenant) ?? least;
      }
    }
    if (input.text.length > 0) this.tree.insert(input.text, chosen.url, this.#clock.nowMs());
    return chosen;
  }
  removeWorker(url: string): void {
    this.tree.removeTenant(url);
  }
  maintain(): void {
    this.tree.evict(this.#config.maxTreeSize);
  }
}

export function createPolicy(
  name: PolicyName,
  deps: { rng: Rng; clock: Clock; staleAfterMs: number; cacheAware: CacheAwareConfig },
): Policy {
  switch (name) {
    case 'round_robin':
      return new RoundRobinPolicy();
    case 'random':
      return new RandomPolicy(deps.rng);
    case 'power_of_two':
      return new PowerOfTwoPolicy(deps.rng, deps.clock, deps.staleAfterMs);
    case 'cache_aware':
      return new CacheAwarePolicy(deps.cacheAware, deps.clock);
  }
}
