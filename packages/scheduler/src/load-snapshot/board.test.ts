import { ManualClock, startWorker, TsinferError } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { LoadSnapshotBoard, loadSnapshotBoardBytes } from './board.js';
import {
  createLoadHead,
  createLoadSnapshot,
  isSnapshotStale,
  type LoadSnapshot,
  SNAPSHOT_FIELD_COUNT,
  SNAPSHOT_FIELDS,
  snapshotAgeMs,
} from './snapshot.js';
import type { WriterJob } from './test-fixtures/seqlock-writer.worker.js';
import { stressValue } from './test-fixtures/stress-values.js';

/** A record whose field k holds a distinct value (k + 1) * 1.25 + base. */
function distinct(base: number): LoadSnapshot {
  const s = createLoadSnapshot() as unknown as Record<string, number>;
  SNAPSHOT_FIELDS.forEach((d, k) => {
    s[d.key] = (k + 1) * 1.25 + base;
  });
  return s as unknown as LoadSnapshot;
}

const HEADER_WORDS = 16;

describe('LoadSnapshot record', () => {
  it('SNAPSHOT_FIELDS lists every key of the record exactly once', () => {
    const keys = SNAPSHOT_FIELDS.map((d) => d.key).sort();
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys).toEqual(Object.keys(createLoadSnapshot()).sort());
    expect(SNAPSHOT_FIELDS.slice(0, 5).map((d) => d.key)).toEqual(Object.keys(createLoadHead()));
  });

  it('age and staleness are measured on the Clock timeline', () => {
    const s = createLoadSnapshot();
    s.timestamp = 1000;
    expect(snapshotAgeMs(s, 1500)).toBe(500);
    expect(isSnapshotStale(s, 1500, 500)).toBe(false);
    expect(isSnapshotStale(s, 1500.5, 500)).toBe(true);
    expect(isSnapshotStale(s, 1e15, Number.POSITIVE_INFINITY)).toBe(false);
  });
});

describe('LoadSnapshotBoard', () => {
  it('round-trips every field through a slot, stamping dpRank with the slot', () => {
    const board = LoadSnapshotBoard.create(3);
    const src = distinct(7);
    board.publish(2, src);
    const out = createLoadSnapshot();
    expect(board.read(2, out)).toBe(true);
    expect(out).toEqual({ ...src, dpRank: 2 });
    // other slots are untouched and empty
    const other = createLoadSnapshot();
    expect(board.read(0, other)).toBe(false);
    expect(board.read(1, other)).toBe(false);
    expect(other).toEqual(createLoadSnapshot());
  });

  it('readLoad copies the head fields only', () => {
    const board = LoadSnapshotBoard.create(1);
    const src = distinct(0);
    board.publish(0, src);
    const head = createLoadHead();
    expect(board.readLoad(0, head)).toBe(true);
    expect(head).toEqual({
      timestamp: src.timestamp,
      ackedDispatchSeq: src.ackedDispatchSeq,
      numRunningReqs: src.numRunningReqs,
      numWaitingReqs: src.numWaitingReqs,
      numTotalTokens: src.numTotalTokens,
    });
  });

  it('keeps slots apart: each slot holds its own rank and its latest write', () => {
    const board = LoadSnapshotBoard.create(4);
    for (let round = 0; round < 3; round++) {
      for (let r = 0; r < 4; r++) board.publish(r, distinct(round * 100 + r));
    }
    for (let r = 0; r < 4; r++) {
      const out = createLoadSnapshot();
      expect(board.read(r, out)).toBe(true);
      expect(out).toEqual({ ...distinct(200 + r), dpRank: r });
      expect(board.sequence(r)).toBe(6); // three writes, each +2
    }
  });

  it('attaches from the shared buffer (as a worker does) and validates the header', () => {
    const board = LoadSnapshotBoard.create(2);
    board.publish(1, distinct(3));
    const other = LoadSnapshotBoard.attach(board.buffer, 2);
    const out = createLoadSnapshot();
    expect(other.read(1, out)).toBe(true);
    expect(out.numTotalTokens).toBe(distinct(3).numTotalTokens);
    expect(board.buffer.byteLength).toBe(loadSnapshotBoardBytes(2));
    expect(() => LoadSnapshotBoard.attach(board.buffer, 3)).toThrow(/dpSize 2, expected 3/);
    expect(() => LoadSnapshotBoard.attach(new SharedArrayBuffer(256))).toThrow(TsinferError);
    expect(() => LoadSnapshotBoard.create(0)).toThrow(TsinferError);
  });

  it('rejects a rank outside the board with TSI_ERR_INVALID_DP_RANK', () => {
    const board = LoadSnapshotBoard.create(2);
    const s = createLoadSnapshot();
    for (const bad of [-1, 2, 0.5]) {
      expect(() => board.publish(bad, s)).toThrow(
        expect.objectContaining({ code: 'TSI_ERR_INVALID_DP_RANK' }),
      );
      expect(() => board.read(bad, s)).toThrow(expect.objectContaining({ code: 'TSI_ERR_INVALID_DP_RANK' }));
    }
  });

  it('a writer stopped mid-write (odd sequence) makes reads return false after maxSpins, never hang; the next publish recovers', () => {
    const board = LoadSnapshotBoard.create(1, { maxSpins: 1000 });
    board.publish(0, distinct(1));
    const words = new Int32Array(board.buffer);
    // Simulate a writer terminated between "make odd" and "make even".
    Atomics.store(words, HEADER_WORDS, Atomics.load(words, HEADER_WORDS) + 1);
    const out = createLoadSnapshot();
    expect(board.read(0, out)).toBe(false);
    expect(out).toEqual(createLoadSnapshot()); // untouched
    expect(board.giveUps).toBe(1);
    expect(board.retries).toBe(1000);
    expect(board.ageMs(0, new ManualClock(5))).toBe(Number.POSITIVE_INFINITY);
    board.publish(0, distinct(2));
    expect(board.sequence(0) % 2).toBe(0);
    expect(board.read(0, out)).toBe(true);
    expect(out.numTotalTokens).toBe(distinct(2).numTotalTokens);
  });

  it('the sequence wraps past 2^31 keeping parity and never returns to 0 (empty)', () => {
    const board = LoadSnapshotBoard.create(1);
    const words = new Int32Array(board.buffer);
    Atomics.store(words, HEADER_WORDS, 2 ** 31 - 2);
    board.publish(0, distinct(1));
    expect(board.sequence(0)).toBe(-(2 ** 31));
    Atomics.store(words, HEADER_WORDS, -2);
    board.publish(0, distinct(2));
    expect(board.sequence(0)).toBe(2);
    const out = createLoadSnapshot();
    expect(board.read(0, out)).toBe(true);
    expect(out.numRunningReqs).toBe(distinct(2).numRunningReqs);
  });

  it('reset empties a slot', () => {
    const board = LoadSnapshotBoard.create(1);
    board.publish(0, distinct(1));
    board.reset(0);
    expect(board.sequence(0)).toBe(0);
    expect(board.read(0, createLoadSnapshot())).toBe(false);
  });

  it('staleness check given a Clock: empty is stale; fresh until older than the limit', () => {
    const clock = new ManualClock(10_000);
    const board = LoadSnapshotBoard.create(1);
    expect(board.isStale(0, clock, 1000)).toBe(true);
    const s = createLoadSnapshot();
    s.timestamp = clock.nowMs();
    board.publish(0, s);
    clock.advance(1000);
    expect(board.ageMs(0, clock)).toBe(1000);
    expect(board.isStale(0, clock, 1000)).toBe(false);
    clock.advance(1);
    expect(board.isStale(0, clock, 1000)).toBe(true);
  });
});

