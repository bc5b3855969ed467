import {
  COST_TERMS,
  type CostModel,
  type CostTerm,
  costOfFeatures,
  type StepFeatures,
  ZERO_COST,
} from '../sim/cost.js';
import { nnls } from './nnls.js';

/** One timed pass (or the median of several identical ones). */
export interface CostSample {
  readonly features: StepFeatures;
  readonly measuredMs: number;
  /** What the pass was, for reports. */
  readonly label?: string;
}

export interface FitOptions {
  /** Coefficients to fit; the rest are 0. Default: every term the samples make non-zero. */
  readonly terms?: readonly CostTerm[];
  /**
   * 'relative' (default) weights each sample by 1 / measured time, so a 1 ms
   * step's 10% error counts as much as a 300 ms step's; 'absolute' is plain
   * least squares in ms.
   */
  readonly weighting?: 'relative' | 'absolute';
}

/** How well the fitted model explains the samples (all in unweighted ms). */
export interface FitQuality {
  /** Coefficient of determination of predicted vs measured. */
  readonly r2: number;
  readonly rmsResidualMs: number;
  readonly maxAbsResidualMs: number;
  /** Mean of |predicted - measured| / measured. */
  readonly meanAbsRelativeError: number;
  readonly maxAbsRelativeError: number;
  readonly samples: number;
  /** Per sample: label, measured, predicted, residual (predicted - measured). */
  readonly residuals: readonly {
    label: string;
    measuredMs: number;
    predictedMs: number;
    residualMs: number;
  }[];
}

export interface FitResult {
  readonly cost: CostModel;
  readonly quality: FitQuality;
  readonly terms: readonly CostTerm[];
}

/** Fits the cost model to timed passes by non-negative least squares. */
export function fitCostModel(samples: readonly CostSample[], options: FitOptions = {}): FitResult {
  if (samples.length === 0) throw new RangeError('fitCostModel: no samples');
  const terms = options.terms ?? COST_TERMS.filter((t) => samples.some((s) => s.features[t] !== 0));
  const weighting = options.weighting ?? 'relative';
  const floor = Math.max(1e-6, median(samples.map((s) => s.measuredMs)) * 1e-3);
  const a: number[][] = [];
  const b: number[] = [];
  for (const s of samples) {
    const w = weighting === 'relative' ? 1 / Math.max(s.measuredMs, floor) : 1;
    a.push(terms.map((t) => s.features[t] * w));
    b.push(s.measuredMs * w);
  }
  const { x } = nnls(a, b);
  const cost: Record<string, number> = { ...ZERO_COST };
  terms.forEach((t, k) => {
    cost[t] = x[k]!;
  });
  const model = cost as unknown as CostModel;
  return { cost: model, quality: fitQuality(model, samples), terms };
}

/** Quality of `cost` on `samples`. */
export function fitQuality(cost: CostModel, samples: readonly CostSample[]): FitQuality {
  const mean = samples.reduce((s, x) => s + x.measuredMs, 0) / samples.length;
  let ssRes = 0;
  let ssTot = 0;
  let maxAbs = 0;
  let relSum = 0;
  let relMax = 0;
  const residuals = samples.map((s, i) => {
    const predictedMs = costOfFeatures(cost, s.features);
    const residualMs = predictedMs - s.measuredMs;
    ssRes += residualMs ** 2;
    ssTot += (s.measuredMs - mean) ** 2;
    maxAbs = Math.max(maxAbs, Math.abs(residualMs));
    const rel = s.measuredMs > 0 ? Math.abs(residualMs) / s.measuredMs : 0;
    relSum += rel;
    relMax = Math.max(relMax, rel);
    return { label: s.label ?? `sample ${i}`, measuredMs: s.measuredMs, predictedMs, residualMs };
  });
  return {
    r2: ssTot > 0 ? 1 - ssRes / ssTot : ssRes === 0 ? 1 : 0,
    rmsResidualMs: Math.sqrt(ssRes / samples.length),
    maxAbsResidualMs: maxAbs,
    meanAbsRelativeError: relSum / samples.length,
    maxAbsRelativeError: relMax,
    samples: samples.length,
    residuals,
  };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((p, q) => p - q);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
