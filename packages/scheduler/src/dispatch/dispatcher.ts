/**
 * DpDispatcher: the DP controller's choice of a rank for each request
 * (SGLang's DataParallelController + DPBudget, spec §1), over the ranks'
 * load snapshots (../load-snapshot/).
 *
 * Methods (`--load-balance-method`):
 *  - round_robin: SGLang §1.4; the counter skips ranks that are not live.
 *  - total_requests: SGLang §1.6: lowest index with the least
 *    `running + waiting`; dispatch adds +1 to the chosen rank.
 *  - total_tokens: SGLang §1.6: lowest index minimising
 *    (`num_total_tokens`, requests); dispatch adds +1 request and +prompt
 *    tokens (PR #22614; `incrementTokens: false` gives the "before").
 *  - minimum_tokens: load = `num_total_tokens` of the rank's newest
 *    snapshot + prompt tokens of the requests dispatched to it that the
 *    rank has not acknowledged yet. Every dispatch gets a per-rank sequence
 *    number (`lastSeq`); the rank reports the highest one it has received in
 *    its snapshot (`ackedDispatchSeq`), so a refresh drops exactly the
 *    requests the snapshot already counts: in-flight requests are never
 *    erased (SGLang flaw F-3) and never double counted. Lowest rank on ties.
 *  - auto: minimum_tokens when dpSize > 1, else round_robin.
 *
 * Budgets are refreshed from the snapshots at most every
 * `refreshIntervalMs` (SGLang's 20 ms throttle), once per request or once per
 * batch; a snapshot whose timestamp equals the last one applied for its rank
 * is skipped. Between refreshes total_* run on their speculative increments.
 *
 * Liveness (unlike SGLang, whose budget methods ignore it, flaw F-6): a rank
 * is live when it is not marked dead and its newest snapshot is at most
 * `staleAfterMs` old. No method picks a rank that is not live; when none is
 * live, dispatch throws NoLiveRankError (503).
 *
 * `routed_dp_rank` pinning: an integer in [0, dpSize) sends the request to
 * that rank and changes no counter (its `lastSeq` is 0); out of range →
 * InvalidDpRankError (400); a pinned rank that is not live → RankFailedError
 * (503) for that request only (SGLang stops its controller, flaw F-8).
 *
 * Per dispatch: O(dpSize), no allocation (typed arrays; the in-flight ring
 * only grows, by doubling, when a rank has more unacknowledged requests than
 * its capacity).
 */
import { type Clock, InvalidConfigError, TsinferError } from '@tsinfer/core';
import { createLoadHead, type LoadHead } from '../load-snapshot/snapshot.js';
import {
  DEFAULT_DP_REFRESH_INTERVAL_MS,
  DEFAULT_LOAD_SNAPSHOT_STALE_MS,
  type LoadBalanceMethod,
  parseLoadBalanceMethod,
  type ResolvedLoadBalanceMethod,
  resolveLoadBalanceMethod,
} from './config.js';
import { InvalidDpRankError, NoLiveRankError, RankFailedError } from './errors.js';

/** Where the dispatcher reads loads from; `LoadSnapshotBoard` is one. */
export interface LoadSource {
  readonly dpSize: number;
  /** Copies the newest snapshot head of `rank` into `into`; false if none (or unreadable now). */
  readLoad(rank: number, into: LoadHead): boolean;
}

export interface DpDispatcherOptions {
  /** Number of DP ranks (must equal `loads.dpSize`). */
  dpSize: number;
  /** `--load-balance-method` (default auto). */
  method?: LoadBalanceMethod;
  loads: LoadSource;
  clock: Clock;
  /** Least time between two budget refreshes from the snapshots (default 20 ms; 0 = every dispatch). */
  refreshIntervalMs?: number;
  /** `--load-snapshot-stale-ms` (default 30,000; Infinity = never stale). */
  staleAfterMs?: number;
  /** total_tokens: add the prompt tokens on dispatch (PR #22614). Default true; false reproduces the "before". */
  incrementTokens?: boolean;
  /** Initial per-rank capacity of the in-flight ring (minimum_tokens); it doubles when full. Default 256. */
  inflightCapacity?: number;
}

