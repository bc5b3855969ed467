import { InvalidConfigError } from '@tsinfer/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MaxPrefillBsTracker } from './max-prefill-bs.js';

describe('MaxPrefillBsTracker, baseline (window 0): lifetime high-water mark', () => {
  it('starts at 0 and only rises', () => {
    const t = new MaxPrefillBsTracker();
    expect(t.value).toBe(0);
    for (const [admitted, want] of [
      [3, 3],
      [1, 3],
      [0, 3],
      [40, 40],
      [2, 40],
    ] as const) {
      t.record(admitted);
      expect(t.value).toBe(want);
    }
    // One burst raises the bar for good.
    for (let i = 0; i < 1000; i++) t.record(1);
    expect(t.value).toBe(40);
  });
});

describe('MaxPrefillBsTracker, window N (opt-in fix: the bar decays)', () => {
  it('is the max of the last N non-empty admissions, so a burst ages out', () => {
    const t = new MaxPrefillBsTracker(16);
    t.record(40);
    for (let i = 0; i < 15; i++) {
      t.record(2);
      expect(t.value).toBe(40);
    }
    t.record(2); // the 40 leaves the window
    expect(t.value).toBe(2);
  });

  it('ignores empty (and delayed) passes: a delay episode cannot collapse the window', () => {
    const t = new MaxPrefillBsTracker(4);
    t.record(20);
    for (let i = 0; i < 100; i++) t.record(0);
    expect(t.value).toBe(20);
    t.record(Number.NaN);
    t.record(-3);
    expect(t.value).toBe(20);
  });

  it('matches a reference max-over-last-N of the non-empty admissions (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.nat({ max: 50 }), { maxLength: 200 }),
        (n, seq) => {
          const t = new MaxPrefillBsTracker(n);
          const kept: number[] = [];
          for (const a of seq) {
            t.record(a);
            if (a > 0) kept.push(a);
            const window = kept.slice(-n);
            expect(t.value).toBe(window.length === 0 ? 0 : Math.max(...window));
          }
        },
      ),
    );
  });

  it('rejects a bad window with the flag name', () => {
    expect(() => new MaxPrefillBsTracker(-1)).toThrow(InvalidConfigError);
    expect(() => new MaxPrefillBsTracker(1.5)).toThrow(/--prefill-delayer-max-prefill-bs-window/);
  });
});
