import { ManualClock } from '@tsinfer/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULTS } from './config.js';
import { selectDpRank, Worker } from './worker.js';

const ranks = (m: Record<number, number>): Map<number, number> =>
  new Map(Object.entries(m).map(([k, v]) => [Number(k), v]));

describe('DP-rank minimum tokens', () => {
  it('picks the rank with the least polled + in-flight tokens; ties go to the lowest rank', () => {
    const clock = new ManualClock();
    const w = new Worker('http://w', DEFAULTS.circuitBreaker, clock);
    expect(selectDpRank(w, 0, 5000)).toBeNull(); // unknown: inject nothing
    w.setPolled({ ranks: ranks({ 0: 10, 1: 10, 2: 10 }), total: 30 }, 0);
    expect(selectDpRank(w, 0, 5000)).toBe(0);
    const t0 = w.begin(0, 5);
    expect(selectDpRank(w, 0, 5000)).toBe(1);
    const t1 = w.begin(1, 5);
    expect(selectDpRank(w, 0, 5000)).toBe(2);
    w.setPolled({ ranks: ranks({ 0: 0, 1: 10, 2: 10 }), total: 20 }, 0);
    expect(selectDpRank(w, 0, 5000)).toBe(0); // 0 + 5 < 10 + 5
    t0.end();
    t0.end(); // idempotent
    expect(w.rankInflight(0)).toBe(0);
    t1.end();
    expect(w.inflightTokens).toBe(0);
    expect(w.inflightRequests).toBe(0);
    expect(w.processed).toBe(2);
  });

  it('no injection when the load is stale or the worker reports no ranks', () => {
    const clock = new ManualClock();
    const w = new Worker('http://w', DEFAULTS.circuitBreaker, clock);
    w.setPolled({ ranks: ranks({ 0: 1, 1: 0 }), total: 1 }, 0);
    expect(selectDpRank(w, 5000, 5000)).toBe(1);
    expect(selectDpRank(w, 5001, 5000)).toBeNull();
    w.setPolled({ ranks: null, total: 7 }, 6000);
    expect(selectDpRank(w, 6000, 5000)).toBeNull();
  });

  it('in-flight estimates between polls are exact: every begin is taken off by its end', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 500 }), fc.boolean()), { maxLength: 60 }),
        (ops) => {
          const w = new Worker('http://w', DEFAULTS.circuitBreaker, new ManualClock());
          w.setPolled({ ranks: ranks({ 0: 0, 1: 0, 2: 0 }), total: 0 }, 0);
          const open: Array<ReturnType<Worker['begin']>> = [];
          for (const [tokens, endOne] of ops) {
            open.push(w.begin(selectDpRank(w, 0, 1e9), tokens));
            if (endOne && open.length > 0) open.shift()!.end();
          }
          for (const t of open) t.end();
          expect(w.inflightTokens).toBe(0);
          expect(w.rankInflightEntries()).toEqual([]);
        },
      ),
    );
  });

  it('under a burst, per-rank in-flight tokens stay within one request estimate of each other', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 8 }),
        fc.array(fc.integer({ min: 1, max: 1000 }), { minLength: 1, maxLength: 200 }),
        (dp, estimates) => {
          const w = new Worker('http://w', DEFAULTS.circuitBreaker, new ManualClock());
          w.setPolled({ ranks: new Map(Array.from({ length: dp }, (_, r) => [r, 0])), total: 0 }, 0);
          for (const e of estimates) w.begin(selectDpRank(w, 0, 1e9), e);
          const per = Array.from({ length: dp }, (_, r) => w.rankInflight(r));
          expect(Math.max(...per) - Math.min(...per)).toBeLessThanOrEqual(Math.max(...estimates));
        },
      ),
    );
  });
});
