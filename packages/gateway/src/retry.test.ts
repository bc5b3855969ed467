import { createRng } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { DEFAULTS } from './config.js';
import { backoffMs, isRetryableStatus } from './retry.js';

describe('retry', () => {
  it('retries 408, 429 and 5xx gateway statuses only', () => {
    for (const s of [408, 429, 500, 502, 503, 504]) expect(isRetryableStatus(s)).toBe(true);
    for (const s of [200, 201, 400, 401, 404, 422, 501]) expect(isRetryableStatus(s)).toBe(false);
  });

  it('backs off exponentially up to the cap (no jitter)', () => {
    const c = { ...DEFAULTS.retry, jitter: 0 };
    const rng = createRng(1);
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8].map((k) => backoffMs(c, k, rng))).toEqual([
      50, 100, 200, 400, 800, 1600, 3200, 5000, 5000,
    ]);
  });

  it('jitter stays within ±jitter of the base and varies', () => {
    const c = { ...DEFAULTS.retry, jitter: 0.1 };
    const rng = createRng(7);
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) {
      const d = backoffMs(c, 3, rng);
      expect(d).toBeGreaterThanOrEqual(360);
      expect(d).toBeLessThanOrEqual(440);
      seen.add(d);
    }
    expect(seen.size).toBeGreaterThan(20);
  });
});