const ROUND_ROBIN = 0;
const TOTAL_REQUESTS = 1;
const TOTAL_TOKENS = 2;
const MINIMUM_TOKENS = 3;

export class DpDispatcher {
  readonly dpSize: number;
  readonly method: ResolvedLoadBalanceMethod;
  readonly refreshIntervalMs: number;
  readonly staleAfterMs: number;
  readonly incrementTokens: boolean;

  /** Budget refreshes that read the snapshots. */
  refreshes = 0;
  /** Snapshots skipped by a refresh because their timestamp equals the last one applied. */
  staleSkips = 0;
  /** Requests sent to each rank (pinned included). */
  readonly dispatched: Float64Array;
  /** Pinned (`routed_dp_rank`) requests. */
  pinned = 0;

  readonly #m: number;
  readonly #loads: LoadSource;
  readonly #clock: Clock;
  readonly #head: LoadHead = createLoadHead();
  #counter = 0;
  #lastRefreshMs = Number.NEGATIVE_INFINITY;
  #lastSeq = 0;

  readonly #dead: Uint8Array;
  /** Timestamp of the newest snapshot seen (liveness); NaN = none. */
  readonly #liveTs: Float64Array;
  /** Timestamp of the last snapshot applied to the budget; NaN = none. */
  readonly #appliedTs: Float64Array;
  readonly #totalRequests: Float64Array;
  readonly #totalTokens: Float64Array;
  /** minimum_tokens: `num_total_tokens` of the newest applied snapshot. */
  readonly #held: Float64Array;
  readonly #acked: Float64Array;
  /** Last sequence number given to a request for each rank. */
  readonly #seq: Float64Array;
  readonly #inflightTokens: Float64Array;
  // In-flight ring per rank: entries [head, head+len) of rank r live at r*cap + (i & (cap-1)).
  #cap: number;
  #ringSeq: Float64Array;
  #ringTok: Float64Array;
  readonly #ringHead: Int32Array;
  readonly #ringLen: Int32Array;

  constructor(options: DpDispatcherOptions) {
    const { dpSize, loads, clock } = options;
    if (!Number.isInteger(dpSize) || dpSize < 1) {
      throw new InvalidConfigError('--dp-size', `must be an integer >= 1, got ${dpSize}`);
    }
    if (loads.dpSize !== dpSize) {
      throw new InvalidConfigError(
        '--dp-size',
        `the load board has ${loads.dpSize} slots, expected ${dpSize}`,
      );
    }
    const refresh = options.refreshIntervalMs ?? DEFAULT_DP_REFRESH_INTERVAL_MS;
    if (!(refresh >= 0)) throw new InvalidConfigError('refreshIntervalMs', `must be >= 0, got ${refresh}`);
    const stale = options.staleAfterMs ?? DEFAULT_LOAD_SNAPSHOT_STALE_MS;
    if (!(stale > 0)) throw new InvalidConfigError('--load-snapshot-stale-ms', `must be > 0, got ${stale}`);
    let cap = options.inflightCapacity ?? 256;
    if (!Number.isInteger(cap) || cap < 1)
      throw new InvalidConfigError('inflightCapacity', `must be an integer >= 1, got ${cap}`);
    cap = 1 << Math.ceil(Math.log2(cap));

    this.dpSize = dpSize;
    this.method = resolveLoadBalanceMethod(parseLoadBalanceMethod(options.method ?? 'auto'), dpSize);
    this.#m =
      this.method === 'round_robin'
        ? ROUND_ROBIN
        : this.method === 'total_requests'
          ? TOTAL_REQUESTS
          : this.method === 'total_tokens'
            ? TOTAL_TOKENS
            : MINIMUM_TOKENS;
    this.refreshIntervalMs = refresh;
    this.staleAfterMs = stale;
    this.incrementTokens = options.incrementTokens ?? true;
    this.#loads = loads;
    this.#clock = clock;
    this.dispatched = new Float64Array(dpSize);
    this.#dead = new Uint8Array(dpSize);
    this.#liveTs = new Float64Array(dpSize).fill(Number.NaN);
    this.#appliedTs = new Float64Array(dpSize).fill(Number.NaN);
    this.#totalRequests = new Float64Array(dpSize);
    this.#totalTokens = new Float64Array(dpSize);
    this.#held = new Float64Array(dpSize);
    this.#acked = new Float64Array(dpSize);
    this.#seq = new Float64Array(dpSize);
    this.#inflightTokens = new Float64Array(dpSize);
    this.#cap = cap;
    this.#ringSeq = new Float64Array(dpSize * cap);
    this.#ringTok = new Float64Array(dpSize * cap);
    this.#ringHead = new Int32Array(dpSize);
    this.#ringLen = new Int32Array(dpSize);
  }

