/**
 * All-gather for ranks that are threads of one process (worker threads, or
 * the main thread plus workers), over one SharedArrayBuffer.
 *
 * Protocol, per round r (every rank calls `gather` once per round):
 *  1. write the own row into the row buffer of parity r % 2;
 *  2. `Atomics.add` the arrival counter;
 *  3. the last arriver stamps the round's timestamp (its clock, clamped so it
 *     never goes backwards across rounds), resets the counter and publishes
 *     the round by a compare-and-swap of the state word followed by
 *     `Atomics.notify`; every other rank `Atomics.wait`s on the state word
 *     for the time left of the timeout.
 *
 * Two row buffers suffice: a rank cannot start round r + 2 (and overwrite
 * buffer r % 2) before every rank has entered round r + 1, i.e. before every
 * rank is done with the views it got from round r.
 *
 * The state word holds, in one int32, the generation (completed rounds,
 * modulo 2^13), a poison reason and the rank that poisoned the group. Round
 * completion and poisoning are both compare-and-swaps from the same expected
 * value, so each round has exactly one outcome that every rank agrees on:
 * either it completed everywhere, or it failed everywhere.
 *
 * Failure: a rank whose wait runs past `timeoutMs` poisons the group (reason
 * "timeout") and throws `CollectiveTimeoutError`; every rank waiting in that
 * round wakes at once and throws `CollectiveTimeoutError` too. `close()`
 * poisons the group with reason "closed"; ranks waiting then throw
 * `CollectiveClosedError`. Any call that starts after the group is poisoned
 * throws `CollectiveClosedError`. No call ever blocks longer than
 * `timeoutMs`.
 *
 * See docs/collectives.md.
 */
import { type Clock, CollectiveClosedError, CollectiveTimeoutError, systemClock } from '@tsinfer/core';
import type { AllGather, GatherResult } from './all-gather.js';

/** Everything a rank needs to join the group; plain data, can be sent with `postMessage`. */
export interface SharedAllGatherInit {
  readonly kind: 'tsinfer.shared-all-gather';
  readonly worldSize: number;
  readonly rowWidth: number;
  readonly timeoutMs: number;
  /** Control words (Int32Array) followed by the data (Float64Array). See `layout`. */
  readonly buffer: SharedArrayBuffer;
}

/** Largest group: the poisoning rank is stored in 16 bits of the state word. */
export const MAX_SHARED_WORLD_SIZE = 0xffff;

// Control words (Int32Array indices). STATE and ARRIVED are touched by every
// rank every round; the per-rank words live on the next cache lines.
const STATE = 0;
const ARRIVED = 1;
/** Per-rank words start here (16 int32 = one 64-byte line after STATE/ARRIVED). */
const PER_RANK = 16;
/** `(round + 1) | 0` once rank r has arrived in `round`; for the names of missing ranks. */
const ARRIVAL_OFFSET = 0;
/** 1 once an instance is attached for the rank. */
const ATTACHED_OFFSET = 1;
const PER_RANK_WORDS = 2;

// State word: bits 0-1 reason, bits 2-17 poisoning rank, bits 18-30 generation.
const REASON_MASK = 0b11;
const REASON_NONE = 0;
const REASON_TIMEOUT = 1;
const REASON_CLOSED = 2;
const RANK_SHIFT = 2;
const RANK_MASK = 0xffff;
const GEN_SHIFT = 18;
const GEN_MASK = 0x1fff;

function encodeState(generation: number, reason: number, rank: number): number {
  return ((generation & GEN_MASK) << GEN_SHIFT) | ((rank & RANK_MASK) << RANK_SHIFT) | reason | 0;
}

interface Layout {
  controlWords: number;
  /** Float64 index of the two timestamp slots (parity 0, parity 1). */
  timestampIndex: number;
  /** Float64 index of the row buffer of parity p: `rowsIndex + p * worldSize * rowWidth`. */
  rowsIndex: number;
  byteLength: number;
}

function layout(worldSize: number, rowWidth: number): Layout {
  // Round the control block up to whole 64-byte lines so the data starts on its own line.
  const controlWords = Math.ceil((PER_RANK + worldSize * PER_RANK_WORDS) / 16) * 16;
  const dataByteOffset = controlWords * 4;
  const timestampIndex = dataByteOffset / 8;
  // Timestamps get a line of their own; rows follow.
  const rowsIndex = timestampIndex + 8;
  const byteLength = (rowsIndex + 2 * worldSize * rowWidth) * 8;
  return { controlWords, timestampIndex, rowsIndex, byteLength };
}

