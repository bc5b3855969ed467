/**
 * Collectives as the scheduler sees them, and the in-process group that lets
 * N ranks share one thread (the virtual-time driver).
 *
 * The problem: `@tsinfer/delayer`'s `AllGather.gather` is synchronous and
 * blocking (right for ranks on worker threads), and the delayer calls it from
 * inside `negotiate`. N ranks in one thread cannot each block in it.
 *
 * The design (one Scheduler code path for threads and virtual time):
 *
 * 1. The scheduler talks to a {@link GroupGather}: `gather(row)` returns the
 *    round's result or a promise of it, and the scheduler always `await`s it.
 *    A `SharedMemoryAllGather` or `LocalAllGather` is a GroupGather as it is
 *    (it returns synchronously; the await costs a microtask). An
 *    {@link InProcessGatherGroup} endpoint returns a promise that resolves
 *    once every rank of the group has contributed its row for the round.
 * 2. The delayer is given a {@link PrefetchedAllGather}: a synchronous
 *    `AllGather` whose `gather` returns a result the scheduler fetched just
 *    before. Each pass the scheduler computes the exact row the delayer will
 *    send (the negotiation inputs are known before the admission loop, see
 *    scheduler.ts), awaits the group round with it, then calls
 *    `negotiate`/`finalize`; the delayer's `gather(row)` checks that its row
 *    is the prefetched one (throwing `TSI_ERR_DELAYER_PROTOCOL` if not, so a
 *    drift between the two encodings cannot go unnoticed) and returns the
 *    prefetched rows.
 */
import { type Clock, CollectiveClosedError, TsinferError } from '@tsinfer/core';
import type { AllGather, GatherResult } from '@tsinfer/delayer';

/** One rank's endpoint of a group all-gather; synchronous (threads) or asynchronous (in-process). */
export interface GroupGather {
  readonly rank: number;
  readonly worldSize: number;
  readonly rowWidth: number;
  gather(row: ArrayLike<number>): GatherResult | Promise<GatherResult>;
}

class ProtocolError extends TsinferError {
  constructor(message: string) {
    super('TSI_ERR_DELAYER_PROTOCOL', message);
    this.name = 'DelayerProtocolError';
  }
}

interface Pending {
  resolve: (r: GatherResult) => void;
  reject: (e: unknown) => void;
}

/**
 * An all-gather among N ranks that live in one thread, as promises: round r
 * completes when every rank has called `gather` for it; then every caller's
 * promise resolves with all rows and one timestamp (the group clock at
 * completion). Rows are views reused between rounds (valid until the rank's
 * next gather), like the shared-memory collective. Deterministic: completion
 * order is rank order.
 */
export class InProcessGatherGroup {
  readonly worldSize: number;
  readonly rowWidth: number;
  readonly #clock: Clock;
  readonly #rows: Float64Array[];
  readonly #pending: (Pending | null)[];
  readonly #results: { rows: ReadonlyArray<Float64Array>; timestampMs: number; round: number }[];
  #arrived = 0;
  #round = 0;
  #closed = false;

  constructor(worldSize: number, rowWidth: number, clock: Clock) {
    if (!Number.isInteger(worldSize) || worldSize < 1)
      throw new RangeError(`worldSize must be >= 1, got ${worldSize}`);
    if (!Number.isInteger(rowWidth) || rowWidth < 1)
      throw new RangeError(`rowWidth must be >= 1, got ${rowWidth}`);
    this.worldSize = worldSize;
    this.rowWidth = rowWidth;
    this.#clock = clock;
    this.#rows = Array.from({ length: worldSize }, () => new Float64Array(rowWidth));
    this.#pending = new Array<Pending | null>(worldSize).fill(null);
    // One result per rank: each rank's view stays valid until its own next gather.
    this.#results = Array.from({ length: worldSize }, () => ({ rows: [], timestampMs: 0, round: 0 }));
  }

  /** Rounds completed. */
  get round(): number {
    return this.#round;
  }