  /**
   * The per-rank dispatch sequence number of the last `dispatch` (0 for a
   * pinned request). The server sends it with the request; the rank reports
   * the highest it has received as its snapshot's `ackedDispatchSeq`.
   */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /**
   * Picks the rank for one request of `promptTokens` tokens (after
   * tokenization) and counts it. `routedDpRank` pins the rank (null or
   * undefined: not pinned). Refreshes the budget first (throttled).
   */
  dispatch(promptTokens: number, routedDpRank: number | null = null): number {
    if (routedDpRank !== null && routedDpRank !== undefined) this.#checkRoutedRange(routedDpRank);
    this.#checkTokens(promptTokens);
    this.refresh();
    return this.#dispatchOne(promptTokens, routedDpRank ?? null);
  }

  /**
   * A batch of requests (SGLang's batch message): every pinned rank and
   * token count is validated first (nothing is dispatched if one is
   * invalid), the budget is refreshed once, then each request is dispatched
   * in order. `ranksOut[i]` gets request i's rank and `seqsOut[i]` its
   * sequence number.
   */
  dispatchBatch(
    promptTokens: ArrayLike<number>,
    routedDpRanks: ArrayLike<number | null | undefined> | null,
    ranksOut: Int32Array,
    seqsOut?: Float64Array,
  ): void {
    const n = promptTokens.length;
    if (ranksOut.length < n || (seqsOut !== undefined && seqsOut.length < n)) {
      throw new RangeError(`dispatchBatch: output arrays shorter than the batch (${n})`);
    }
    for (let i = 0; i < n; i++) {
      this.#checkTokens(promptTokens[i]!);
      const r = routedDpRanks?.[i];
      if (r !== null && r !== undefined) this.#checkRoutedRange(r);
    }
    this.refresh();
    for (let i = 0; i < n; i++) {
      const r = routedDpRanks?.[i];
      ranksOut[i] = this.#dispatchOne(promptTokens[i]!, r ?? null);
      if (seqsOut !== undefined) seqsOut[i] = this.#lastSeq;
    }
  }

