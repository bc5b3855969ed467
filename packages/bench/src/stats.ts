/**
 * Summary statistics the way bench_serving computes them with NumPy
 * defaults: population standard deviation (ddof 0), percentiles with linear
 * interpolation (NumPy's `method="linear"`, including its `_lerp` rounding
 * rule), median = the mean of the two middle values for an even count.
 *
 * bench_serving calls e.g. `np.mean(ttfts or 0)`, so an empty list behaves
 * as `[0]`: every statistic of an empty list is 0 here.
 */

function orZero(xs: readonly number[]): readonly number[] {
  return xs.length === 0 ? [0] : xs;
}

function sorted(xs: readonly number[]): number[] {
  return Array.from(xs).sort((x, y) => x - y);
}

export function mean(xs: readonly number[]): number {
  const a = orZero(xs);
  let s = 0;
  for (const v of a) s += v;
  return s / a.length;
}

/** Population standard deviation (NumPy `np.std`, ddof 0). */
export function std(xs: readonly number[]): number {
  const a = orZero(xs);
  const m = mean(a);
  let s = 0;
  for (const v of a) s += (v - m) * (v - m);
  return Math.sqrt(s / a.length);
}

export function max(xs: readonly number[]): number {
  const a = orZero(xs);
  let m = Number.NEGATIVE_INFINITY;
  for (const v of a) if (v > m) m = v;
  return m;
}

export function median(xs: readonly number[]): number {
  const a = sorted(orZero(xs));
  const n = a.length;
  const h = n >> 1;
  if (n % 2 === 1) return a[h]!;
  return (a[h - 1]! + a[h]!) / 2;
}

/** NumPy's `_lerp`: `a + (b - a) * t`, computed from the `b` end when `t >= 0.5`. */
function lerp(a: number, b: number, t: number): number {
  const d = b - a;
  return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}

/** `np.percentile(xs, p)` with the default linear method; `p` in [0, 100]. */
export function percentile(xs: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be in [0, 100], got ${p}`);
  const a = sorted(orZero(xs));
  const n = a.length;
  const q = p / 100;
  const virtual = (n - 1) * q;
  const lo = Math.floor(virtual);
  const hi = Math.min(lo + 1, n - 1);
  const gamma = virtual - lo;
  return lerp(a[lo]!, a[hi]!, gamma);
}

export interface Summary {
  mean: number;
  median: number;
  std: number;
  p90: number;
  p95: number;
  p99: number;
}

export function summarize(xs: readonly number[]): Summary {
  return {
    mean: mean(xs),
    median: median(xs),
    std: std(xs),
    p90: percentile(xs, 90),
    p95: percentile(xs, 95),
    p99: percentile(xs, 99),
  };
}
