/**
 * The delayer's metrics in plain in-package structures: an outcome
 * counter over (input_estimation, output_allow, output_reason,
 * actual_execution) and two histograms. Updating is allocation-free (typed
 * arrays indexed by label position); `snapshot()` and
 * `formatPrometheusText()` are for export and may allocate.
 */
import type { DelayerReason, InputEstimation } from './decide.js';

export const METRIC_OUTCOMES_TOTAL = 'tsinfer_prefill_delayer_outcomes_total';
export const METRIC_WAIT_FORWARD_PASSES = 'tsinfer_prefill_delayer_wait_forward_passes';
export const METRIC_WAIT_SECONDS = 'tsinfer_prefill_delayer_wait_seconds';

export const DEFAULT_FORWARD_PASSES_BUCKETS: readonly number[] = Object.freeze([5, 20, 50, 100, 200]);
export const DEFAULT_WAIT_SECONDS_BUCKETS: readonly number[] = Object.freeze([
  1, 2, 5, 10, 20, 50, 100, 200, 500,
]);

function sortedUnique(values: Iterable<number>): number[] {
  return [...new Set(values)].sort((a, b) => a - b);
}

/**
 * Buckets of the forward-passes histogram:
 * `sorted({b in (custom or defaults) : b < P} ∪ {0, P − 1})`.
 * An empty custom list means the defaults (as in SGLang).
 */
export function forwardPassesBuckets(maxDelayPasses: number, custom?: readonly number[] | null): number[] {
  const source = custom && custom.length > 0 ? custom : DEFAULT_FORWARD_PASSES_BUCKETS;
  const kept: number[] = [0, maxDelayPasses - 1];
  for (const b of source) if (b < maxDelayPasses) kept.push(b);
  return sortedUnique(kept);
}

/** Buckets of the wait-seconds histogram: `sorted(set(custom or defaults) ∪ {0})`. */
export function waitSecondsBuckets(custom?: readonly number[] | null): number[] {
  const source = custom && custom.length > 0 ? custom : DEFAULT_WAIT_SECONDS_BUCKETS;
  return sortedUnique([0, ...source]);
}

export interface HistogramSnapshot {
  name: string;
  help: string;
  /** Cumulative counts per upper bound (`le`), ending with `le: Infinity`. */
  buckets: Array<{ le: number; count: number }>;
  sum: number;
  count: number;
}

/** A Prometheus-style histogram: an observation v lands in the first bucket with v <= le. */
export class BucketHistogram {
  readonly name: string;
  readonly help: string;
  readonly bounds: readonly number[];
  readonly #counts: Float64Array; // per bucket, not cumulative; last slot is +Inf
  #sum = 0;
  #count = 0;

  constructor(name: string, help: string, bounds: readonly number[]) {
    const sorted = sortedUnique(bounds);
    if (sorted.some((b) => Number.isNaN(b))) throw new RangeError(`${name}: bucket bounds must be numbers`);
    this.name = name;
    this.help = help;
    this.bounds = Object.freeze(sorted);
    this.#counts = new Float64Array(sorted.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && !(value <= bounds[i]!)) i++;
    this.#counts[i]!++;
    this.#sum += value;
    this.#count++;
  }

  snapshot(): HistogramSnapshot {
    const buckets: Array<{ le: number; count: number }> = [];
    let cumulative = 0;
    for (let i = 0; i <= this.bounds.length; i++) {
      cumulative += this.#counts[i]!;
      buckets.push({
        le: i < this.bounds.length ? this.bounds[i]! : Number.POSITIVE_INFINITY,
        count: cumulative,
      });
    }
    return { name: this.name, help: this.help, buckets, sum: this.#sum, count: this.#count };
  }
}

const ESTIMATIONS: readonly InputEstimation[] = ['all', 'none', 'mixed'];
const REASONS: readonly DelayerReason[] = [
  'no_wait',
  'wait_success',
  '',
  'token_watermark',
  'delay',
  'wait_timeout',
];

function estimationIndex(e: InputEstimation): number {
  return e === 'all' ? 0 : e === 'none' ? 1 : 2;
}

function reasonIndex(r: DelayerReason): number {
  switch (r) {
    case 'no_wait':
      return 0;
    case 'wait_success':
      return 1;
    case '':
      return 2;
    case 'token_watermark':
      return 3;
    case 'delay':
      return 4;
    case 'wait_timeout':
      return 5;
  }
}

const OUTCOME_SLOTS = ESTIMATIONS.length * 2 * REASONS.length * 2;

function outcomeIndex(e: InputEstimation, allow: boolean, r: DelayerReason, actual: boolean): number {
  return (
    ((estimationIndex(e) * 2 + (allow ? 1 : 0)) * REASONS.length + reasonIndex(r)) * 2 + (actual ? 1 : 0)
  );
}

export interface OutcomeLabels {
  input_estimation: InputEstimation;
  output_allow: 'true' | 'false';
  output_reason: DelayerReason;
  actual_execution: 'true' | 'false';
}

export interface PrefillDelayerMetricsSnapshot {
  outcomes: { name: string; help: string; samples: Array<{ labels: OutcomeLabels; value: number }> };
  waitForwardPasses: HistogramSnapshot;
  waitSeconds: HistogramSnapshot;
}

export interface PrefillDelayerMetricsOptions {
  maxDelayPasses: number;
  forwardPassesBuckets?: readonly number[] | null;
  waitSecondsBuckets?: readonly number[] | null;
}

/** The delayer's three metrics for one rank. Record once per pass with {@link recordPass}. */
export class PrefillDelayerMetrics {
  readonly waitForwardPasses: BucketHistogram;
  readonly waitSeconds: BucketHistogram;
  readonly #outcomes = new Float64Array(OUTCOME_SLOTS);