  /**
   * Reads every live rank's newest snapshot head and applies the ones whose
   * timestamp differs from the last applied, unless the last refresh was
   * less than `refreshIntervalMs` ago. Returns true when it read.
   */
  refresh(): boolean {
    const now = this.#clock.nowMs();
    if (now - this.#lastRefreshMs < this.refreshIntervalMs) return false;
    this.#lastRefreshMs = now;
    this.refreshes++;
    const head = this.#head;
    for (let r = 0; r < this.dpSize; r++) {
      if (this.#dead[r] === 1) continue;
      if (!this.#loads.readLoad(r, head)) continue;
      this.#liveTs[r] = head.timestamp;
      if (head.timestamp === this.#appliedTs[r]) {
        this.staleSkips++;
        continue;
      }
      this.#appliedTs[r] = head.timestamp;
      this.#totalRequests[r] = head.numRunningReqs + head.numWaitingReqs;
      this.#totalTokens[r] = head.numTotalTokens;
      this.#held[r] = head.numTotalTokens;
      this.#ack(r, head.ackedDispatchSeq);
    }
    return true;
  }

  /** The rank's worker exited: out of dispatch at once, until `markAlive`. */
  markDead(rank: number): void {
    this.#checkRank(rank);
    this.#dead[rank] = 1;
  }

  /**
   * A (new) worker serves `rank`: it is back in dispatch once it has a
   * snapshot within the staleness limit. Its budget and in-flight requests
   * are cleared (the old worker's requests died with it); its sequence
   * numbers go on from where they were. Reset the rank's board slot before
   * starting the new worker so that the old worker's snapshot cannot make
   * it look live.
   */
  markAlive(rank: number): void {
    this.#checkRank(rank);
    this.#dead[rank] = 0;
    this.#liveTs[rank] = Number.NaN;
    this.#appliedTs[rank] = Number.NaN;
    this.#totalRequests[rank] = 0;
    this.#totalTokens[rank] = 0;
    this.#held[rank] = 0;
    this.#acked[rank] = this.#seq[rank]!;
    this.#inflightTokens[rank] = 0;
    this.#ringHead[rank] = 0;
    this.#ringLen[rank] = 0;
  }

  /** True when `rank` may be dispatched to now (not dead, snapshot within the staleness limit). */
  isLive(rank: number): boolean {
    this.#checkRank(rank);
    return this.#isLive(rank, this.#clock.nowMs());
  }

  /** True when the rank was marked dead. */
  isDead(rank: number): boolean {
    this.#checkRank(rank);
    return this.#dead[rank] === 1;
  }

  /**
   * The number the method compares for `rank` (after any speculative
   * increments): requests for total_requests, tokens for total_tokens,
   * held + in-flight tokens for minimum_tokens, 0 for round_robin (it
   * reads no load).
   */
  load(rank: number): number {
    this.#checkRank(rank);
    switch (this.#m) {
      case TOTAL_REQUESTS:
        return this.#totalRequests[rank]!;
      case TOTAL_TOKENS:
        return this.#totalTokens[rank]!;
      case MINIMUM_TOKENS:
        return this.#held[rank]! + this.#inflightTokens[rank]!;
      default:
        return 0;
    }
  }

  /** total_requests / total_tokens budget: requests of `rank`. */
  totalRequests(rank: number): number {
    return this.#totalRequests[rank]!;
  }
  /** total_tokens budget: tokens of `rank`. */
  totalTokens(rank: number): number {
    return this.#totalTokens[rank]!;
  }
  /** minimum_tokens: tokens the rank's newest snapshot holds. */
  heldTokens(rank: number): number {
    return this.#held[rank]!;
  }
  /** minimum_tokens: prompt tokens dispatched to `rank` and not yet acknowledged. */
  inflightTokens(rank: number): number {
    return this.#inflightTokens[rank]!;
  }
  /** minimum_tokens: requests dispatched to `rank` and not yet acknowledged. */
  inflightRequests(rank: number): number {
    return this.#ringLen[rank]!;
  }
  /** Highest sequence number `rank` has acknowledged. */
  ackedSeq(rank: number): number {
    return this.#acked[rank]!;
  }

  #checkRank(rank: number): void {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.dpSize)
      throw new InvalidDpRankError(rank, this.dpSize);
  }

  #checkRoutedRange(rank: number): void {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.dpSize)
      throw new InvalidDpRankError(rank, this.dpSize);
  }

  #checkTokens(n: number): void {
    if (!(Number.isSafeInteger(n) && n >= 0)) {
      throw new TsinferError(
        'TSI_ERR_INVALID_REQUEST',
        `prompt token count must be an integer >= 0, got ${n}`,
      );
    }
  }

