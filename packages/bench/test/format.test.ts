import { describe, expect, it } from 'vitest';
import {
  buildDetails,
  buildResult,
  DETAIL_KEYS,
  defaultOutputFile,
  formatResultTable,
  RESULT_KEYS,
} from '../src/format.js';
import { calculateMetrics } from '../src/metrics.js';
import { parsePyJson, pyCenter, pyFixed, pyFloatRepr, pyJsonDumps } from '../src/pyformat.js';

const ok = (start: number, ttft: number, itl: number[], latency: number, n: number) => ({
  generatedText: 'a b',
  success: true,
  latency,
  ttft,
  itl,
  textChunks: [],
  promptLen: 10,
  error: '',
  outputLen: n,
  startTime: start,
});
const outputs = [ok(0, 0.05, [0.01, 0.02], 0.08, 3), ok(0.01, 0.07, [0.03], 0.1, 2)];
const rows = [
  { prompt: 'x', promptLen: 10, outputLen: 3 },
  { prompt: 'y', promptLen: 12, outputLen: 2 },
];
const { metrics, outputLens } = calculateMetrics(rows, outputs, 0.5, () => 2);

describe('the printed table', () => {
  const lines = formatResultTable(metrics, {
    backend: 'sglang-oai',
    requestRate: Number.POSITIVE_INFINITY,
    maxConcurrency: null,
    duration: 0.5,
    acceptLength: null,
  });

  it('has bench_serving’s rows in bench_serving’s order', () => {
    const labels = lines.map((l) => (l.includes(':') ? l.slice(0, l.indexOf(':') + 1) : l));
    expect(labels).toEqual([
      '',
      '============ Serving Benchmark Result ============',
      'Backend:',
      'Traffic request rate:',
      'Max request concurrency:',
      'Successful requests:',
      'Benchmark duration (s):',
      'Total input tokens:',
      'Total input text tokens:',
      'Total generated tokens:',
      'Total generated tokens (retokenized):',
      'Request throughput (req/s):',
      'Input token throughput (tok/s):',
      'Output token throughput (tok/s):',
      'Peak output token throughput (tok/s):',
      'Peak concurrent requests:',
      'Total token throughput (tok/s):',
      'Concurrency:',
      '----------------End-to-End Latency----------------',
      'Mean E2E Latency (ms):',
      'Median E2E Latency (ms):',
      'P90 E2E Latency (ms):',
      'P95 E2E Latency (ms):',
      'P99 E2E Latency (ms):',
      '---------------Time to First Token----------------',
      'Mean TTFT (ms):',
      'Median TTFT (ms):',
      'P90 TTFT (ms):',
      'P95 TTFT (ms):',
      'P99 TTFT (ms):',
      '-----Time per Output Token (excl. 1st token)------',
      'Mean TPOT (ms):',
      'Median TPOT (ms):',
      'P90 TPOT (ms):',
      'P95 TPOT (ms):',
      'P99 TPOT (ms):',
      '---------------Inter-Token Latency----------------',
      'Mean ITL (ms):',
      'Median ITL (ms):',
      'P90 ITL (ms):',
      'P95 ITL (ms):',
      'P99 ITL (ms):',
      'Max ITL (ms):',
      '==================================================',
    ]);
  });

  it('pads labels to 40 columns and values to 10, with Python’s number formats', () => {
    expect(lines[2]).toBe(`${'Backend:'.padEnd(40)} ${'sglang-oai'.padEnd(10)}`);
    expect(lines[3]).toBe(`${'Traffic request rate:'.padEnd(40)} ${'inf'.padEnd(10)}`);
    expect(lines[4]).toBe(`${'Max request concurrency:'.padEnd(40)} ${'not set'.padEnd(10)}`);
    expect(lines[5]).toBe(`${'Successful requests:'.padEnd(40)} 2         `);
    expect(lines[6]).toBe(`${'Benchmark duration (s):'.padEnd(40)} 0.50      `);
    expect(lines[7]).toBe(`${'Total input tokens:'.padEnd(40)} 22        `);
    // Mean E2E = (80 + 100) / 2 ms.
    expect(lines[19]).toBe(`${'Mean E2E Latency (ms):'.padEnd(40)} 90.00     `);
    for (const l of lines.slice(2)) if (l.includes(':')) expect(l.length).toBeGreaterThanOrEqual(51);
  });

  it('prints a finite rate like Python (10.0), the concurrency cap, and the accept length only when set', () => {
    const t = formatResultTable(metrics, {
      backend: 'sglang',
      requestRate: 10,
      maxConcurrency: 8,
      duration: 1,
      acceptLength: 2.5,
    });
    expect(t[3]).toContain(' 10.0');
    expect(t[4]).toContain(' 8 ');
    expect(t[18]).toBe(`${'Accept length:'.padEnd(40)} 2.50      `);
  });
});

