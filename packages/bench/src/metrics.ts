/**
 * bench_serving's `calculate_metrics`: only successful requests count
 * (failures contribute 0 output tokens); TTFT and E2E per request; TPOT per
 * request with more than one output token, excluding the first; ITL over the
 * pooled gaps of all requests; concurrency by Little's law; peak output
 * tokens and peak concurrent requests over 1 s bins.
 */
import type { RequestOutput } from './backends.js';
import type { DatasetRow } from './datasets.js';
import { max, type Summary, summarize } from './stats.js';

export interface BenchmarkMetrics {
  completed: number;
  totalInput: number;
  totalInputText: number;
  totalInputVision: number;
  totalOutput: number;
  totalOutputRetokenized: number;
  requestThroughput: number;
  inputThroughput: number;
  outputThroughput: number;
  outputThroughputRetokenized: number;
  totalThroughput: number;
  totalThroughputRetokenized: number;
  /** All in ms. */
  ttft: Summary;
  tpot: Summary;
  itl: Summary & { max: number };
  e2e: Summary;
  concurrency: number;
  maxOutputTokensPerS: number;
  maxConcurrentRequests: number;
}

export interface MetricsResult {
  metrics: BenchmarkMetrics;
  /** Per request: server output length, 0 for a failure. */
  outputLens: number[];
  ttfts: number[];
  itls: number[];
  tpots: number[];
  e2eLatencies: number[];
}

const ms = (s: Summary): Summary => ({
  mean: s.mean * 1000,
  median: s.median * 1000,
  std: s.std * 1000,
  p90: s.p90 * 1000,
  p95: s.p95 * 1000,
  p99: s.p99 * 1000,
});

/**
 * @param inputRequests the dataset rows in the order the outputs were sent
 * @param retokenize token count of a generated text without special tokens
 */
export function calculateMetrics(
  inputRequests: readonly DatasetRow[],
  outputs: readonly RequestOutput[],
  durS: number,
  retokenize: (text: string) => number,
): MetricsResult {
  const outputLens: number[] = [];
  const retokenized: number[] = [];
  let totalInput = 0;
  let completed = 0;
  const itls: number[] = [];
  const tpots: number[] = [];
  const ttfts: number[] = [];
  const e2e: number[] = [];
  outputs.forEach((o, i) => {
    if (!o.success) {
      outputLens.push(0);
      retokenized.push(0);
      return;
    }
    outputLens.push(o.outputLen);
    retokenized.push(retokenize(o.generatedText));
    totalInput += inputRequests[i]?.promptLen ?? 0;
    if (o.outputLen > 1) tpots.push((o.latency - o.ttft) / (o.outputLen - 1));
    for (const g of o.itl) itls.push(g);
    ttfts.push(o.ttft);
    e2e.push(o.latency);
    completed++;
  });

  let maxOutputTokensPerS = 0;
  let maxConcurrentRequests = 0;
  const ok = outputs.filter((o) => o.success);
  if (ok.length > 0) {
    let minStart = Number.POSITIVE_INFINITY;
    let maxEnd = Number.NEGATIVE_INFINITY;
    for (const o of ok) {
      minStart = Math.min(minStart, o.startTime);
      maxEnd = Math.max(maxEnd, o.startTime + o.latency);
    }
    const bins = Math.ceil(maxEnd - minStart) + 1;
    const tokens = new Array<number>(bins).fill(0);
    const conc = new Array<number>(bins).fill(0);
    for (const o of ok) {
      let t = o.startTime + o.ttft;
      const times = [t];
      for (const g of o.itl) {
        t += g;
        times.push(t);
      }
      for (const tt of times) {
        const b = Math.trunc(tt - minStart);
        if (b >= 0 && b < bins) tokens[b]!++;
      }
      const s = Math.trunc(o.startTime - minStart);
      const e = Math.trunc(o.startTime + o.latency - minStart);
      for (let k = s; k < Math.min(e + 1, bins); k++) conc[k]!++;
    }
    maxOutputTokensPerS = tokens.reduce((a, b) => Math.max(a, b), 0);
    maxConcurrentRequests = conc.reduce((a, b) => Math.max(a, b), 0);
  }

  const totalOutput = outputLens.reduce((a, b) => a + b, 0);
  const totalRetok = retokenized.reduce((a, b) => a + b, 0);
  const itlSummary = ms(summarize(itls));
  const metrics: BenchmarkMetrics = {
    completed,
    totalInput,
    totalInputText: totalInput,
    totalInputVision: 0,
    totalOutput,
    totalOutputRetokenized: totalRetok,
    requestThroughput: completed / durS,
    inputThroughput: totalInput / durS,
    outputThroughput: totalOutput / durS,
    outputThroughputRetokenized: totalRetok / durS,
    totalThroughput: (totalInput + totalOutput) / durS,
    totalThroughputRetokenized: (totalInput + totalRetok) / durS,
    ttft: ms(summarize(ttfts)),
    tpot: ms(summarize(tpots)),
    itl: { ...itlSummary, max: max(itls) * 1000 },
    e2e: ms(summarize(e2e)),
    concurrency: e2e.reduce((a, b) => a + b, 0) / durS,
    maxOutputTokensPerS,
    maxConcurrentRequests,
  };
  return { metrics, outputLens, ttfts, itls, tpots, e2eLatencies: e2e };
}
