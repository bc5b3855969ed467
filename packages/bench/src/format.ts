/**
 * The printed "Serving Benchmark Result" table and the JSONL result line,
 * in bench_serving's order, labels and number formats.
 */
import type { RequestOutput } from './backends.js';
import type { BenchmarkMetrics } from './metrics.js';
import { ljust, PyFloat, pyCenter, pyFixed, pyFloatRepr } from './pyformat.js';

export interface TableMeta {
  backend: string;
  /** `--request-rate` (Infinity for inf). */
  requestRate: number;
  maxConcurrency: number | null;
  /** Wall time of the measured run, s. */
  duration: number;
  /** Speculative accept length from /server_info; printed only when truthy. */
  acceptLength: number | null;
}

const row = (label: string, value: string): string => `${ljust(label, 40)} ${ljust(value, 10)}`;
const f2 = (x: number): string => pyFixed(x, 2);

/** The table's lines, starting with the blank line bench_serving prints before the title. */
export function formatResultTable(m: BenchmarkMetrics, meta: TableMeta): string[] {
  const lines: string[] = [''];
  lines.push(pyCenter(' Serving Benchmark Result ', 50, '='));
  lines.push(row('Backend:', meta.backend));
  lines.push(row('Traffic request rate:', pyFloatRepr(meta.requestRate)));
  lines.push(row('Max request concurrency:', meta.maxConcurrency ? String(meta.maxConcurrency) : 'not set'));
  lines.push(row('Successful requests:', String(m.completed)));
  lines.push(row('Benchmark duration (s):', f2(meta.duration)));
  lines.push(row('Total input tokens:', String(m.totalInput)));
  lines.push(row('Total input text tokens:', String(m.totalInputText)));
  lines.push(row('Total generated tokens:', String(m.totalOutput)));
  lines.push(row('Total generated tokens (retokenized):', String(m.totalOutputRetokenized)));
  lines.push(row('Request throughput (req/s):', f2(m.requestThroughput)));
  lines.push(row('Input token throughput (tok/s):', f2(m.inputThroughput)));
  lines.push(row('Output token throughput (tok/s):', f2(m.outputThroughput)));
  lines.push(row('Peak output token throughput (tok/s):', f2(m.maxOutputTokensPerS)));
  lines.push(row('Peak concurrent requests:', String(m.maxConcurrentRequests)));
  lines.push(row('Total token throughput (tok/s):', f2(m.totalThroughput)));
  lines.push(row('Concurrency:', f2(m.concurrency)));
  if (meta.acceptLength) lines.push(row('Accept length:', f2(meta.acceptLength)));
  lines.push(pyCenter('End-to-End Latency', 50, '-'));
  lines.push(row('Mean E2E Latency (ms):', f2(m.e2e.mean)));
  lines.push(row('Median E2E Latency (ms):', f2(m.e2e.median)));
  lines.push(row('P90 E2E Latency (ms):', f2(m.e2e.p90)));
  lines.push(row('P95 E2E Latency (ms):', f2(m.e2e.p95)));
  lines.push(row('P99 E2E Latency (ms):', f2(m.e2e.p99)));
  lines.push(pyCenter('Time to First Token', 50, '-'));
  lines.push(row('Mean TTFT (ms):', f2(m.ttft.mean)));
  lines.push(row('Median TTFT (ms):', f2(m.ttft.median)));
  lines.push(row('P90 TTFT (ms):', f2(m.ttft.p90)));
  lines.push(row('P95 TTFT (ms):', f2(m.ttft.p95)));
  lines.push(row('P99 TTFT (ms):', f2(m.ttft.p99)));
  lines.push(pyCenter('Time per Output Token (excl. 1st token)', 50, '-'));
  lines.push(row('Mean TPOT (ms):', f2(m.tpot.mean)));
  lines.push(row('Median TPOT (ms):', f2(m.tpot.median)));
  lines.push(row('P90 TPOT (ms):', f2(m.tpot.p90)));
  lines.push(row('P95 TPOT (ms):', f2(m.tpot.p95)));
  lines.push(row('P99 TPOT (ms):', f2(m.tpot.p99)));
  lines.push(pyCenter('Inter-Token Latency', 50, '-'));
  lines.push(row('Mean ITL (ms):', f2(m.itl.mean)));
  lines.push(row('Median ITL (ms):', f2(m.itl.median)));
  lines.push(row('P90 ITL (ms):', f2(m.itl.p90)));
  lines.push(row('P95 ITL (ms):', f2(m.itl.p95)));
  lines.push(row('P99 ITL (ms):', f2(m.itl.p99)));
  lines.push(row('Max ITL (ms):', f2(m.itl.max)));
  lines.push('='.repeat(50));
  return lines;
}

export interface ResultArgs {
  tag: string | null;
  backend: string;
  datasetName: string;
  requestRate: number;
  maxConcurrency: number | null;
  sharegptOutputLen: number | null;
  randomInputLen: number;
  randomOutputLen: number;
  randomRangeRatio: number;
}

