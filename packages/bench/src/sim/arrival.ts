/**
 * Inter-arrival times of `tsinfer sim`. With burstiness 1 (the default) this
 * is the bench's own Poisson process ({@link nextArrivalDelayMs}, the same
 * draws `tsinfer bench` makes). Other values follow bench_serving's
 * `--burstiness`: gamma-distributed gaps with shape = burstiness and
 * scale = 1 / (rate × burstiness), so the mean rate is unchanged and values
 * below 1 give burstier traffic (clusters of requests, then lulls).
 */
import { InvalidConfigError, type Rng } from '@tsinfer/core';
import { nextArrivalDelayMs } from '../random.js';

/** A standard normal draw (Box–Muller, one of the pair). */
function normal(rng: Rng): number {
  const u1 = 1 - rng.next(); // (0, 1]
  const u2 = rng.next();
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** Gamma(shape, 1) by Marsaglia–Tsang; shape < 1 by the boost Gamma(shape + 1) · U^(1/shape). */
export function gammaUnit(rng: Rng, shape: number): number {
  if (!(shape > 0) || !Number.isFinite(shape)) throw new RangeError(`gamma: shape must be > 0, got ${shape}`);
  if (shape < 1) {
    const u = 1 - rng.next();
    return gammaUnit(rng, shape + 1) * u ** (1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normal(rng);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - rng.next();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
}

/** Delay before the next request (ms). 0 when the rate is infinite. */
export function nextSimArrivalDelayMs(rng: Rng, requestRate: number, burstiness: number): number {
  if (!(burstiness > 0) || !Number.isFinite(burstiness))
    throw new InvalidConfigError('--burstiness', `must be a finite number > 0, got ${burstiness}`);
  if (requestRate === Number.POSITIVE_INFINITY) return 0;
  if (burstiness === 1) return nextArrivalDelayMs(rng, requestRate);
  const theta = 1 / (requestRate * burstiness);
  return gammaUnit(rng, burstiness) * theta * 1000;
}