function checkPositiveInt(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(`shared all-gather: ${name} must be an integer in [1, ${max}], got ${value}`);
  }
}

/**
 * Allocates the shared memory of a group of `worldSize` ranks exchanging rows
 * of `rowWidth` numbers. Send the returned object to every rank (it survives
 * `postMessage` / `workerData`; the SharedArrayBuffer is shared, not copied)
 * and construct one `SharedMemoryAllGather` per rank from it.
 *
 * @param options.timeoutMs longest time a rank waits for the others in one
 *   round (finite, > 0); past it the round fails on every rank.
 */
export function createSharedAllGatherInit(
  worldSize: number,
  rowWidth: number,
  options: { timeoutMs: number },
): SharedAllGatherInit {
  checkPositiveInt('worldSize', worldSize, MAX_SHARED_WORLD_SIZE);
  checkPositiveInt('rowWidth', rowWidth, 1 << 20);
  const { timeoutMs } = options;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new RangeError(`shared all-gather: timeoutMs must be a finite number > 0, got ${timeoutMs}`);
  }
  const l = layout(worldSize, rowWidth);
  const buffer = new SharedArrayBuffer(l.byteLength);
  const data = new Float64Array(buffer);
  // No round has a timestamp yet: the first round's clamp must not bind.
  data[l.timestampIndex] = Number.NEGATIVE_INFINITY;
  data[l.timestampIndex + 1] = Number.NEGATIVE_INFINITY;
  return { kind: 'tsinfer.shared-all-gather', worldSize, rowWidth, timeoutMs, buffer };
}

/** The result object, mutable inside this module only. */
interface MutableGatherResult {
  rows: ReadonlyArray<Float64Array>;
  timestampMs: number;
  round: number;
}

/**
 * One rank's handle on a shared-memory all-gather group.
 *
 * `gather` blocks the calling thread with `Atomics.wait`. Node allows
 * `Atomics.wait` on the main thread as well as in workers (browsers do not),
 * so a rank may be the main thread; while it waits that thread's event loop
 * does not run, which is the point: the collective is synchronous so that a
 * scheduler pass can gather, decide and go on without yielding.
 *
 * The timeout is measured with `performance.now()`, not with the injected
 * clock (which may be a virtual clock that does not move while waiting); the
 * injected clock only stamps rounds.
 *
 * Nothing is allocated per round: row views for both parities and the result
 * object are made once and reused. `gather` returns the same result object
 * every time; its `rows` views are valid until this rank's next `gather`.
 */
export class SharedMemoryAllGather implements AllGather {
  readonly rank: number;
  readonly worldSize: number;
  readonly rowWidth: number;
  readonly timeoutMs: number;

  readonly #control: Int32Array;
  readonly #data: Float64Array;
  readonly #clock: Clock;
  readonly #timestampIndex: number;
  /** Float64 index of this rank's row in each parity buffer. */
  readonly #ownRowIndex: [number, number];
  readonly #arrivalWord: number;
  readonly #views: [ReadonlyArray<Float64Array>, ReadonlyArray<Float64Array>];
  readonly #result: MutableGatherResult;
  #round = 0;
  #closed = false;

