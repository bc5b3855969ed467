/**
 * `tsinfer bench` (bench_serving's flags and defaults) and
 * `tsinfer bench report <runs.jsonl...> --out <dir>`.
 */
import { InvalidConfigError } from '@tsinfer/core';
import type { Command } from 'commander';
import { BACKENDS, type Backend } from './backends.js';
import { DATASET_NAMES, type DatasetName } from './datasets.js';
import { float, int } from './flag-parsers.js';
import { writeReport } from './report.js';
import { type BenchOptions, DEFAULT_BENCH_OPTIONS, runBench } from './run.js';
import { registerSim } from './sim/cli.js';

/** Raw commander values (strings, booleans, string arrays). */
export interface BenchFlags {
  backend: string;
  baseUrl?: string;
  host: string;
  port?: string;
  datasetName: string;
  datasetPath: string;
  model?: string;
  tokenizer?: string;
  numPrompts: string;
  sharegptOutputLen?: string;
  sharegptContextLen?: string;
  randomInputLen: string;
  randomOutputLen: string;
  randomRangeRatio: string;
  requestRate: string;
  maxConcurrency?: string;
  seed: string;
  outputFile?: string;
  outputDetails?: boolean;
  disableTqdm?: boolean;
  disableStream?: boolean;
  disableIgnoreEos?: boolean;
  temperature: string;
  topP: string;
  extraRequestBody?: string;
  warmupRequests: string;
  flushCache?: boolean;
  readyCheckTimeoutSec: string;
  tag?: string;
  header?: string[];
  tokenizePrompt?: boolean;
  applyChatTemplate?: boolean;
  loadsInterval?: string;
}

const opt = <T>(v: string | undefined, f: (s: string) => T): T | undefined =>
  v === undefined ? undefined : f(v);