  constructor(options: PrefillDelayerMetricsOptions) {
    this.waitForwardPasses = new BucketHistogram(
      METRIC_WAIT_FORWARD_PASSES,
      'Forward passes a released prefill waited (closed delay episode length).',
      forwardPassesBuckets(options.maxDelayPasses, options.forwardPassesBuckets),
    );
    this.waitSeconds = new BucketHistogram(
      METRIC_WAIT_SECONDS,
      'Seconds a released prefill waited (from the first delay of the episode to the release).',
      waitSecondsBuckets(options.waitSecondsBuckets),
    );
  }

  /**
   * Records one pass: the outcome counter always; the histograms only when the
   * pass was allowed and a prefill batch was actually produced.
   */
  recordPass(
    inputEstimation: InputEstimation,
    allow: boolean,
    reason: DelayerReason,
    actualExecution: boolean,
    waitForwardPasses: number,
    waitSeconds: number,
  ): void {
    this.#outcomes[outcomeIndex(inputEstimation, allow, reason, actualExecution)]!++;
    if (allow && actualExecution) {
      this.waitForwardPasses.observe(waitForwardPasses);
      this.waitSeconds.observe(waitSeconds);
    }
  }

  /** Count of one outcome label set. */
  outcomeCount(
    inputEstimation: InputEstimation,
    allow: boolean,
    reason: DelayerReason,
    actual: boolean,
  ): number {
    return this.#outcomes[outcomeIndex(inputEstimation, allow, reason, actual)]!;
  }

  /** Every label set seen so far with its count, and both histograms (cumulative buckets, sum, count). */
  snapshot(): PrefillDelayerMetricsSnapshot {
    const samples: Array<{ labels: OutcomeLabels; value: number }> = [];
    for (const e of ESTIMATIONS) {
      for (const allow of [false, true]) {
        for (const r of REASONS) {
          for (const actual of [false, true]) {
            const value = this.#outcomes[outcomeIndex(e, allow, r, actual)]!;
            if (value === 0) continue;
            samples.push({
              labels: {
                input_estimation: e,
                output_allow: allow ? 'true' : 'false',
                output_reason: r,
                actual_execution: actual ? 'true' : 'false',
              },
              value,
            });
          }
        }
      }
    }
    return {
      outcomes: {
        name: METRIC_OUTCOMES_TOTAL,
        help: 'Prefill delayer negotiations by status, verdict, reason and whether a prefill batch ran.',
        samples,
      },
      waitForwardPasses: this.waitForwardPasses.snapshot(),
      waitSeconds: this.waitSeconds.snapshot(),
    };
  }
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(labels: Readonly<Record<string, string>>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function formatLe(le: number): string {
  return le === Number.POSITIVE_INFINITY ? '+Inf' : String(le);
}

/**
 * Prometheus text exposition (format 0.0.4) of a snapshot. `baseLabels`
 * (e.g. `{ dp_rank: '0' }`) are added to every sample.
 */
export function formatPrometheusText(
  snapshot: PrefillDelayerMetricsSnapshot,
  baseLabels: Readonly<Record<string, string>> = {},
): string {
  const lines: string[] = [];
  const { outcomes } = snapshot;
  lines.push(`# HELP ${outcomes.name} ${outcomes.help}`, `# TYPE ${outcomes.name} counter`);
  for (const s of outcomes.samples) {
    lines.push(`${outcomes.name}${labelText({ ...baseLabels, ...s.labels })} ${s.value}`);
  }
  for (const h of [snapshot.waitForwardPasses, snapshot.waitSeconds]) {
    lines.push(`# HELP ${h.name} ${h.help}`, `# TYPE ${h.name} histogram`);
    for (const b of h.buckets) {
      lines.push(`${h.name}_bucket${labelText({ ...baseLabels, le: formatLe(b.le) })} ${b.count}`);
    }
    lines.push(
      `${h.name}_sum${labelText(baseLabels)} ${h.sum}`,
      `${h.name}_count${labelText(baseLabels)} ${h.count}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
