/**
 * LoadSnapshotBoard: one SharedArrayBuffer with one seqlock-guarded slot per
 * DP rank. Each rank's worker thread is the only writer of its slot; any
 * thread (the DP controller, the HTTP handler of /v1/loads) reads any slot.
 * This is the Node equivalent of SGLang's /dev/shm snapshot file (spec §2.4)
 * without its whole-file flock (flaw F-10): a reader never blocks a writer,
 * and never returns a torn record.
 *
 * Layout (Int32 words):
 *   header, 16 words (64 bytes): MAGIC, VERSION, dpSize, slot stride in
 *   words, fields per slot;
 *   slot r at word 16 + r × stride: word 0 = sequence, words 2.. = the
 *   snapshot's float64 fields (SNAPSHOT_FIELDS order), each as two Int32
 *   words. The stride is a multiple of 16 words, so slots never share a
 *   64-byte cache line (no false sharing between ranks).
 *
 * Seqlock. Sequence 0 = never published. The writer stores an odd sequence,
 * stores the data words, then stores the next even sequence. A reader loads
 * the sequence, retries while it is odd, loads the data words into private
 * scratch, and accepts them only if the sequence is unchanged. Every access to
 * the shared words (sequence and data) is an `Atomics` operation, so the
 * protocol is correct under the ECMAScript memory model itself (sequentially
 * consistent atomics are totally ordered), not only on x86: this is why the
 * float64 fields travel as Int32 pairs (`Atomics` has no Float64Array). The
 * reader spins at most `maxSpins` times; a writer that stopped in the middle
 * of a write (a terminated worker) therefore makes reads of that slot return
 * false, never hang.
 */
import { TsinferError } from '@tsinfer/core';
import {
  createLoadHead,
  decodeHead,
  decodeSnapshot,
  encodeSnapshot,
  isSnapshotStale,
  LOAD_HEAD_FIELD_COUNT,
  type LoadHead,
  type LoadSnapshot,
  SNAPSHOT_FIELD_COUNT,
} from './snapshot.js';

/** 'TSLS' little-endian. */
export const BOARD_MAGIC = 0x534c5354;
export const BOARD_VERSION = 1;
const HEADER_WORDS = 16;
const DATA_OFFSET = 2;
const DATA_WORDS = SNAPSHOT_FIELD_COUNT * 2;
const HEAD_WORDS = LOAD_HEAD_FIELD_COUNT * 2;
const SLOT_STRIDE = Math.ceil((DATA_OFFSET + DATA_WORDS) / 16) * 16;

/** Default number of read attempts before `read` gives up on a slot whose writer holds it. */
export const DEFAULT_MAX_SPINS = 1 << 16;

/** Bytes a board for `dpSize` ranks needs. */
export function loadSnapshotBoardBytes(dpSize: number): number {
  return (HEADER_WORDS + dpSize * SLOT_STRIDE) * 4;
}

function boardError(message: string): TsinferError {
  return new TsinferError('TSI_ERR_INVALID_CONFIG', `load snapshot board: ${message}`);
}

export interface LoadSnapshotBoardOptions {
  /** Read attempts before a read of a slot held by its writer returns false (default 65,536). */
  maxSpins?: number;
}

export class LoadSnapshotBoard {
  /** The shared memory; pass it to each rank's worker (workerData) and attach there. */
  readonly buffer: SharedArrayBuffer;
  readonly dpSize: number;
  /** Reads on this instance that saw a write in progress or a changed sequence and tried again. */
  retries = 0;
  /** Reads on this instance that returned false because the writer held the slot for `maxSpins` attempts. */
  giveUps = 0;

  readonly #words: Int32Array;
  readonly #maxSpins: number;
  // Private (not shared) scratch: the float64 view and the Int32 view of one buffer.
  readonly #f64 = new Float64Array(SNAPSHOT_FIELD_COUNT);
  readonly #i32 = new Int32Array(this.#f64.buffer);

  private constructor(buffer: SharedArrayBuffer, dpSize: number, options: LoadSnapshotBoardOptions) {
    this.buffer = buffer;
    this.dpSize = dpSize;
    this.#words = new Int32Array(buffer);
    const spins = options.maxSpins ?? DEFAULT_MAX_SPINS;
    if (!Number.isInteger(spins) || spins < 1)
      throw boardError(`maxSpins must be an integer >= 1, got ${spins}`);
    this.#maxSpins = spins;
  }

  /** A new board with `dpSize` empty slots. */
  static create(dpSize: number, options: LoadSnapshotBoardOptions = {}): LoadSnapshotBoard {
    if (!Number.isInteger(dpSize) || dpSize < 1)
      throw boardError(`dpSize must be an integer >= 1, got ${dpSize}`);
    const buffer = new SharedArrayBuffer(loadSnapshotBoardBytes(dpSize));
    const w = new Int32Array(buffer);
    w[0] = BOARD_MAGIC;
    w[1] = BOARD_VERSION;
    w[2] = dpSize;
    w[3] = SLOT_STRIDE;
    w[4] = SNAPSHOT_FIELD_COUNT;
    return new LoadSnapshotBoard(buffer, dpSize, options);
  }

