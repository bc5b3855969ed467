/**
 * The waiting queue: a ring-buffer deque of requests in admission order.
 *
 * - New requests go to the back; retracted requests go to the front (they
 *   already waited once and hold progress; vLLM prepends preempted requests
 *   the same way).
 * - Aborting a waiting request marks it removed in O(1); removed entries are
 *   dropped when they reach the front.
 * - The scheduler admits from the front, so a pass touches only the
 *   requests it admits plus the one it stops at: O(admitted), never
 *   O(queue length). Counts (`size`, `queuedTokens`) are kept incrementally.
 *
 * Ordering policies (`--schedule-policy`) reorder the queue before
 * admission. `fcfs` leaves it alone. `lpm` (longest prefix match) needs a
 * prefix cache to score requests; the runner contract has none yet, so
 * without a {@link PrefixMatcher} lpm is fcfs — as SGLang's lpm is when its
 * radix cache is disabled — and, as in SGLang, it also falls back to fcfs
 * when more than {@link LPM_MAX_QUEUE} requests wait (the sort would cost
 * more than it saves).
 */
import type { SchedulePolicyName } from './config.js';
import type { Request } from './request.js';

/** Scores a waiting request for lpm: tokens of its fill already in a prefix cache. */
export interface PrefixMatcher {
  matchPrefixLen(fill: Int32Array): number;
}

/** SGLang: lpm turns into fcfs above this many waiting requests. */
export const LPM_MAX_QUEUE = 128;

export class WaitingQueue {
  #buf: (Request | null)[];
  #head = 0;
  /** Occupied slots (live + removed-but-not-dropped). */
  #slots = 0;
  #live = 0;
  #queuedTokens = 0;
  #removed = new Set<Request>();

  constructor(initialCapacity = 64) {
    let cap = 1;
    while (cap < initialCapacity) cap <<= 1;
    this.#buf = new Array<Request | null>(cap).fill(null);
  }

  /** Live waiting requests. */
  get size(): number {
    return this.#live;
  }

  /** Σ fill length over live waiting requests (SGLang's queued seqlen). */
  get queuedTokens(): number {
    return this.#queuedTokens;
  }

  pushBack(req: Request): void {
    if (this.#slots === this.#buf.length) this.#grow();
    this.#buf[(this.#head + this.#slots) & (this.#buf.length - 1)] = req;
    this.#slots++;
    this.#live++;
    this.#queuedTokens += req.fill.length;
  }

  pushFront(req: Request): void {
    if (this.#slots === this.#buf.length) this.#grow();
    this.#head = (this.#head - 1) & (this.#buf.length - 1);
    this.#buf[this.#head] = req;
    this.#slots++;
    this.#live++;
    this.#queuedTokens += req.fill.length;
  }

  /** The first live request (drops removed entries at the front), or null. */
  peek(): Request | null {
    const buf = this.#buf;
    const mask = buf.length - 1;
    while (this.#slots > 0) {
      const r = buf[this.#head]!;
      if (this.#removed.size > 0 && this.#removed.has(r)) {
        this.#removed.delete(r);
        buf[this.#head] = null;
        this.#head = (this.#head + 1) & mask;
        this.#slots--;
        continue;
      }
      return r;
    }
    return null;
  }

  /** Removes and returns the first live request, or null. */
  popFront(): Request | null {
    const r = this.peek();
    if (r === null) return null;
    this.#buf[this.#head] = null;
    this.#head = (this.#head + 1) & (this.#buf.length - 1);
    this.#slots--;
    this.#live--;
    this.#queuedTokens -= r.fill.length;
    return r;
  }

  /** Marks a waiting request removed (abort). O(1). The caller guarantees it is in the queue. */
  remove(req: Request): void {
    this.#removed.add(req);
    this.#live--;
    this.#queuedTokens -= req.fill.length;
  }

  /** Live requests in queue order (allocates; for tests and diagnostics, not the hot path). */
  toArray(): Request[] {
    const out: Request[] = [];
    const mask = this.#buf.length - 1;
    for (let i = 0; i < this.#slots; i++) {
      const r = this.#buf[(this.#head + i) & mask]!;
      if (!this.#removed.has(r)) out.push(r);
    }
    return out;
  }

  /**
   * Applies the ordering policy before an admission round. `fcfs`: nothing.
   * `lpm` with a matcher and at most {@link LPM_MAX_QUEUE} live requests:
   * stable sort by matched prefix length, longest first.
   */
  applyPolicy(policy: SchedulePolicyName, matcher: PrefixMatcher | null): void {
    if (policy === 'fcfs' || matcher === null || this.#live <= 1 || this.#live > LPM_MAX_QUEUE) return;
    const live = this.toArray();
    const scored = live.map((r, i) => ({ r, i, m: matcher.matchPrefixLen(r.fill) }));
    scored.sort((a, b) => b.m - a.m || a.i - b.i);
    const cap = this.#buf.length;
    this.#buf = new Array<Request | null>(cap).fill(null);
    this.#head = 0;
    this.#slots = scored.length;
    this.#removed.clear();
    for (let i = 0; i < scored.length; i++) this.#buf[i] = scored[i]!.r;
  }

  #grow(): void {
    const old = this.#buf;
    const mask = old.length - 1;
    const next = new Array<Request | null>(old.length * 2).fill(null);
    for (let i = 0; i < this.#slots; i++) next[i] = old[(this.#head + i) & mask]!;
    this.#buf = next;
    this.#head = 0;
  }
}