  endpoint(rank: number): GroupGather {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.worldSize)
      throw new RangeError(`bad rank ${rank}`);
    return {
      rank,
      worldSize: this.worldSize,
      rowWidth: this.rowWidth,
      gather: (row) => this.#gather(rank, row),
    };
  }

  /** Fails every pending and later gather (a rank died): nobody hangs. */
  close(reason = 'InProcessGatherGroup closed'): void {
    if (this.#closed) return;
    this.#closed = true;
    for (let r = 0; r < this.worldSize; r++) {
      const p = this.#pending[r];
      this.#pending[r] = null;
      p?.reject(new CollectiveClosedError(reason));
    }
  }

  #gather(rank: number, row: ArrayLike<number>): Promise<GatherResult> {
    if (this.#closed)
      return Promise.reject(new CollectiveClosedError('InProcessGatherGroup: gather after close'));
    if (row.length !== this.rowWidth) {
      return Promise.reject(new RangeError(`row has length ${row.length}, expected ${this.rowWidth}`));
    }
    if (this.#pending[rank] !== null) {
      return Promise.reject(new ProtocolError(`rank ${rank} gathered twice in round ${this.#round}`));
    }
    const dst = this.#rows[rank]!;
    for (let i = 0; i < this.rowWidth; i++) dst[i] = row[i]!;
    return new Promise<GatherResult>((resolve, reject) => {
      this.#pending[rank] = { resolve, reject };
      if (++this.#arrived === this.worldSize) this.#complete();
    });
  }

  #complete(): void {
    const ts = this.#clock.nowMs();
    const round = this.#round++;
    this.#arrived = 0;
    for (let r = 0; r < this.worldSize; r++) {
      const res = this.#results[r]!;
      // copy rows into this rank's own view set so the next round cannot overwrite them early
      const rows = res.rows as Float64Array[];
      if (rows.length === 0)
        for (let k = 0; k < this.worldSize; k++) rows.push(new Float64Array(this.rowWidth));
      for (let k = 0; k < this.worldSize; k++) rows[k]!.set(this.#rows[k]!);
      res.timestampMs = ts;
      res.round = round;
      const p = this.#pending[r]!;
      this.#pending[r] = null;
      p.resolve(res);
    }
  }
}

/**
 * The synchronous `AllGather` the scheduler hands to its `PrefillDelayer`.
 * See the module comment: `prefetch(row)` runs the group round (awaiting an
 * in-process group or calling a blocking one); the delayer's next `gather`
 * must pass the same row and gets that round's result.
 */
export class PrefetchedAllGather implements AllGather {
  readonly rank: number;
  readonly worldSize: number;
  readonly rowWidth: number;
  readonly #inner: GroupGather;
  readonly #row: Float64Array;
  #result: GatherResult | null = null;
  #closed = false;

  constructor(inner: GroupGather) {
    this.#inner = inner;
    this.rank = inner.rank;
    this.worldSize = inner.worldSize;
    this.rowWidth = inner.rowWidth;
    this.#row = new Float64Array(inner.rowWidth);
  }

  /** Runs this pass's round with `row`; the delayer's next `gather` must send the same row. */
  async prefetch(row: ArrayLike<number>): Promise<void> {
    if (this.#closed) throw new CollectiveClosedError('PrefetchedAllGather: prefetch after close');
    if (this.#result !== null)
      throw new ProtocolError('PrefetchedAllGather: the previous round was never consumed');
    this.#row.set(row as ArrayLike<number> & Iterable<number>);
    this.#result = await this.#inner.gather(row);
  }

  /** Whether a prefetched round is waiting for the delayer. */
  get primed(): boolean {
    return this.#result !== null;
  }

  gather(row: ArrayLike<number>): GatherResult {
    if (this.#closed) throw new CollectiveClosedError('PrefetchedAllGather: gather after close');
    const result = this.#result;
    if (result === null) {
      throw new ProtocolError('PrefetchedAllGather: the delayer gathered without a prefetched round');
    }
    const mine = this.#row;
    if (row.length !== mine.length) {
      throw new ProtocolError(`PrefetchedAllGather: row of length ${row.length}, prefetched ${mine.length}`);
    }
    for (let i = 0; i < mine.length; i++) {
      if (row[i] !== mine[i]) {
        throw new ProtocolError(
          `PrefetchedAllGather: the delayer's row [${Array.from(row).join(',')}] differs from the prefetched row [${Array.from(mine).join(',')}]`,
        );
      }
    }
    this.#result = null;
    return result;
  }

  close(): void {
    this.#closed = true;
  }
}
