import { describe, expect, it } from 'vitest';
import type { RequestOutput } from '../src/backends.js';
import type { DatasetRow } from '../src/datasets.js';
import { calculateMetrics } from '../src/metrics.js';

function out(p: Partial<RequestOutput>): RequestOutput {
  return {
    generatedText: '',
    success: true,
    latency: 0,
    ttft: 0,
    itl: [],
    textChunks: [],
    promptLen: 0,
    error: '',
    outputLen: 0,
    startTime: 0,
    ...p,
  };
}

const rows: DatasetRow[] = [
  { prompt: 'a', promptLen: 10, outputLen: 4 },
  { prompt: 'b', promptLen: 20, outputLen: 2 },
  { prompt: 'c', promptLen: 30, outputLen: 9 },
  { prompt: 'd', promptLen: 5, outputLen: 1 },
];
const outputs = [
  // A: 4 tokens, first at 0.5 s, then gaps 0.1, 0.2, 0.3 → ends at 1.1 s.
  out({
    startTime: 0,
    ttft: 0.5,
    itl: [0.1, 0.2, 0.3],
    latency: 1.1,
    outputLen: 4,
    generatedText: 'w w w w',
  }),
  // B: 2 tokens, starts at 0.2 s, first after 1.0 s, gap 0.5 → ends at 1.7 s.
  out({ startTime: 0.2, ttft: 1.0, itl: [0.5], latency: 1.5, outputLen: 2, generatedText: 'w w' }),
  // C: failed; contributes nothing but an output_len of 0.
  out({
    success: false,
    error: 'Internal Server Error: boom',
    startTime: 0.3,
    ttft: 0,
    latency: 0,
    outputLen: 0,
  }),
  // D: 1 token only → no TPOT entry.
  out({ startTime: 2.5, ttft: 0.2, itl: [], latency: 0.2, outputLen: 1, generatedText: 'w' }),
];

describe('calculateMetrics (hand-computed)', () => {
  const {
    metrics: m,
    outputLens,
    tpots,
    itls,
  } = calculateMetrics(rows, outputs, 3.0, (t) => t.split(' ').length);

  it('counts successes only; failures add 0 output tokens', () => {
    expect(m.completed).toBe(3);
    expect(m.totalInput).toBe(35);
    expect(m.totalOutput).toBe(7);
    expect(outputLens).toEqual([4, 2, 0, 1]);
    expect(m.totalOutputRetokenized).toBe(4 + 2 + 1);
    expect(m.requestThroughput).toBeCloseTo(1, 12);
    expect(m.inputThroughput).toBeCloseTo(35 / 3, 12);
    expect(m.outputThroughput).toBeCloseTo(7 / 3, 12);
    expect(m.totalThroughput).toBeCloseTo(42 / 3, 12);
  });

  it('TTFT and E2E are per successful request', () => {
    expect(m.ttft.mean).toBeCloseTo(((0.5 + 1.0 + 0.2) / 3) * 1000, 9);
    expect(m.ttft.median).toBeCloseTo(500, 9);
    expect(m.e2e.mean).toBeCloseTo(((1.1 + 1.5 + 0.2) / 3) * 1000, 9);
    expect(m.e2e.median).toBeCloseTo(1100, 9);
  });

  it('TPOT excludes the first token and skips single-token requests', () => {
    expect(tpots).toHaveLength(2);
    expect(tpots[0]).toBeCloseTo((1.1 - 0.5) / 3, 12);
    expect(tpots[1]).toBeCloseTo((1.5 - 1.0) / 1, 12);
    expect(m.tpot.mean).toBeCloseTo(350, 9);
    // Unweighted over requests: not total decode time / total decode tokens (= 1.1/4 = 275 ms).
    expect(m.tpot.mean).not.toBeCloseTo(275, 3);
  });

  it('ITL pools every gap of every request (weighted by chunk count)', () => {
    expect(itls).toEqual([0.1, 0.2, 0.3, 0.5]);
    expect(m.itl.mean).toBeCloseTo(275, 9);
    expect(m.itl.median).toBeCloseTo(250, 9);
    expect(m.itl.max).toBeCloseTo(500, 9);
    // P90 of [0.1, 0.2, 0.3, 0.5]: (n-1)·0.9 = 2.7 → 0.3 + 0.7·0.2 = 0.44.
    expect(m.itl.p90).toBeCloseTo(440, 9);
  });

  it('concurrency is Σ E2E / duration (Little’s law)', () => {
    expect(m.concurrency).toBeCloseTo((1.1 + 1.5 + 0.2) / 3, 12);
  });

  it('peak tokens/s and peak concurrent requests use 1 s bins from the earliest start', () => {
    // Token times: A 0.5 0.6 0.8 1.1 · B 1.2 1.7 · D 2.7 → bins [3, 3, 1, 0].
    expect(m.maxOutputTokensPerS).toBe(3);
    // A covers bins 0-1, B 0-1, D 2 → [2, 2, 1, 0].
    expect(m.maxConcurrentRequests).toBe(2);
  });

  it('all failures give zeros, not NaN', () => {
    const r = calculateMetrics(rows.slice(0, 1), [out({ success: false })], 1, () => 0);
    expect(r.metrics.completed).toBe(0);
    expect(r.metrics.ttft.mean).toBe(0);
    expect(r.metrics.e2e.p99).toBe(0);
    expect(r.metrics.maxOutputTokensPerS).toBe(0);
  });
});