describe('seqlock under a concurrent writer thread', () => {
  it('1,000,000 reads while a worker rewrites the slot as fast as it can: zero torn snapshots, and the reads see progress', async () => {
    const rank = 1;
    const board = LoadSnapshotBoard.create(2);
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const worker = startWorker(import.meta.url, './test-fixtures/seqlock-writer.worker', {
      workerData: { buffer: board.buffer, rank, stop } satisfies WriterJob,
    });
    const exited = new Promise<number>((resolve, reject) => {
      let writes = -1;
      worker.on('message', (m: 'ready' | { writes: number }) => {
        if (typeof m === 'object') writes = m.writes;
      });
      worker.once('error', reject);
      worker.once('exit', () => resolve(writes));
    });
    await new Promise<void>((resolve, reject) => {
      worker.once('message', (m) => (m === 'ready' ? resolve() : reject(new Error(String(m)))));
      worker.once('error', reject);
    });

    const reader = LoadSnapshotBoard.attach(board.buffer, 2);
    const out = createLoadSnapshot() as unknown as Record<string, number>;
    const head = createLoadHead();
    const keys = SNAPSHOT_FIELDS.map((d) => d.key as string);
    let torn = 0;
    let ok = 0;
    let failed = 0;
    let advances = 0;
    let backwards = 0;
    let last = 0;
    const READS = 1_000_000;
    for (let i = 0; i < READS; i++) {
      if (i % 4 === 3) {
        // head-only reads (what the DP controller does) share the protocol
        if (!reader.readLoad(rank, head)) {
          failed++;
          continue;
        }
        const n = head.timestamp;
        if (
          head.ackedDispatchSeq !== stressValue(n, 1) ||
          head.numRunningReqs !== stressValue(n, 2) ||
          head.numWaitingReqs !== stressValue(n, 3) ||
          head.numTotalTokens !== stressValue(n, 4)
        ) {
          torn++;
        }
        ok++;
        if (n > last) advances++;
        else if (n < last) backwards++;
        last = n;
        continue;
      }
      if (!reader.read(rank, out as unknown as LoadSnapshot)) {
        failed++;
        continue;
      }
      ok++;
      const n = out['timestamp']!;
      let bad = out['dpRank'] !== rank;
      for (let k = 1; k < SNAPSHOT_FIELD_COUNT; k++) {
        if (k !== 5 && out[keys[k]!] !== stressValue(n, k)) bad = true;
      }
      if (bad) torn++;
      if (n > last) advances++;
      else if (n < last) backwards++;
      last = n;
    }
    Atomics.store(stop, 0, 1);
    const writes = await exited;

    expect(torn).toBe(0);
    expect(backwards).toBe(0);
    expect(ok + failed).toBe(READS);
    // A read gives up (false, never a torn record) after 65,536 attempts that
    // each overlapped a write. This writer never pauses (~4 µs a write, most
    // of it inside the critical section), so a few reads in a thousand starve;
    // a rank publishes once per pass, milliseconds apart.
    expect(failed).toBeLessThan(READS / 20);
    expect(writes).toBeGreaterThan(1000);
    // The reads kept seeing new writes while they ran (not one frozen value).
    expect(advances).toBeGreaterThan(100);
    // And they did race with the writer: some reads had to retry.
    expect(reader.retries).toBeGreaterThan(0);
  }, 120_000);
});