  constructor(init: SharedAllGatherInit, rank: number, clock: Clock = systemClock) {
    if (init?.kind !== 'tsinfer.shared-all-gather' || !(init.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError('SharedMemoryAllGather: init must come from createSharedAllGatherInit');
    }
    const { worldSize, rowWidth, timeoutMs, buffer } = init;
    checkPositiveInt('worldSize', worldSize, MAX_SHARED_WORLD_SIZE);
    checkPositiveInt('rowWidth', rowWidth, 1 << 20);
    const l = layout(worldSize, rowWidth);
    if (buffer.byteLength !== l.byteLength) {
      throw new TypeError(
        `SharedMemoryAllGather: buffer is ${buffer.byteLength} bytes, expected ${l.byteLength} for worldSize ${worldSize} x rowWidth ${rowWidth}`,
      );
    }
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw new RangeError(
        `SharedMemoryAllGather: rank must be an integer in [0, ${worldSize - 1}], got ${rank}`,
      );
    }
    this.rank = rank;
    this.worldSize = worldSize;
    this.rowWidth = rowWidth;
    this.timeoutMs = timeoutMs;
    this.#clock = clock;
    this.#control = new Int32Array(buffer, 0, l.controlWords);
    this.#data = new Float64Array(buffer);
    this.#timestampIndex = l.timestampIndex;
    this.#arrivalWord = PER_RANK + rank * PER_RANK_WORDS + ARRIVAL_OFFSET;
    const attachedWord = PER_RANK + rank * PER_RANK_WORDS + ATTACHED_OFFSET;
    if (Atomics.compareExchange(this.#control, attachedWord, 0, 1) !== 0) {
      throw new RangeError(`SharedMemoryAllGather: rank ${rank} is already attached to this group`);
    }
    const parityStride = worldSize * rowWidth;
    this.#ownRowIndex = [l.rowsIndex + rank * rowWidth, l.rowsIndex + parityStride + rank * rowWidth];
    const viewsFor = (parity: number): ReadonlyArray<Float64Array> =>
      Object.freeze(
        Array.from(
          { length: worldSize },
          (_, r) =>
            new Float64Array(buffer, (l.rowsIndex + parity * parityStride + r * rowWidth) * 8, rowWidth),
        ),
      );
    this.#views = [viewsFor(0), viewsFor(1)];
    this.#result = { rows: this.#views[0], timestampMs: 0, round: 0 };
  }

  /** Rounds this rank has completed (the number the next `gather` will return as `round`). */
  get round(): number {
    return this.#round;
  }

  /**
   * Contributes `row` for the current round and blocks until every rank has
   * contributed, then returns all rows and the round's shared timestamp.
   *
   * @throws RangeError if `row` is not `rowWidth` finite numbers (nothing is
   *   published; the group is unaffected and the call may be retried).
   * @throws CollectiveTimeoutError if the round does not complete within
   *   `timeoutMs` (on this rank or on any rank waiting in the same round).
   * @throws CollectiveClosedError after `close()`, or once any rank poisoned
   *   the group (a failed round, or a peer that closed).
   */
  gather(row: ArrayLike<number>): GatherResult {
    if (this.#closed) {
      throw new CollectiveClosedError(`all-gather rank ${this.rank}: gather after close()`);
    }
    const control = this.#control;
    const round = this.#round;
    const expected = encodeState(round, REASON_NONE, 0);
    const entryState = Atomics.load(control, STATE);
    if (entryState !== expected) this.#throwPoisoned(entryState, round, false);

    const width = this.rowWidth;
    if (row.length !== width) {
      throw new RangeError(`all-gather rank ${this.rank}: row has ${row.length} values, expected ${width}`);
    }
    const parity = round & 1;
    const data = this.#data;
    const base = parity === 0 ? this.#ownRowIndex[0] : this.#ownRowIndex[1];
    for (let i = 0; i < width; i++) {
      const v = row[i]!;
      // Writing into the own slot before validation is done is harmless: no
      // peer reads it before this rank's arrival below.
      if (!Number.isFinite(v)) {
        throw new RangeError(`all-gather rank ${this.rank}: row[${i}] is ${v}, expected a finite number`);
      }
      data[base + i] = v;
    }

    Atomics.store(control, this.#arrivalWord, (round + 1) | 0);
    const arrivedBefore = Atomics.add(control, ARRIVED, 1);
    const tsIndex = this.#timestampIndex + parity;
    if (arrivedBefore === this.worldSize - 1) {
      // Last arriver: stamp, reset, publish.
      let ts = this.#clock.nowMs();
      const prev = data[this.#timestampIndex + (parity ^ 1)]!;
      if (!(ts >= prev)) ts = prev;
      data[tsIndex] = ts;
      Atomics.store(control, ARRIVED, 0);
      const seen = Atomics.compareExchange(control, STATE, expected, encodeState(round + 1, REASON_NONE, 0));
      if (seen !== expected) this.#throwPoisoned(seen, round, true);
      Atomics.notify(control, STATE);
    } else {
      this.#wait(expected, round);
    }

    this.#round = round + 1;
    const result = this.#result;
    result.rows = parity === 0 ? this.#views[0] : this.#views[1];
    result.timestampMs = data[tsIndex]!;
    result.round = round;
    return result;
  }

  /** Waits until round `round` completes; throws if it fails or the timeout passes. */
  #wait(expected: number, round: number): void {
    const control = this.#control;
    const deadline = performance.now() + this.timeoutMs;
    for (;;) {
      const state = Atomics.load(control, STATE);
      if (state !== expected) {
        // Completed: the generation moved on (a peer may have closed the
        // group right after, which does not undo this round).
        if (((state >>> GEN_SHIFT) & GEN_MASK) !== (round & GEN_MASK)) return;
        this.#throwPoisoned(state, round, true);
      }
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        const poisoned = encodeState(round, REASON_TIMEOUT, this.rank);
        const seen = Atomics.compareExchange(control, STATE, expected, poisoned);
        if (seen === expected) {
          Atomics.notify(control, STATE);
          throw new CollectiveTimeoutError(
            `all-gather round ${round} timed out after ${this.timeoutMs} ms on rank ${this.rank}: ${this.#arrivalSummary(round)}`,
          );
        }
        // The round completed or another rank poisoned it meanwhile: re-read.
        continue;
      }
      Atomics.wait(control, STATE, expected, remaining);
    }
  }

  #throwPoisoned(state: number, round: number, waiting: boolean): never {
    const reason = state & REASON_MASK;
    const by = (state >>> RANK_SHIFT) & RANK_MASK;
    if (reason === REASON_TIMEOUT && waiting) {
      throw new CollectiveTimeoutError(
        `all-gather round ${round} timed out on rank ${by} (seen by rank ${this.rank}, timeout ${this.timeoutMs} ms): ${this.#arrivalSummary(round)}`,
      );
    }
    const what =
      reason === REASON_CLOSED ? `rank ${by} closed the group` : `an earlier round timed out on rank ${by}`;
    throw new CollectiveClosedError(`all-gather rank ${this.rank}, round ${round}: ${what}`);
  }

