/**
 * The all-gather of a single rank (worldSize 1): a server without DP
 * attention, or with one DP rank. It copies the row into a buffer it owns and
 * returns the same result object every round, stamped from its Clock; no
 * allocation per round. Like the shared-memory all-gather, a malformed row
 * (wrong length, non-finite value) is a RangeError.
 */
import { type Clock, CollectiveClosedError } from '@tsinfer/core';
import { DELAYER_ROW_WIDTH } from '../row.js';
import type { AllGather, GatherResult } from './all-gather.js';

interface MutableGatherResult {
  rows: ReadonlyArray<Float64Array>;
  timestampMs: number;
  round: number;
}

export interface LocalAllGatherOptions {
  clock: Clock;
  /** Row width; defaults to the delayer's 5 columns. */
  rowWidth?: number;
}

export class LocalAllGather implements AllGather {
  readonly rank = 0;
  readonly worldSize = 1;
  readonly rowWidth: number;
  readonly #clock: Clock;
  readonly #row: Float64Array;
  readonly #result: MutableGatherResult;
  #nextRound = 0;
  #closed = false;

  constructor(options: LocalAllGatherOptions) {
    const width = options.rowWidth ?? DELAYER_ROW_WIDTH;
    if (!Number.isInteger(width) || width < 1) {
      throw new RangeError(`LocalAllGather: rowWidth must be an integer >= 1, got ${String(width)}`);
    }
    this.rowWidth = width;
    this.#clock = options.clock;
    this.#row = new Float64Array(width);
    this.#result = { rows: [this.#row], timestampMs: 0, round: 0 };
  }

  gather(row: ArrayLike<number>): GatherResult {
    if (this.#closed) throw new CollectiveClosedError('LocalAllGather: gather after close()');
    const width = this.rowWidth;
    if (row.length !== width) {
      throw new RangeError(`LocalAllGather: row has length ${row.length}, expected ${width}`);
    }
    const buf = this.#row;
    for (let i = 0; i < width; i++) {
      const v = row[i]!;
      if (!Number.isFinite(v)) {
        throw new RangeError(`LocalAllGather: row[${i}] is ${String(v)}; rows hold finite numbers`);
      }
      buf[i] = v;
    }
    const result = this.#result;
    result.timestampMs = this.#clock.nowMs();
    result.round = this.#nextRound++;
    return result;
  }

  close(): void {
    this.#closed = true;
  }
}
