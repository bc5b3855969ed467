import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  BucketHistogram,
  formatPrometheusText,
  forwardPassesBuckets,
  METRIC_OUTCOMES_TOTAL,
  METRIC_WAIT_FORWARD_PASSES,
  METRIC_WAIT_SECONDS,
  PrefillDelayerMetrics,
  waitSecondsBuckets,
} from './metrics.js';

interface BucketCase {
  max_delay_passes?: number;
  forward_passes_custom?: number[] | null;
  expected_forward_passes_buckets?: number[];
  wait_seconds_custom?: number[] | null;
  expected_wait_seconds_buckets?: number[];
}

const fixture = JSON.parse(
  readFileSync(new URL('../test/fixtures/delayer-cases.json', import.meta.url), 'utf8'),
) as { metrics_bucket_cases: { cases: BucketCase[] } };

describe('bucket rules: delayer-cases.json metrics_bucket_cases', () => {
  const cases = fixture.metrics_bucket_cases.cases;
  it('has forward-pass and wait-second vectors', () => {
    expect(cases.filter((c) => c.expected_forward_passes_buckets).length).toBe(4);
    expect(cases.filter((c) => c.expected_wait_seconds_buckets).length).toBe(2);
  });
  for (const c of cases) {
    if (c.expected_forward_passes_buckets) {
      it(`forward passes P=${c.max_delay_passes} custom=${JSON.stringify(c.forward_passes_custom)}`, () => {
        expect(forwardPassesBuckets(c.max_delay_passes!, c.forward_passes_custom)).toEqual(
          c.expected_forward_passes_buckets,
        );
      });
    }
    if (c.expected_wait_seconds_buckets) {
      it(`wait seconds custom=${JSON.stringify(c.wait_seconds_custom)}`, () => {
        expect(waitSecondsBuckets(c.wait_seconds_custom)).toEqual(c.expected_wait_seconds_buckets);
      });
    }
  }

  it('drops custom values >= P, dedups and sorts; P=1 collapses to [0]', () => {
    expect(forwardPassesBuckets(10, [50, 3, 3, 9, 10, 0])).toEqual([0, 3, 9]);
    expect(forwardPassesBuckets(1)).toEqual([0]);
    expect(waitSecondsBuckets([3, 0.5, 3])).toEqual([0, 0.5, 3]);
    // An empty custom list means the defaults (Python `custom or defaults`).
    expect(waitSecondsBuckets([])).toEqual(waitSecondsBuckets(null));
    expect(forwardPassesBuckets(30, [])).toEqual([0, 5, 20, 29]);
  });
});

describe('BucketHistogram', () => {
  it('puts v in the first bucket with v <= le and reports cumulative counts, sum and count', () => {
    const h = new BucketHistogram('h', 'help', [5, 0, 20]);
    expect(h.bounds).toEqual([0, 5, 20]);
    for (const v of [0, 0.5, 5, 5.0001, 20, 21, 1000]) h.observe(v);
    const s = h.snapshot();
    expect(s.buckets).toEqual([
      { le: 0, count: 1 },
      { le: 5, count: 3 },
      { le: 20, count: 5 },
      { le: Number.POSITIVE_INFINITY, count: 7 },
    ]);
    expect(s.count).toBe(7);
    expect(s.sum).toBeCloseTo(0 + 0.5 + 5 + 5.0001 + 20 + 21 + 1000, 9);
  });
});