describe('Python number formatting', () => {
  it('repr(float)', () => {
    expect(pyFloatRepr(10)).toBe('10.0');
    expect(pyFloatRepr(0.5)).toBe('0.5');
    expect(pyFloatRepr(Number.POSITIVE_INFINITY)).toBe('inf');
    expect(pyFloatRepr(1e-5)).toBe('1e-05');
    expect(pyFloatRepr(0.0001)).toBe('0.0001');
    expect(pyFloatRepr(1e16)).toBe('1e+16');
    expect(pyFloatRepr(123456789012345.6)).toBe('123456789012345.6');
    expect(pyFloatRepr(-2.5e-7)).toBe('-2.5e-07');
    expect(pyFloatRepr(0.1 + 0.2)).toBe('0.30000000000000004');
  });

  it("'{:.2f}' rounds exact binary ties half to even", () => {
    expect(pyFixed(0.125, 2)).toBe('0.12'); // JS toFixed gives 0.13
    expect(pyFixed(0.375, 2)).toBe('0.38');
    expect(pyFixed(2.675, 2)).toBe('2.67'); // below the tie in binary
    expect(pyFixed(1.005, 2)).toBe('1.00');
    expect(pyFixed(-0.125, 2)).toBe('-0.12');
    expect(pyFixed(1234.5, 0)).toBe('1234');
    expect(pyFixed(Number.NaN, 2)).toBe('nan');
  });

  it('centering puts the odd fill character on the right', () => {
    expect(pyCenter('ab', 7, '=')).toBe('==ab===');
  });

  it('json.dumps: separators, Infinity, floats keep .0, non-ASCII escaped; parsePyJson reads it back', () => {
    const s = pyJsonDumps({ a: 1, b: Number.POSITIVE_INFINITY, c: [0.5, 'é'], d: null });
    expect(s).toBe('{"a": 1, "b": Infinity, "c": [0.5, "\\u00e9"], "d": null}');
    expect(parsePyJson(s)).toEqual({ a: 1, b: Number.POSITIVE_INFINITY, c: [0.5, 'é'], d: null });
    expect(parsePyJson('{"x": "Infinity NaN", "y": NaN, "z": -Infinity}')).toEqual({
      x: 'Infinity NaN',
      y: Number.NaN,
      z: Number.NEGATIVE_INFINITY,
    });
  });
});

describe('the JSONL line', () => {
  const args = {
    tag: 't1',
    backend: 'vllm',
    datasetName: 'random',
    requestRate: Number.POSITIVE_INFINITY,
    maxConcurrency: 4,
    sharegptOutputLen: null,
    randomInputLen: 1024,
    randomOutputLen: 1024,
    randomRangeRatio: 0,
  };
  it('has bench_serving’s keys in order; floats print as floats', () => {
    const r = buildResult(args, metrics, 0.5, null, null);
    expect(Object.keys(r)).toEqual([...RESULT_KEYS]);
    const line = pyJsonDumps(r);
    expect(line).toContain('"request_rate": Infinity');
    expect(line).toContain('"random_range_ratio": 0.0');
    expect(line).toContain('"duration": 0.5');
    expect(line).toContain('"completed": 2,');
    expect(line).toContain('"max_concurrency": 4');
    const back = parsePyJson(line) as Record<string, unknown>;
    expect(back['mean_e2e_latency_ms']).toBeCloseTo(90, 9);
  });

  it('--output-details adds the per-request arrays', () => {
    const d = buildDetails(outputs, outputLens);
    expect(Object.keys(d)).toEqual([...DETAIL_KEYS]);
    const back = parsePyJson(pyJsonDumps(d)) as Record<string, unknown>;
    expect(back['itls']).toEqual([[0.01, 0.02], [0.03]]);
    expect(back['output_lens']).toEqual([3, 2]);
  });

  it('default file names follow bench_serving', () => {
    const date = new Date(2026, 10, 3);
    expect(defaultOutputFile('sglang', 'random', 100, 512, 128, date)).toBe('sglang_1103_100_512_128.jsonl');
    expect(defaultOutputFile('vllm', 'sharegpt', 100, 512, 128, date)).toBe('vllm_1103_100_sharegpt.jsonl');
  });
});
