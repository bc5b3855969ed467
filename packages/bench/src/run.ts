/**
 * `runBench`: bench_serving's `run_benchmark` + `benchmark`. Ready check,
 * model lookup, tokenizer, dataset, warm-up, Poisson arrivals behind an
 * optional concurrency gate, metrics, the printed table and the JSONL line.
 */
import { appendFile } from 'node:fs/promises';
import { type Clock, createRng, InvalidConfigError, systemClock, TsinferError } from '@tsinfer/core';
import cliProgress from 'cli-progress';
import {
  API_PATHS,
  type Backend,
  defaultPort,
  protocolOf,
  type RequestInput,
  type RequestOutput,
} from './backends.js';
import {
  type DatasetName,
  type DatasetRow,
  DEFAULT_SHAREGPT_PATH,
  sampleRandomIdsRequests,
  sampleRandomRequests,
  sampleShareGptRequests,
} from './datasets.js';
import { buildDetails, buildResult, defaultOutputFile, formatResultTable } from './format.js';
import { HttpClient } from './http.js';
import { type LoadSample, type LoadSampler, startLoadSampler } from './loads.js';
import { type BenchmarkMetrics, calculateMetrics } from './metrics.js';
import { PyFloat, pyJsonDumps } from './pyformat.js';
import { nextArrivalDelayMs } from './random.js';
import { type RequestContext, sendRequest } from './request.js';
import { resolveTokenizer } from './tokenizer.js';

export interface BenchOptions {
  backend: Backend;
  /** Overrides host/port, e.g. `http://127.0.0.1:30000`. */
  baseUrl?: string | undefined;
  host: string;
  /** Default: 30000 for sglang*, 8000 for vllm*. */
  port?: number | undefined;
  datasetName: DatasetName;
  /** ShareGPT file for `sharegpt` / `random`; empty = the shipped sharegpt-small.json. */
  datasetPath: string;
  /** Model id sent in OpenAI payloads; default: `data[0].id` of GET /v1/models. */
  model?: string | undefined;
  /** A model directory with tokenizer.json. */
  tokenizer?: string | undefined;
  numPrompts: number;
  sharegptOutputLen?: number | undefined;
  sharegptContextLen?: number | undefined;
  randomInputLen: number;
  randomOutputLen: number;
  randomRangeRatio: number;
  /** Requests/s; Infinity sends everything at once. */
  requestRate: number;
  maxConcurrency?: number | undefined;
  seed: number;
  outputFile?: string | undefined;
  outputDetails: boolean;
  disableTqdm: boolean;
  disableStream: boolean;
  disableIgnoreEos: boolean;
  temperature: number;
  topP: number;
  extraRequestBody: Record<string, unknown>;
  warmupRequests: number;
  flushCache: boolean;
  readyCheckTimeoutSec: number;
  tag?: string | undefined;
  /** `--header K=V` pairs. */
  headers: Record<string, string>;
  tokenizePrompt: boolean;
  applyChatTemplate: boolean;
  /** Sample GET /v1/loads every this many seconds during the run (0/undefined: off). */
  loadsInterval?: number | undefined;
}

/** bench_serving's defaults. */
export const DEFAULT_BENCH_OPTIONS: BenchOptions = {
  backend: 'sglang',
  host: '0.0.0.0',
  datasetName: 'sharegpt',
  datasetPath: '',
  numPrompts: 1000,
  randomInputLen: 1024,
  randomOutputLen: 1024,
  randomRangeRatio: 0.0,
  requestRate: Number.POSITIVE_INFINITY,
  seed: 42,
  outputDetails: false,
  disableTqdm: false,
  disableStream: false,
  disableIgnoreEos: false,
  temperature: 0.0,
  topP: 1.0,
  extraRequestBody: {},
  warmupRequests: 1,
  flushCache: false,
  readyCheckTimeoutSec: 60,
  headers: {},
  tokenizePrompt: false,
  applyChatTemplate: false,
};

