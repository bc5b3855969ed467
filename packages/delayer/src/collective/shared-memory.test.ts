import {
  type Clock,
  CollectiveClosedError,
  CollectiveTimeoutError,
  startWorker,
  TsinferError,
} from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import type { RankJob, RankReport } from '../../test/fixtures/all-gather-rank.worker.js';
import { expectedValue, hashRows } from '../../test/fixtures/all-gather-rows.js';
import { abandonSharedAllGather, createSharedAllGatherInit, SharedMemoryAllGather } from './shared-memory.js';

/**
 * Runs one worker thread per job; once every rank has attached and said
 * 'ready', opens their shared start gate. Resolves with the reports in rank
 * order; rejects if a worker fails or exits without a report.
 */
async function runRanks(jobs: Omit<RankJob, 'start'>[]): Promise<RankReport[]> {
  const start = new Int32Array(new SharedArrayBuffer(4));
  const ready: Promise<void>[] = [];
  const done = jobs.map((job) => {
    let markReady!: () => void;
    ready.push(new Promise((res) => (markReady = res)));
    return new Promise<RankReport>((resolve, reject) => {
      const worker = startWorker(import.meta.url, '../../test/fixtures/all-gather-rank.worker', {
        workerData: { ...job, start } satisfies RankJob,
      });
      let report: RankReport | undefined;
      worker.on('message', (m: 'ready' | RankReport) => {
        if (m === 'ready') markReady();
        else report = m;
      });
      worker.once('error', reject);
      worker.once('exit', (code) => {
        if (report !== undefined) resolve(report);
        else reject(new Error(`rank ${job.rank} worker exited with code ${code} without a report`));
      });
    });
  });
  // If a worker dies before 'ready', its `done` rejects; do not wait on the gate forever.
  await Promise.race([Promise.all(ready), Promise.all(done)]);
  Atomics.store(start, 0, 1);
  Atomics.notify(start, 0);
  return Promise.all(done);
}

/** A clock that returns the given readings in turn (then repeats the last). */
function scriptedClock(readings: number[]): Clock {
  let i = 0;
  return { nowMs: () => readings[Math.min(i++, readings.length - 1)]! };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof TsinferError ? err.code : `${(err as Error).name}`;
  }
  return undefined;
}