  /**
   * Attaches to a board created elsewhere (another thread). Checks magic,
   * version, layout and, when given, the expected dpSize (SGLang's reader
   * cached a mapping it never re-validated, flaw F-7; here a mismatch is an
   * error at attach time).
   */
  static attach(
    buffer: SharedArrayBuffer,
    expectedDpSize?: number,
    options: LoadSnapshotBoardOptions = {},
  ): LoadSnapshotBoard {
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength < HEADER_WORDS * 4) {
      throw boardError('not a load snapshot board (buffer too small or not shared)');
    }
    const w = new Int32Array(buffer);
    if (w[0] !== BOARD_MAGIC || w[1] !== BOARD_VERSION) {
      throw boardError(`bad magic/version ${w[0]}/${w[1]}, expected ${BOARD_MAGIC}/${BOARD_VERSION}`);
    }
    const dpSize = w[2]!;
    if (
      w[3] !== SLOT_STRIDE ||
      w[4] !== SNAPSHOT_FIELD_COUNT ||
      buffer.byteLength < loadSnapshotBoardBytes(dpSize)
    ) {
      throw boardError(`layout mismatch (stride ${w[3]}, fields ${w[4]}, ${buffer.byteLength} bytes)`);
    }
    if (expectedDpSize !== undefined && dpSize !== expectedDpSize) {
      throw boardError(`board has dpSize ${dpSize}, expected ${expectedDpSize}`);
    }
    return new LoadSnapshotBoard(buffer, dpSize, options);
  }

  #seqIndex(rank: number): number {
    if (!(rank >= 0 && rank < this.dpSize && Number.isInteger(rank))) {
      throw new TsinferError('TSI_ERR_INVALID_DP_RANK', `dp rank ${rank} out of range [0, ${this.dpSize})`);
    }
    return HEADER_WORDS + rank * SLOT_STRIDE;
  }

  /**
   * Writer side: stores `snapshot` into slot `rank` (its `dpRank` is stamped
   * with `rank`). Only one thread may publish to a given slot. No allocation.
   */
  publish(rank: number, snapshot: LoadSnapshot): void {
    const seqIdx = this.#seqIndex(rank);
    const w = this.#words;
    const f64 = this.#f64;
    const i32 = this.#i32;
    encodeSnapshot(snapshot, f64);
    f64[5] = rank;
    const s = Atomics.load(w, seqIdx);
    // Odd while writing. An odd sequence found here was left by a writer that
    // stopped mid-write (a terminated worker); keep it odd and finish the job.
    const begin = s & 1 ? s : (s + 1) | 0;
    Atomics.store(w, seqIdx, begin);
    const base = seqIdx + DATA_OFFSET;
    for (let k = 0; k < DATA_WORDS; k++) Atomics.store(w, base + k, i32[k]!);
    let end = (begin + 1) | 0;
    if (end === 0) end = 2; // 0 means "never published"
    Atomics.store(w, seqIdx, end);
  }

  /** Copies `nWords` data words of slot `seqIdx` into scratch under the seqlock; false if empty or held. */
  #readWords(seqIdx: number, nWords: number): boolean {
    const w = this.#words;
    const i32 = this.#i32;
    const base = seqIdx + DATA_OFFSET;
    for (let spin = 0; spin < this.#maxSpins; spin++) {
      const s1 = Atomics.load(w, seqIdx);
      if (s1 === 0) return false;
      if ((s1 & 1) === 0) {
        for (let k = 0; k < nWords; k++) i32[k] = Atomics.load(w, base + k);
        if (Atomics.load(w, seqIdx) === s1) return true;
      }
      this.retries++;
    }
    this.giveUps++;
    return false;
  }

  /**
   * Reader side: copies slot `rank` into `into`. Returns false, leaving
   * `into` untouched, when the slot was never published or its writer held
   * it for `maxSpins` attempts. Never blocks the writer; no allocation.
   */
  read(rank: number, into: LoadSnapshot): boolean {
    if (!this.#readWords(this.#seqIndex(rank), DATA_WORDS)) return false;
    decodeSnapshot(this.#f64, into);
    return true;
  }

  /** Like `read`, but copies only the `LoadHead` fields (what the DP controller needs). */
  readLoad(rank: number, into: LoadHead): boolean {
    if (!this.#readWords(this.#seqIndex(rank), HEAD_WORDS)) return false;
    decodeHead(this.#f64, into);
    return true;
  }

  /** The slot's sequence number (0 = never published; odd = a write in progress). */
  sequence(rank: number): number {
    return Atomics.load(this.#words, this.#seqIndex(rank));
  }

  readonly #head = createLoadHead();

  /**
   * Age in ms of slot `rank`'s snapshot at `clock`'s now, or `Infinity` when
   * the slot is empty (or unreadable).
   */
  ageMs(rank: number, clock: { nowMs(): number }): number {
    if (!this.readLoad(rank, this.#head)) return Number.POSITIVE_INFINITY;
    return clock.nowMs() - this.#head.timestamp;
  }

  /** True when slot `rank` is empty or its snapshot is older than `maxAgeMs` at `clock`'s now. */
  isStale(rank: number, clock: { nowMs(): number }, maxAgeMs: number): boolean {
    if (!this.readLoad(rank, this.#head)) return true;
    return isSnapshotStale(this.#head, clock.nowMs(), maxAgeMs);
  }

  /**
   * Empties slot `rank` (sequence 0, data zeroed). Only when no thread is
   * publishing to it: after its worker exited, before a replacement starts.
   */
  reset(rank: number): void {
    const seqIdx = this.#seqIndex(rank);
    const w = this.#words;
    Atomics.store(w, seqIdx, 1);
    for (let k = 0; k < DATA_WORDS; k++) Atomics.store(w, seqIdx + DATA_OFFSET + k, 0);
    Atomics.store(w, seqIdx, 0);
  }
}