  #isLive(r: number, now: number): boolean {
    if (this.#dead[r] === 1) return false;
    if (now - this.#liveTs[r]! <= this.staleAfterMs) return true;
    // Stale (or none) as of the last refresh; the rank may have published
    // since. Re-read its timestamp only (the budget waits for the next refresh).
    const head = this.#head;
    if (!this.#loads.readLoad(r, head)) return false;
    this.#liveTs[r] = head.timestamp;
    return now - head.timestamp <= this.staleAfterMs;
  }

  #dispatchOne(promptTokens: number, routed: number | null): number {
    const now = this.#clock.nowMs();
    if (routed !== null) {
      if (!this.#isLive(routed, now)) {
        const reason =
          this.#dead[routed] === 1
            ? 'its worker exited'
            : Number.isNaN(this.#liveTs[routed]!)
              ? 'it has not published a load snapshot'
              : `its load snapshot is ${Math.round(now - this.#liveTs[routed]!)} ms old (limit ${this.staleAfterMs} ms)`;
        throw new RankFailedError(routed, reason);
      }
      this.pinned++;
      this.dispatched[routed]!++;
      this.#lastSeq = 0;
      return routed;
    }
    const target = this.#choose(now);
    if (target < 0) throw new NoLiveRankError(this.dpSize);
    switch (this.#m) {
      case TOTAL_REQUESTS:
        this.#totalRequests[target]!++;
        break;
      case TOTAL_TOKENS:
        this.#totalRequests[target]!++;
        if (this.incrementTokens) this.#totalTokens[target]! += promptTokens;
        break;
      default:
        break;
    }
    const seq = ++this.#seq[target]!;
    if (this.#m === MINIMUM_TOKENS) this.#push(target, seq, promptTokens);
    this.#lastSeq = seq;
    this.dispatched[target]!++;
    return target;
  }

  /** The method's choice among live ranks, or -1 when none is live. */
  #choose(now: number): number {
    const n = this.dpSize;
    switch (this.#m) {
      case ROUND_ROBIN: {
        for (let attempt = 0; attempt < n; attempt++) {
          const slot = this.#counter;
          this.#counter = (this.#counter + 1) % n;
          if (this.#isLive(slot, now)) return slot;
        }
        return -1;
      }
      case TOTAL_REQUESTS: {
        let best = -1;
        let bestReq = 0;
        for (let r = 0; r < n; r++) {
          if (!this.#isLive(r, now)) continue;
          const req = this.#totalRequests[r]!;
          if (best < 0 || req < bestReq) {
            best = r;
            bestReq = req;
          }
        }
        return best;
      }
      case TOTAL_TOKENS: {
        let best = -1;
        let bestTok = 0;
        let bestReq = 0;
        for (let r = 0; r < n; r++) {
          if (!this.#isLive(r, now)) continue;
          const tok = this.#totalTokens[r]!;
          const req = this.#totalRequests[r]!;
          if (best < 0 || tok < bestTok || (tok === bestTok && req < bestReq)) {
            best = r;
            bestTok = tok;
            bestReq = req;
          }
        }
        return best;
      }
      default: {
        let best = -1;
        let bestLoad = 0;
        for (let r = 0; r < n; r++) {
          if (!this.#isLive(r, now)) continue;
          const load = this.#held[r]! + this.#inflightTokens[r]!;
          if (best < 0 || load < bestLoad) {
            best = r;
            bestLoad = load;
          }
        }
        return best;
      }
    }
  }

  /** Drops in-flight entries of `r` with seq <= acked. */
  #ack(r: number, acked: number): void {
    if (acked > this.#acked[r]!) this.#acked[r] = acked;
    const a = this.#acked[r]!;
    const mask = this.#cap - 1;
    const base = r * this.#cap;
    let head = this.#ringHead[r]!;
    let len = this.#ringLen[r]!;
    let tokens = this.#inflightTokens[r]!;
    while (len > 0 && this.#ringSeq[base + head]! <= a) {
      tokens -= this.#ringTok[base + head]!;
      head = (head + 1) & mask;
      len--;
    }
    this.#ringHead[r] = head;
    this.#ringLen[r] = len;
    this.#inflightTokens[r] = len === 0 ? 0 : tokens;
  }

  #push(r: number, seq: number, tokens: number): void {
    if (this.#ringLen[r] === this.#cap) this.#grow();
    const cap = this.#cap;
    const idx = r * cap + ((this.#ringHead[r]! + this.#ringLen[r]!) & (cap - 1));
    this.#ringSeq[idx] = seq;
    this.#ringTok[idx] = tokens;
    this.#ringLen[r]!++;
    this.#inflightTokens[r]! += tokens;
  }

  /** Doubles every rank's ring (rare: a rank with `cap` unacknowledged requests). */
  #grow(): void {
    const old = this.#cap;
    const cap = old * 2;
    const seqs = new Float64Array(this.dpSize * cap);
    const toks = new Float64Array(this.dpSize * cap);
    for (let r = 0; r < this.dpSize; r++) {
      const head = this.#ringHead[r]!;
      const len = this.#ringLen[r]!;
      for (let i = 0; i < len; i++) {
        const from = r * old + ((head + i) & (old - 1));
        seqs[r * cap + i] = this.#ringSeq[from]!;
        toks[r * cap + i] = this.#ringTok[from]!;
      }
      this.#ringHead[r] = 0;
    }
    this.#cap = cap;
    this.#ringSeq = seqs;
    this.#ringTok = toks;
  }
}