describe('SharedMemoryAllGather across worker threads', () => {
  it('4 ranks x 10,000 rounds: every rank sees every exact row, and one identical non-decreasing timestamp per round', async () => {
    const worldSize = 4;
    const rowWidth = 5;
    const rounds = 10_000;
    const init = createSharedAllGatherInit(worldSize, rowWidth, { timeoutMs: 30_000 });
    const reports = await runRanks(Array.from({ length: worldSize }, (_, rank) => ({ init, rank, rounds })));

    // What every rank must have hashed in every round, computed independently here.
    const expectedRows = Array.from({ length: worldSize }, () => new Float64Array(rowWidth));
    const expectedHashes = new Float64Array(rounds);
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < worldSize; k++) {
        for (let c = 0; c < rowWidth; c++) expectedRows[k]![c] = expectedValue(k, r, c);
      }
      expectedHashes[r] = hashRows(expectedRows, rowWidth);
    }

    const ts0 = reports[0]!.timestamps;
    for (const rep of reports) {
      expect(rep.error).toBeNull();
      expect(rep.completedRounds).toBe(rounds);
      expect(rep.firstMismatch).toBeNull();
      expect(rep.mismatchedRounds).toBe(0);
      expect(rep.wrongRoundNumbers).toBe(0);
      expect(rep.hashes).toEqual(expectedHashes);
      expect(rep.timestamps.length).toBe(rounds);
      // The same timestamp sequence on every rank, element for element.
      expect(rep.timestamps).toEqual(ts0);
    }
    let decreases = 0;
    for (let r = 1; r < rounds; r++) if (ts0[r]! < ts0[r - 1]!) decreases++;
    expect(decreases).toBe(0);
    // Real clock readings on the shared epoch timeline, not placeholders.
    expect(Number.isFinite(ts0[0])).toBe(true);
    expect(Math.abs(ts0[rounds - 1]! - Date.now())).toBeLessThan(60_000);
  });

  it('a rank that stops after round 500: every survivor fails within about the timeout instead of hanging', async () => {
    const worldSize = 4;
    const timeoutMs = 1000;
    const init = createSharedAllGatherInit(worldSize, 3, { timeoutMs });
    const started = performance.now();
    const reports = await runRanks(
      Array.from({ length: worldSize }, (_, rank) => ({
        init,
        rank,
        rounds: 1000,
        ...(rank === 2 ? { stopAfter: 500 } : {}),
      })),
    );
    const elapsed = performance.now() - started;

    const stopped = reports[2]!;
    expect(stopped.error).toBeNull();
    expect(stopped.completedRounds).toBe(500);
    const survivors = reports.filter((r) => r.rank !== 2);
    const codes = survivors.map((r) => r.error?.code);
    for (const rep of survivors) {
      expect(rep.completedRounds).toBe(500);
      expect(rep.mismatchedRounds).toBe(0);
      expect(rep.error).not.toBeNull();
      const err = rep.error!;
      expect(err.round).toBe(500);
      expect(['TSI_ERR_COLLECTIVE_TIMEOUT', 'TSI_ERR_COLLECTIVE_CLOSED']).toContain(err.code);
      if (err.code === 'TSI_ERR_COLLECTIVE_TIMEOUT') {
        // Normally "3/4 ranks arrived; missing rank 2"; a survivor stalled
        // past the timeout would be listed as missing too.
        expect(err.message).toMatch(/round 500 .*[23]\/4 ranks arrived; missing ranks? (\d, )*2\b/);
        // Nobody waits (much) longer than the timeout; the rank that times
        // out first wakes the others.
        expect(err.waitedMs).toBeLessThan(timeoutMs + 2000);
      }
    }
    // The first rank to run out of time reports the timeout; the others
    // waiting in round 500 report it too (they only report CLOSED if they
    // arrived after the group was poisoned, which needs a stall longer than the timeout).
    expect(codes).toContain('TSI_ERR_COLLECTIVE_TIMEOUT');
    // A timeout on one rank is the timeout of all: at least one rank waited the whole timeout.
    expect(Math.max(...survivors.map((r) => r.error!.waitedMs))).toBeGreaterThanOrEqual(timeoutMs - 1);
    expect(elapsed).toBeLessThan(timeoutMs + 15_000);
  });

  it("one rank's timeout wakes the others at once: peers with a 60 s timeout fail after rank 0's 1 s", async () => {
    const init = createSharedAllGatherInit(4, 3, { timeoutMs: 1000 });
    const long = 60_000;
    const reports = await runRanks([
      { init, rank: 0, rounds: 1000 },
      { init, rank: 1, rounds: 1000, timeoutMs: long },
      { init, rank: 2, rounds: 1000, stopAfter: 200 },
      { init, rank: 3, rounds: 1000, timeoutMs: long },
    ]);
    const [r0, r1, , r3] = reports;
    expect(r0!.error?.code).toBe('TSI_ERR_COLLECTIVE_TIMEOUT');
    expect(r0!.error?.message).toMatch(/^all-gather round 200 timed out after 1000 ms on rank 0: /);
    expect(r0!.error!.waitedMs).toBeGreaterThanOrEqual(999);
    for (const rep of [r1!, r3!]) {
      expect(rep.completedRounds).toBe(200);
      expect(rep.error?.code).toBe('TSI_ERR_COLLECTIVE_TIMEOUT');
      expect(rep.error?.message).toContain('round 200 timed out on rank 0');
      // Woken by rank 0's poison, far sooner than its own 60 s.
      expect(rep.error!.waitedMs).toBeLessThan(long / 4);
    }
  });

  it('a rank that closes after round 300: peers fail with TSI_ERR_COLLECTIVE_CLOSED long before the timeout', async () => {
    const worldSize = 3;
    const timeoutMs = 30_000;
    const init = createSharedAllGatherInit(worldSize, 2, { timeoutMs });
    const reports = await runRanks(
      Array.from({ length: worldSize }, (_, rank) => ({
        init,
        rank,
        rounds: 1000,
        ...(rank === 0 ? { closeAfter: 300 } : {}),
      })),
    );
    expect(reports[0]!.error).toBeNull();
    expect(reports[0]!.completedRounds).toBe(300);
    for (const rep of reports.slice(1)) {
      expect(rep.completedRounds).toBe(300);
      expect(rep.error?.code).toBe('TSI_ERR_COLLECTIVE_CLOSED');
      expect(rep.error?.message).toContain('rank 0 closed the group');
      expect(rep.error!.waitedMs).toBeLessThan(timeoutMs / 3);
    }
  });
});