/** Turns the flags into {@link BenchOptions}, with the flag named in every error. */
export function parseBenchFlags(f: BenchFlags): BenchOptions {
  if (!(BACKENDS as readonly string[]).includes(f.backend)) {
    throw new InvalidConfigError(
      '--backend',
      `unknown backend "${f.backend}"; one of ${BACKENDS.join(', ')}`,
    );
  }
  if (!(DATASET_NAMES as readonly string[]).includes(f.datasetName)) {
    throw new InvalidConfigError(
      '--dataset-name',
      `unsupported dataset "${f.datasetName}"; one of ${DATASET_NAMES.join(', ')}`,
    );
  }
  let extra: Record<string, unknown> = {};
  if (f.extraRequestBody) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(f.extraRequestBody);
    } catch (err) {
      throw new InvalidConfigError('--extra-request-body', `not JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new InvalidConfigError('--extra-request-body', 'must be a JSON object');
    }
    extra = parsed as Record<string, unknown>;
  }
  const headers: Record<string, string> = {};
  for (const h of f.header ?? []) {
    const eq = h.indexOf('=');
    if (eq <= 0) throw new InvalidConfigError('--header', `expected Key=Value, got "${h}"`);
    headers[h.slice(0, eq).trim()] = h.slice(eq + 1).trim();
  }
  return {
    backend: f.backend as Backend,
    baseUrl: f.baseUrl,
    host: f.host,
    port: opt(f.port, (v) => int('--port', v, 1)),
    datasetName: f.datasetName as DatasetName,
    datasetPath: f.datasetPath,
    model: f.model,
    tokenizer: f.tokenizer,
    numPrompts: int('--num-prompts', f.numPrompts, 1),
    sharegptOutputLen: opt(f.sharegptOutputLen, (v) => int('--sharegpt-output-len', v, 0)),
    sharegptContextLen: opt(f.sharegptContextLen, (v) => int('--sharegpt-context-len', v, 0)),
    randomInputLen: int('--random-input-len', f.randomInputLen, 0),
    randomOutputLen: int('--random-output-len', f.randomOutputLen, 0),
    randomRangeRatio: float('--random-range-ratio', f.randomRangeRatio),
    requestRate: float('--request-rate', f.requestRate),
    maxConcurrency: opt(f.maxConcurrency, (v) => int('--max-concurrency', v, 1)),
    seed: int('--seed', f.seed, Number.MIN_SAFE_INTEGER),
    outputFile: f.outputFile,
    outputDetails: f.outputDetails ?? false,
    disableTqdm: f.disableTqdm ?? false,
    disableStream: f.disableStream ?? false,
    disableIgnoreEos: f.disableIgnoreEos ?? false,
    temperature: float('--temperature', f.temperature),
    topP: float('--top-p', f.topP),
    extraRequestBody: extra,
    warmupRequests: int('--warmup-requests', f.warmupRequests, 0),
    flushCache: f.flushCache ?? false,
    readyCheckTimeoutSec: int('--ready-check-timeout-sec', f.readyCheckTimeoutSec, 0),
    tag: f.tag,
    headers,
    tokenizePrompt: f.tokenizePrompt ?? false,
    applyChatTemplate: f.applyChatTemplate ?? false,
    loadsInterval: opt(f.loadsInterval, (v) => float('--loads-interval', v)),
  };
}

/** Adds `bench` and `bench report` (and `sim`, the bench against a simulated server) to a commander program. */
export function registerBench(program: Command): Command {
  registerSim(program);
  const d = DEFAULT_BENCH_OPTIONS;
  const bench = program
    .command('bench')
    .description(
      "Benchmark a running server's online serving performance (SGLang bench_serving's flags, metrics and output)",
    )
    .option('--backend <name>', `request protocol: ${BACKENDS.join(' | ')}`, d.backend)
    .option('--base-url <url>', 'server base URL (overrides --host/--port)')
    .option('--host <host>', 'server host', d.host)
    .option('--port <n>', 'server port (default 30000 for sglang*, 8000 for vllm*)')
    .option('--dataset-name <name>', `workload: ${DATASET_NAMES.join(' | ')}`, d.datasetName)
    .option(
      '--dataset-path <file>',
      'ShareGPT-format JSON (default: the shipped data/sharegpt-small.json)',
      '',
    )
    .option('--model <id>', 'model id to send (default: first id of GET /v1/models)')
    .option(
      '--tokenizer <dir>',
      'model directory with tokenizer.json for token counts (default: built-in tiny)',
    )
    .option('--num-prompts <n>', 'number of requests', String(d.numPrompts))
    .option('--sharegpt-output-len <n>', 'override every ShareGPT output length')
    .option('--sharegpt-context-len <n>', 'drop ShareGPT rows whose prompt + output exceed this')
    .option('--random-input-len <n>', 'target input tokens (random datasets)', String(d.randomInputLen))
    .option('--random-output-len <n>', 'target output tokens (random datasets)', String(d.randomOutputLen))
    .option(
      '--random-range-ratio <r>',
      'lengths uniform on [max(floor(len*r),1), len]; 0 = [1, len], 1 = exactly len',
      '0.0',
    )
    .option('--request-rate <r>', 'mean requests/s (Poisson arrivals); inf sends all at once', 'inf')
    .option('--max-concurrency <n>', 'client-side cap on in-flight requests')
    .option('--seed <n>', 'random seed', String(d.seed))
    .option('--output-file <file>', 'JSONL file; one line is appended per run')
    .option('--output-details', 'add per-request arrays to the JSONL line')
    .option('--disable-tqdm', 'no progress bar')
    .option('--disable-stream', 'non-streaming requests (TTFT = latency)')
    .option('--disable-ignore-eos', 'let EOS end generation (ignore_eos false)')
    .option('--temperature <t>', 'sampling temperature (native /generate only)', '0.0')
    .option('--top-p <p>', 'nucleus sampling (native /generate only)', '1.0')
    .option('--extra-request-body <json>', 'JSON object merged into every payload')
    .option('--warmup-requests <n>', 'warm-up requests before timing', String(d.warmupRequests))
    .option('--flush-cache', 'POST /flush_cache (sglang) or /reset_prefix_cache (vllm) after warm-up')
    .option(
      '--ready-check-timeout-sec <s>',
      'wait for GET /v1/models = 200; 0 skips',
      String(d.readyCheckTimeoutSec),
    )
    .option('--tag <tag>', 'tag written to the JSONL line')
    .option('--header <kv...>', 'extra HTTP headers, Key=Value')
    .option('--tokenize-prompt', 'send token ids instead of text (sglang backend only)')
    .option('--apply-chat-template', 'wrap ShareGPT prompts with the tokenizer chat template')
    .option('--loads-interval <s>', 'sample GET /v1/loads every s seconds into the JSONL line')
    .action(async (flags: BenchFlags) => {
      await runBench(parseBenchFlags(flags));
    });
  bench
    .command('report')
    .description('Write an HTML page with charts from tsinfer bench / bench_serving JSONL files')
    .argument('<runs...>', 'JSONL files written by tsinfer bench (--output-file)')
    .requiredOption('--out <dir>', 'directory to write index.html into')
    .option('--title <title>', 'page title', 'tsinfer bench report')
    .action(async (runs: string[], flags: { out: string; title: string }) => {
      const r = await writeReport(runs, flags.out, { title: flags.title });
      console.log(`wrote ${r.path}: ${r.runs} runs, ${r.charts} charts`);
    });
  return bench;
}
