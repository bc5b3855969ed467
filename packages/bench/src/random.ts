/**
 * The random draws bench_serving makes with NumPy / Python `random`, on the
 * project's seeded {@link Rng} (xoshiro128**). Distributions match; the bit
 * streams do not (see docs/bench.md, "Differences from SGLang").
 */
import type { Rng } from '@tsinfer/core';

/** `np.random.randint(lo, hiExclusive)`: uniform integer in [lo, hiExclusive). */
export function randint(rng: Rng, lo: number, hiExclusive: number): number {
  if (!(hiExclusive > lo)) throw new RangeError(`randint: empty range [${lo}, ${hiExclusive})`);
  return rng.int(lo, hiExclusive - 1);
}

/** `np.random.exponential(scale)`: exponential with mean `scale`, by inversion. */
export function exponential(rng: Rng, scale: number): number {
  // next() is in [0, 1), so 1 - next() is in (0, 1] and the log is finite.
  return -Math.log(1 - rng.next()) * scale;
}

/** `random.shuffle(xs)` in place (Fisher–Yates). */
export function shuffle<T>(rng: Rng, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    const t = xs[i]!;
    xs[i] = xs[j]!;
    xs[j] = t;
  }
  return xs;
}

/** Delay before the next request (ms): Exp(mean 1/rate) seconds; 0 when the rate is infinite. */
export function nextArrivalDelayMs(rng: Rng, requestRate: number): number {
  if (requestRate === Number.POSITIVE_INFINITY) return 0;
  return exponential(rng, 1 / requestRate) * 1000;
}