export interface BenchDeps {
  clock?: Clock;
  sleep?: (ms: number) => Promise<void>;
  /** Where the run's text goes, a line at a time (default console.log). */
  log?: (line: string) => void;
  /** Progress bar stream (default stderr; a bar only when it is a TTY and --disable-tqdm is off). */
  progressStream?: NodeJS.WriteStream;
  /** The fixed pause after warm-up (bench_serving: 1 s). */
  warmupPauseMs?: number;
  /** Date for the default output file name. */
  now?: () => Date;
  /** Built-in tokenizer cache directory. */
  tokenizerCacheDir?: string;
  /** Environment for OPENAI_API_KEY / API_KEY (default process.env). */
  env?: Record<string, string | undefined>;
}

export interface BenchRunResult {
  /** The object written as the JSONL line (details included with --output-details). */
  result: Record<string, unknown>;
  /** The JSONL line as written. */
  line: string;
  metrics: BenchmarkMetrics;
  outputs: RequestOutput[];
  rows: DatasetRow[];
  table: string[];
  outputFile: string;
  tokenizerSource: string;
  loads: LoadSample[] | null;
}

const realSleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An asyncio.Semaphore. */
export class Semaphore {
  #free: number;
  #waiters: Array<() => void> = [];
  constructor(n: number) {
    this.#free = n;
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((r) => this.#waiters.push(r));
  }
  release(): void {
    const w = this.#waiters.shift();
    if (w) w();
    else this.#free++;
  }
}

export function resolveBaseUrl(o: Pick<BenchOptions, 'baseUrl' | 'host' | 'port' | 'backend'>): string {
  if (o.baseUrl) return o.baseUrl.replace(/\/+$/, '');
  const port = o.port ?? defaultPort(o.backend);
  const host = o.host.includes(':') && !o.host.startsWith('[') ? `[${o.host}]` : o.host;
  return `http://${host}:${port}`;
}

export function authHeaders(env: Record<string, string | undefined>): Record<string, string> {
  const key = env['OPENAI_API_KEY'];
  if (key) return { Authorization: `Bearer ${key}` };
  const raw = env['API_KEY'];
  return raw ? { Authorization: raw } : {};
}

/** Validates cross-flag rules bench_serving asserts. */
export function validateOptions(o: BenchOptions): void {
  if (!Number.isInteger(o.numPrompts) || o.numPrompts < 1)
    throw new InvalidConfigError('--num-prompts', `must be an integer >= 1, got ${o.numPrompts}`);
  if (!(o.requestRate > 0))
    throw new InvalidConfigError('--request-rate', `must be > 0 or inf, got ${o.requestRate}`);
  if (o.maxConcurrency !== undefined && (!Number.isInteger(o.maxConcurrency) || o.maxConcurrency < 1))
    throw new InvalidConfigError('--max-concurrency', `must be an integer >= 1, got ${o.maxConcurrency}`);
  if (!(o.randomRangeRatio >= 0 && o.randomRangeRatio <= 1))
    throw new InvalidConfigError('--random-range-ratio', `must be in [0, 1], got ${o.randomRangeRatio}`);
  if (o.tokenizePrompt && o.backend !== 'sglang')
    throw new InvalidConfigError(
      '--tokenize-prompt',
      'only works with --backend sglang (as in bench_serving)',
    );
  if (o.loadsInterval !== undefined && !(o.loadsInterval >= 0))
    throw new InvalidConfigError(
      '--loads-interval',
      `must be a number of seconds >= 0, got ${o.loadsInterval}`,
    );
  if (!Number.isInteger(o.warmupRequests) || o.warmupRequests < 0)
    throw new InvalidConfigError('--warmup-requests', `must be an integer >= 0, got ${o.warmupRequests}`);
}

export async function runBench(options: BenchOptions, deps: BenchDeps = {}): Promise<BenchRunResult> {
  const o = options;
  validateOptions(o);
  const clock = deps.clock ?? systemClock;
  const sleep = deps.sleep ?? realSleep;
  const log = deps.log ?? ((line: string) => console.log(line));
  const env = deps.env ?? process.env;
  const protocol = protocolOf(o.backend);
  const baseUrl = resolveBaseUrl(o);
  const apiUrl = `${baseUrl}${API_PATHS[protocol]}`;
  const modelUrl = `${baseUrl}/v1/models`;
  const client = new HttpClient({ headers: { ...authHeaders(env), ...o.headers } });
  try {
    log(`benchmark_args=${JSON.stringify({ ...o, requestRate: String(o.requestRate) })}`);
    if (o.readyCheckTimeoutSec > 0)
      await waitForEndpoint(client, modelUrl, o.readyCheckTimeoutSec, clock, sleep, log);

    let model = o.model;
    if (model === undefined) {
      try {
        const r = await client.getJson(modelUrl, 30_000);
        const data = (r.json as { data?: Array<{ id?: unknown }> } | null)?.data;
        const id = data?.[0]?.id;
        if (typeof id === 'string') model = id;
      } catch (err) {
        throw new TsinferError(
          'TSI_ERR_BENCH_SERVER',
          `failed to fetch the model from ${modelUrl}: ${(err as Error).message}; check --host/--port/--base-url`,
          { cause: err },
        );
      }
    }
    if (model === undefined) {
      throw new TsinferError(
        'TSI_ERR_BENCH_SERVER',
        `no model specified or found at ${modelUrl}; pass --model`,
      );
    }

    let serverPath: string | null = null;
    let serverVocabSize: number | null = null;
    if (!o.tokenizer) {
      try {
        const r = await client.getJson(`${baseUrl}/model_info`, 5000);
        const info = r.json as Record<string, unknown> | null;
        const p = info?.['tokenizer_path'] ?? info?.['model_path'];
        if (typeof p === 'string') serverPath = p;
        const v = info?.['vocab_size'];
        if (typeof v === 'number') serverVocabSize = v;
      } catch {
        // bench_serving ignores /model_info errors too.
      }
    }
    const tok = await resolveTokenizer({
      tokenizerDir: o.tokenizer,
      serverPath,
      serverVocabSize,
      ...(deps.tokenizerCacheDir === undefined ? {} : { cacheDir: deps.tokenizerCacheDir }),
    });
    log(`Tokenizer: ${tok.source}`);
    const tokenizer = tok.tokenizer;

    const rng = createRng(o.seed);
    const datasetPath = o.datasetPath || DEFAULT_SHAREGPT_PATH;
    let rows: DatasetRow[];
    if (o.datasetName === 'sharegpt') {
      if (!o.datasetPath) log(`Dataset: ${datasetPath} (the shipped ShareGPT-format sample)`);
      rows = sampleShareGptRequests({
        path: datasetPath,
        numRequests: o.numPrompts,
        tokenizer,
        rng,
        fixedOutputLen: o.sharegptOutputLen,
        contextLen: o.sharegptContextLen,
        applyChatTemplate: o.applyChatTemplate,
      });
      if (rows.length < o.numPrompts) {
        log(
          `Note: ${datasetPath} gave ${rows.length} usable conversations, fewer than --num-prompts ${o.numPrompts}.`,
        );
      }
    } else {
      const ro = {
        inputLen: o.randomInputLen,
        outputLen: o.randomOutputLen,
        numPrompts: o.numPrompts,
        rangeRatio: o.randomRangeRatio,
        tokenizer,
        rng,
        returnText: !o.tokenizePrompt,
        datasetPath,
      };
      rows = o.datasetName === 'random' ? sampleRandomRequests(ro) : sampleRandomIdsRequests(ro);
    }
    if (rows.length === 0)
      throw new TsinferError('TSI_ERR_BENCH_DATASET', `${datasetPath}: the dataset gave no request`);
    log(`#Input tokens: ${rows.reduce((a, r) => a + r.promptLen, 0)}`);
    log(`#Output tokens: ${rows.reduce((a, r) => a + r.outputLen, 0)}`);

    const ctx: RequestContext = {
      client,
      clock,
      apiUrl,
      protocol,
      payload: {
        disableStream: o.disableStream,
        disableIgnoreEos: o.disableIgnoreEos,
        temperature: o.temperature,
        topP: o.topP,
      },
    };
    const sem = o.maxConcurrency ? new Semaphore(o.maxConcurrency) : null;
    const limited = async (input: RequestInput): Promise<RequestOutput> => {
      if (sem === null) return sendRequest(ctx, input);
      await sem.acquire();
      try {
        return await sendRequest(ctx, input);
      } finally {
        sem.release();
      }
    };
    const toInput = (r: DatasetRow, outputLen = r.outputLen): RequestInput => ({
      prompt: r.prompt,
      promptLen: r.promptLen,
      outputLen,
      model: model!,
      extraBody: o.extraRequestBody,
    });

    // Warm-up: copies of the first row, output capped at 32 tokens, through the same gate.
    log(`Starting warmup with ${o.warmupRequests} sequences...`);
    const first = rows[0]!;
    const warm = await Promise.all(
      Array.from({ length: o.warmupRequests }, () => limited(toInput(first, Math.min(first.outputLen, 32)))),
    );
    if (o.warmupRequests > 0 && !warm.some((w) => w.success)) {
      throw new TsinferError(
        'TSI_ERR_BENCH_SERVER',
        `Warmup failed - Please make sure benchmark arguments are correctly specified. Error: ${warm[0]?.error}`,
      );
    }
    log(`Warmup completed with ${o.warmupRequests} sequences. Starting main benchmark run...`);
    if (o.flushCache) {
      const path = o.backend.startsWith('vllm') ? '/reset_prefix_cache' : '/flush_cache';
      const r = await client.text('POST', `${baseUrl}${path}`);
      if (r.status < 200 || r.status >= 300) {
        throw new TsinferError('TSI_ERR_BENCH_SERVER', `POST ${path} answered ${r.status}: ${r.text}`);
      }
    }
    // bench_serving pauses 1 s after warm-up; with no warm-up there is nothing to settle.
    if (o.warmupRequests > 0) await sleep(deps.warmupPauseMs ?? 1000);

    let sampler: LoadSampler | null = null;
    if (o.loadsInterval) {
      sampler = startLoadSampler({
        client,
        url: `${baseUrl}/v1/loads`,
        intervalMs: o.loadsInterval * 1000,
        clock,
        sleep,
      });
    }

    const stream = deps.progressStream ?? process.stderr;
    const bar =
      !o.disableTqdm && stream.isTTY
        ? new cliProgress.SingleBar(
            {
              stream,
              format: '[{bar}] {percentage}% | {value}/{total} | {duration_formatted}',
              hideCursor: true,
            },
            cliProgress.Presets.shades_classic,
          )
        : null;
    bar?.start(rows.length, 0);

    const startMs = clock.nowMs();
    const tasks: Promise<RequestOutput>[] = [];
    for (const r of rows) {
      tasks.push(
        limited(toInput(r)).then((out) => {
          bar?.increment();
          return out;
        }),
      );
      if (o.requestRate === Number.POSITIVE_INFINITY) continue;
      await sleep(nextArrivalDelayMs(rng, o.requestRate));
    }
    const outputs = await Promise.all(tasks);
    bar?.stop();
    const loads = sampler ? await sampler.stop() : null;

    let serverInfo: unknown = null;
    let acceptLength: number | null = null;
    const fetchServerInfo = async (): Promise<unknown> => {
      try {
        const r = await client.getJson(`${baseUrl}/server_info`, 30_000);
        return r.status === 200 ? r.json : null;
      } catch {
        return null;
      }
    };
    if (o.backend.includes('sglang')) {
      serverInfo = await fetchServerInfo();
      acceptLength = acceptLengthOf(serverInfo);
    }
    const duration = (clock.nowMs() - startMs) / 1000;
    const { metrics, outputLens } = calculateMetrics(
      rows,
      outputs,
      duration,
      (text) => tokenizer.encode(text, { addSpecialTokens: false }).length,
    );
    if (metrics.completed === 0) {
      log(
        'Warning: all requests failed. This is likely due to a misconfiguration of the benchmark arguments.',
      );
    }
    const failed = outputs.filter((x) => !x.success);
    if (failed.length > 0) {
      // Not in bench_serving's output; printed before the table so the table stays intact.
      log(
        `${failed.length} of ${outputs.length} requests failed; first error: ${failed[0]!.error.split('\n')[0]}`,
      );
    }
    const table = formatResultTable(metrics, {
      backend: o.backend,
      requestRate: o.requestRate,
      maxConcurrency: o.maxConcurrency ?? null,
      duration,
      acceptLength,
    });
    for (const l of table) log(l);
    if (!o.backend.includes('sglang')) serverInfo = await fetchServerInfo();

    const result = buildResult(
      {
        tag: o.tag ?? null,
        backend: o.backend,
        datasetName: o.datasetName,
        requestRate: o.requestRate,
        maxConcurrency: o.maxConcurrency ?? null,
        sharegptOutputLen: o.sharegptOutputLen ?? null,
        randomInputLen: o.randomInputLen,
        randomOutputLen: o.randomOutputLen,
        randomRangeRatio: o.randomRangeRatio,
      },
      metrics,
      duration,
      serverInfo,
      acceptLength,
    );
    if (loads !== null) {
      result['loads_interval'] = new PyFloat(o.loadsInterval!);
      result['loads_timeline'] = loads;
    }
    if (o.outputDetails) Object.assign(result, buildDetails(outputs, outputLens));
    const outputFile =
      o.outputFile ??
      defaultOutputFile(
        o.backend,
        o.datasetName,
        o.numPrompts,
        o.randomInputLen,
        o.randomOutputLen,
        (deps.now ?? (() => new Date()))(),
      );
    const line = pyJsonDumps(result);
    await appendFile(outputFile, `${line}\n`);
    return {
      result,
      line,
      metrics,
      outputs,
      rows,
      table,
      outputFile,
      tokenizerSource: tok.source,
      loads,
    };
  } finally {
    client.close();
  }
}

function acceptLengthOf(info: unknown): number | null {
  if (typeof info !== 'object' || info === null) return null;
  let i = info as Record<string, unknown>;
  const decode = i['decode'];
  if (Array.isArray(decode) && typeof decode[0] === 'object' && decode[0] !== null)
    i = decode[0] as Record<string, unknown>;
  const states = i['internal_states'];
  if (!Array.isArray(states) || states.length === 0) return null;
  const v = (states[0] as Record<string, unknown> | null)?.['avg_spec_accept_length'];
  return typeof v === 'number' ? v : null;
}

async function waitForEndpoint(
  client: HttpClient,
  url: string,
  timeoutSec: number,
  clock: Clock,
  sleep: (ms: number) => Promise<void>,
  log: (line: string) => void,
): Promise<void> {
  log(`Waiting up to ${timeoutSec}s for ${url} to become ready...`);
  const t0 = clock.nowMs();
  for (;;) {
    try {
      const r = await client.text('GET', url, { timeoutMs: 5000 });
      if (r.status === 200) {
        log(`Server ready in ${((clock.nowMs() - t0) / 1000).toFixed(1)}s.`);
        return;
      }
    } catch {
      // not up yet
    }
    if (clock.nowMs() - t0 >= timeoutSec * 1000) {
      throw new TsinferError('TSI_ERR_BENCH_SERVER', `Server at ${url} is not ready within ${timeoutSec}s.`);
    }
    await sleep(1000);
  }
}