  /** "k/n ranks arrived; missing: ..." for round `round`. Allocates; error paths only. */
  #arrivalSummary(round: number): string {
    const marker = (round + 1) | 0;
    const missing: number[] = [];
    for (let r = 0; r < this.worldSize; r++) {
      if (Atomics.load(this.#control, PER_RANK + r * PER_RANK_WORDS + ARRIVAL_OFFSET) !== marker)
        missing.push(r);
    }
    const arrived = this.worldSize - missing.length;
    return `${arrived}/${this.worldSize} ranks arrived; missing rank${missing.length === 1 ? '' : 's'} ${missing.join(', ')}`;
  }

  /**
   * Leaves the group: later `gather` calls on this rank throw
   * `CollectiveClosedError`, and so do the peers' (waiting peers wake at
   * once), because no round can complete without this rank. Idempotent. A
   * round this rank already completed stays completed for every rank.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    poisonClosed(this.#control, this.rank);
  }
}

/** Poisons the group as closed by `rank` unless it is poisoned already, and wakes every waiter. */
function poisonClosed(control: Int32Array, rank: number): void {
  for (;;) {
    const state = Atomics.load(control, STATE);
    if ((state & REASON_MASK) !== REASON_NONE) return;
    const generation = (state >>> GEN_SHIFT) & GEN_MASK;
    const poisoned = encodeState(generation, REASON_CLOSED, rank);
    if (Atomics.compareExchange(control, STATE, state, poisoned) === state) {
      Atomics.notify(control, STATE);
      return;
    }
  }
}

/**
 * Closes the group on behalf of `rank` from outside it: what a supervisor
 * (the thread that started the ranks) calls when `rank`'s thread died, so the
 * surviving ranks fail at once with `CollectiveClosedError` instead of
 * waiting out the timeout. Idempotent; a round that already completed stays
 * completed.
 */
export function abandonSharedAllGather(init: SharedAllGatherInit, rank: number): void {
  checkPositiveInt('rank + 1', rank + 1, init.worldSize);
  poisonClosed(new Int32Array(init.buffer, 0, layout(init.worldSize, init.rowWidth).controlWords), rank);
}
