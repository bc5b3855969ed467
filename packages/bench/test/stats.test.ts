import { describe, expect, it } from 'vitest';
import { max, mean, median, percentile, std, summarize } from '../src/stats.js';

describe('NumPy-default statistics', () => {
  it('percentile interpolates linearly between order statistics like np.percentile', () => {
    // (n-1)·q = 4·0.4 = 1.6 → 20 + 0.6·(35-20) = 29 (NumPy's documented example).
    expect(percentile([15, 20, 35, 40, 50], 40)).toBeCloseTo(29, 12);
    // Unsorted input is sorted first; (4-1)·0.9 = 2.7 → 3 + 0.7·1.
    expect(percentile([4, 1, 3, 2], 90)).toBeCloseTo(3.7, 12);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99)).toBeCloseTo(9.91, 12);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95)).toBeCloseTo(9.55, 12);
    expect(percentile([7, 3], 0)).toBe(3);
    expect(percentile([7, 3], 100)).toBe(7);
    expect(percentile([42], 99)).toBe(42);
  });

  it('median averages the two middle values for an even count', () => {
    expect(median([5, 1, 4, 2])).toBe(3);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([1, 2, 3, 4])).toBe(percentile([1, 2, 3, 4], 50));
  });

  it('std is the population standard deviation (ddof 0)', () => {
    expect(std([1, 2, 3, 4])).toBeCloseTo(Math.sqrt(1.25), 12);
    expect(std([2, 4, 4, 4, 5, 5, 7, 9])).toBeCloseTo(2, 12);
  });

  it('an empty list behaves like [0] (bench_serving passes `xs or 0`)', () => {
    expect(summarize([])).toEqual({ mean: 0, median: 0, std: 0, p90: 0, p95: 0, p99: 0 });
    expect(max([])).toBe(0);
    expect(mean([])).toBe(0);
  });

  it('rejects percentiles outside [0, 100]', () => {
    expect(() => percentile([1], 101)).toThrow(RangeError);
  });
});