/** The keys of the JSONL line, in bench_serving's order (before any extras). */
export const RESULT_KEYS = [
  'tag',
  'backend',
  'dataset_name',
  'request_rate',
  'max_concurrency',
  'sharegpt_output_len',
  'random_input_len',
  'random_output_len',
  'random_range_ratio',
  'server_info',
  'duration',
  'completed',
  'total_input_tokens',
  'total_input_text_tokens',
  'total_input_vision_tokens',
  'total_output_tokens',
  'total_output_tokens_retokenized',
  'request_throughput',
  'input_throughput',
  'output_throughput',
  'total_throughput',
  'mean_e2e_latency_ms',
  'median_e2e_latency_ms',
  'std_e2e_latency_ms',
  'p90_e2e_latency_ms',
  'p95_e2e_latency_ms',
  'p99_e2e_latency_ms',
  'mean_ttft_ms',
  'median_ttft_ms',
  'std_ttft_ms',
  'p90_ttft_ms',
  'p95_ttft_ms',
  'p99_ttft_ms',
  'mean_tpot_ms',
  'median_tpot_ms',
  'std_tpot_ms',
  'p90_tpot_ms',
  'p95_tpot_ms',
  'p99_tpot_ms',
  'mean_itl_ms',
  'median_itl_ms',
  'std_itl_ms',
  'p90_itl_ms',
  'p95_itl_ms',
  'p99_itl_ms',
  'concurrency',
  'accept_length',
  'max_output_tokens_per_s',
  'max_concurrent_requests',
] as const;

/** The keys `--output-details` adds. */
export const DETAIL_KEYS = [
  'input_lens',
  'output_lens',
  'ttfts',
  'itls',
  'generated_texts',
  'errors',
] as const;

/**
 * The result object of one run. Float-typed values are wrapped in
 * {@link PyFloat} so that `pyJsonDumps` writes them as Python would.
 */
export function buildResult(
  args: ResultArgs,
  m: BenchmarkMetrics,
  duration: number,
  serverInfo: unknown,
  acceptLength: number | null,
): Record<string, unknown> {
  const F = (x: number): PyFloat => new PyFloat(x);
  const r: Record<string, unknown> = {
    tag: args.tag,
    backend: args.backend,
    dataset_name: args.datasetName,
    request_rate: F(args.requestRate),
    max_concurrency: args.maxConcurrency,
    sharegpt_output_len: args.sharegptOutputLen,
    random_input_len: args.randomInputLen,
    random_output_len: args.randomOutputLen,
    random_range_ratio: F(args.randomRangeRatio),
    server_info: serverInfo ?? null,
    duration: F(duration),
    completed: m.completed,
    total_input_tokens: m.totalInput,
    total_input_text_tokens: m.totalInputText,
    total_input_vision_tokens: m.totalInputVision,
    total_output_tokens: m.totalOutput,
    total_output_tokens_retokenized: m.totalOutputRetokenized,
    request_throughput: F(m.requestThroughput),
    input_throughput: F(m.inputThroughput),
    output_throughput: F(m.outputThroughput),
    total_throughput: F(m.totalThroughput),
  };
  for (const [name, s] of [
    ['e2e_latency', m.e2e],
    ['ttft', m.ttft],
    ['tpot', m.tpot],
    ['itl', m.itl],
  ] as const) {
    r[`mean_${name}_ms`] = F(s.mean);
    r[`median_${name}_ms`] = F(s.median);
    r[`std_${name}_ms`] = F(s.std);
    r[`p90_${name}_ms`] = F(s.p90);
    r[`p95_${name}_ms`] = F(s.p95);
    r[`p99_${name}_ms`] = F(s.p99);
  }
  r['concurrency'] = F(m.concurrency);
  r['accept_length'] = acceptLength === null ? null : F(acceptLength);
  r['max_output_tokens_per_s'] = F(m.maxOutputTokensPerS);
  r['max_concurrent_requests'] = m.maxConcurrentRequests;
  return r;
}

/** The `--output-details` arrays. */
export function buildDetails(
  outputs: readonly RequestOutput[],
  outputLens: readonly number[],
): Record<string, unknown> {
  return {
    input_lens: outputs.map((o) => o.promptLen),
    output_lens: [...outputLens],
    ttfts: outputs.map((o) => new PyFloat(o.ttft)),
    itls: outputs.map((o) => o.itl.map((g) => new PyFloat(g))),
    generated_texts: outputs.map((o) => o.generatedText),
    errors: outputs.map((o) => o.error),
  };
}

/** bench_serving's default output file name. `date` gives the MMDD part (local time, like `datetime.now()`). */
export function defaultOutputFile(
  backend: string,
  datasetName: string,
  numPrompts: number,
  randomInputLen: number,
  randomOutputLen: number,
  date: Date,
): string {
  const mmdd = `${String(date.getMonth() + 1).padStart(2, '0')}${String(date.getDate()).padStart(2, '0')}`;
  if (datasetName.startsWith('random'))
    return `${backend}_${mmdd}_${numPrompts}_${randomInputLen}_${randomOutputLen}.jsonl`;
  return `${backend}_${mmdd}_${numPrompts}_${datasetName}.jsonl`;
}