describe('SharedMemoryAllGather on one thread', () => {
  it('worldSize 1: returns its own row, counts rounds, reuses views and the result object', () => {
    const ag = new SharedMemoryAllGather(createSharedAllGatherInit(1, 3, { timeoutMs: 1000 }), 0);
    expect([ag.rank, ag.worldSize, ag.rowWidth]).toEqual([0, 1, 3]);
    const a = ag.gather([1, 2, 3]);
    expect(a.round).toBe(0);
    expect(a.rows.length).toBe(1);
    expect(Array.from(a.rows[0]!)).toEqual([1, 2, 3]);
    const view0 = a.rows[0];
    const b = ag.gather(new Float64Array([4, 5, 6]));
    expect(b).toBe(a); // one result object, reused
    expect(b.round).toBe(1);
    expect(Array.from(b.rows[0]!)).toEqual([4, 5, 6]);
    expect(b.rows[0]).not.toBe(view0); // other parity
    const c = ag.gather([7, 8, 9]);
    expect(c.round).toBe(2);
    expect(c.rows[0]).toBe(view0); // same parity, same view: nothing allocated per round
    expect(Array.from(view0!)).toEqual([7, 8, 9]);
    expect(ag.round).toBe(3);
  });

  it('stamps each round with the clock, clamped so timestamps never go backwards', () => {
    const clock = scriptedClock([100, 250, 200, 180, 300]);
    const ag = new SharedMemoryAllGather(createSharedAllGatherInit(1, 1, { timeoutMs: 1000 }), 0, clock);
    const seen = [0, 1, 2, 3, 4].map((i) => ag.gather([i]).timestampMs);
    expect(seen).toEqual([100, 250, 250, 250, 300]);
  });

  it('rejects rows of the wrong length or with non-finite values, without disturbing the group', () => {
    const ag = new SharedMemoryAllGather(createSharedAllGatherInit(1, 2, { timeoutMs: 1000 }), 0);
    expect(() => ag.gather([1])).toThrow(/row has 1 values, expected 2/);
    expect(() => ag.gather([1, 2, 3])).toThrow(RangeError);
    expect(() => ag.gather([1, Number.NaN])).toThrow(/row\[1\] is NaN/);
    expect(() => ag.gather([Number.POSITIVE_INFINITY, 1])).toThrow(RangeError);
    expect(ag.round).toBe(0);
    const res = ag.gather([5, 6]);
    expect(res.round).toBe(0);
    expect(Array.from(res.rows[0]!)).toEqual([5, 6]);
  });

  it('validates the init, the rank and double attachment', () => {
    expect(() => createSharedAllGatherInit(0, 5, { timeoutMs: 1 })).toThrow(RangeError);
    expect(() => createSharedAllGatherInit(2, 0, { timeoutMs: 1 })).toThrow(RangeError);
    expect(() => createSharedAllGatherInit(2, 1.5, { timeoutMs: 1 })).toThrow(RangeError);
    expect(() => createSharedAllGatherInit(2, 5, { timeoutMs: Number.POSITIVE_INFINITY })).toThrow(
      /timeoutMs/,
    );
    expect(() => createSharedAllGatherInit(2, 5, { timeoutMs: 0 })).toThrow(/timeoutMs/);
    const init = createSharedAllGatherInit(2, 5, { timeoutMs: 100 });
    expect(() => new SharedMemoryAllGather(init, 2)).toThrow(RangeError);
    expect(() => new SharedMemoryAllGather(init, -1)).toThrow(RangeError);
    expect(() => new SharedMemoryAllGather({ ...init, rowWidth: 6 }, 0)).toThrow(/bytes, expected/);
    new SharedMemoryAllGather(init, 1);
    expect(() => new SharedMemoryAllGather(init, 1)).toThrow(/already attached/);
    // The init survives a structured clone (as postMessage does) and still shares memory.
    const cloned = structuredClone(init);
    expect(cloned.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(() => new SharedMemoryAllGather(cloned, 1)).toThrow(/already attached/);
  });

  it('close(): later gathers on the rank and on its peers throw TSI_ERR_COLLECTIVE_CLOSED; close is idempotent', () => {
    const init = createSharedAllGatherInit(2, 1, { timeoutMs: 10_000 });
    const r0 = new SharedMemoryAllGather(init, 0);
    const r1 = new SharedMemoryAllGather(init, 1);
    r1.close();
    r1.close();
    expect(codeOf(() => r1.gather([1]))).toBe('TSI_ERR_COLLECTIVE_CLOSED');
    const started = performance.now();
    expect(() => r0.gather([1])).toThrow(CollectiveClosedError);
    expect(() => r0.gather([1])).toThrow(/rank 1 closed the group/);
    expect(performance.now() - started).toBeLessThan(1000); // no wait for the 10 s timeout
    r0.close();
    expect(codeOf(() => r0.gather([1]))).toBe('TSI_ERR_COLLECTIVE_CLOSED');
  });

  it('abandonSharedAllGather: a supervisor closes the group for a dead rank; survivors fail at once', () => {
    const init = createSharedAllGatherInit(2, 1, { timeoutMs: 30_000 });
    const r0 = new SharedMemoryAllGather(init, 0);
    expect(() => abandonSharedAllGather(init, 2)).toThrow(RangeError);
    abandonSharedAllGather(init, 1); // rank 1's thread died without closing
    abandonSharedAllGather(init, 1);
    const started = performance.now();
    expect(() => r0.gather([1])).toThrow(/rank 1 closed the group/);
    expect(codeOf(() => r0.gather([1]))).toBe('TSI_ERR_COLLECTIVE_CLOSED');
    expect(performance.now() - started).toBeLessThan(1000); // not the 30 s timeout
  });

  it('times out on the main thread (Atomics.wait is allowed there), names round, rank and arrivals, then poisons the group', () => {
    const timeoutMs = 50;
    const init = createSharedAllGatherInit(3, 1, { timeoutMs });
    const r0 = new SharedMemoryAllGather(init, 0);
    const r1 = new SharedMemoryAllGather(init, 1);
    const r2 = new SharedMemoryAllGather(init, 2);
    // Only rank 0 arrives in round 0 (ranks 1 and 2 share this blocked thread).
    const started = performance.now();
    let caught: unknown;
    try {
      r0.gather([1]);
    } catch (err) {
      caught = err;
    }
    const waited = performance.now() - started;
    expect(caught).toBeInstanceOf(CollectiveTimeoutError);
    const err = caught as CollectiveTimeoutError;
    expect(err.code).toBe('TSI_ERR_COLLECTIVE_TIMEOUT');
    expect(err.message).toMatch(
      /round 0 timed out after 50 ms on rank 0: 1\/3 ranks arrived; missing ranks 1, 2/,
    );
    expect(waited).toBeGreaterThanOrEqual(timeoutMs - 1);
    expect(waited).toBeLessThan(timeoutMs + 2000);
    // The group is poisoned: every later call fails at once.
    expect(codeOf(() => r0.gather([1]))).toBe('TSI_ERR_COLLECTIVE_CLOSED');
    expect(() => r1.gather([1])).toThrow(/round 0: an earlier round timed out on rank 0/);
    expect(codeOf(() => r2.gather([1]))).toBe('TSI_ERR_COLLECTIVE_CLOSED');
  });
});