describe('PrefillDelayerMetrics', () => {
  it('counts outcomes per label set and observes histograms only when allowed and executed', () => {
    const m = new PrefillDelayerMetrics({ maxDelayPasses: 30 });
    m.recordPass('all', false, 'delay', false, 0, 0);
    m.recordPass('all', false, 'delay', false, 0, 0);
    m.recordPass('all', false, 'delay', true, 0, 0); // chunked continuation ran while delayed
    m.recordPass('all', true, 'wait_success', true, 3, 0.25);
    m.recordPass('mixed', true, 'wait_timeout', false, 29, 1.5); // allowed but nothing built: no observation
    m.recordPass('none', true, '', false, 0, 0);
    expect(m.outcomeCount('all', false, 'delay', false)).toBe(2);
    expect(m.outcomeCount('all', false, 'delay', true)).toBe(1);
    expect(m.outcomeCount('mixed', true, 'wait_timeout', true)).toBe(0);
    const snap = m.snapshot();
    expect(snap.outcomes.name).toBe(METRIC_OUTCOMES_TOTAL);
    expect(snap.outcomes.samples).toEqual([
      {
        labels: {
          input_estimation: 'all',
          output_allow: 'false',
          output_reason: 'delay',
          actual_execution: 'false',
        },
        value: 2,
      },
      {
        labels: {
          input_estimation: 'all',
          output_allow: 'false',
          output_reason: 'delay',
          actual_execution: 'true',
        },
        value: 1,
      },
      {
        labels: {
          input_estimation: 'all',
          output_allow: 'true',
          output_reason: 'wait_success',
          actual_execution: 'true',
        },
        value: 1,
      },
      {
        labels: {
          input_estimation: 'none',
          output_allow: 'true',
          output_reason: '',
          actual_execution: 'false',
        },
        value: 1,
      },
      {
        labels: {
          input_estimation: 'mixed',
          output_allow: 'true',
          output_reason: 'wait_timeout',
          actual_execution: 'false',
        },
        value: 1,
      },
    ]);
    expect(snap.waitForwardPasses.name).toBe(METRIC_WAIT_FORWARD_PASSES);
    expect(snap.waitForwardPasses.count).toBe(1);
    expect(snap.waitForwardPasses.sum).toBe(3);
    expect(snap.waitForwardPasses.buckets.map((b) => [b.le, b.count])).toEqual([
      [0, 0],
      [5, 1],
      [20, 1],
      [29, 1],
      [Number.POSITIVE_INFINITY, 1],
    ]);
    expect(snap.waitSeconds.name).toBe(METRIC_WAIT_SECONDS);
    expect(snap.waitSeconds.sum).toBe(0.25);
    expect(snap.waitSeconds.buckets[0]).toEqual({ le: 0, count: 0 });
    expect(snap.waitSeconds.buckets[1]).toEqual({ le: 1, count: 1 });
  });

  it('uses custom buckets', () => {
    const m = new PrefillDelayerMetrics({
      maxDelayPasses: 100,
      forwardPassesBuckets: [10, 20, 30],
      waitSecondsBuckets: [2],
    });
    expect(m.waitForwardPasses.bounds).toEqual([0, 10, 20, 30, 99]);
    expect(m.waitSeconds.bounds).toEqual([0, 2]);
  });

  it('formats Prometheus text with base labels, escaped values and +Inf', () => {
    const m = new PrefillDelayerMetrics({ maxDelayPasses: 3, waitSecondsBuckets: [1] });
    m.recordPass('all', true, 'no_wait', true, 0, 0);
    m.recordPass('none', true, '', false, 0, 0);
    const text = formatPrometheusText(m.snapshot(), { dp_rank: '0', model: 'a"b' });
    expect(text).toContain(`# TYPE ${METRIC_OUTCOMES_TOTAL} counter`);
    expect(text).toContain(
      `${METRIC_OUTCOMES_TOTAL}{dp_rank="0",model="a\\"b",input_estimation="all",output_allow="true",output_reason="no_wait",actual_execution="true"} 1`,
    );
    expect(text).toContain('output_reason=""');
    expect(text).toContain(`# TYPE ${METRIC_WAIT_FORWARD_PASSES} histogram`);
    expect(text).toContain(`${METRIC_WAIT_FORWARD_PASSES}_bucket{dp_rank="0",model="a\\"b",le="0"} 1`);
    expect(text).toContain(`${METRIC_WAIT_FORWARD_PASSES}_bucket{dp_rank="0",model="a\\"b",le="2"} 1`);
    expect(text).toContain(`${METRIC_WAIT_SECONDS}_bucket{dp_rank="0",model="a\\"b",le="+Inf"} 1`);
    expect(text).toContain(`${METRIC_WAIT_SECONDS}_count{dp_rank="0",model="a\\"b"} 1`);
    expect(text.endsWith('\n')).toBe(true);
  });
});
