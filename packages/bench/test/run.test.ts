/**
 * runBench end to end over real HTTP against the TEST FIXTURE server in
 * fixture-openai-server.ts (not the tsinfer server; see live-server.test.ts
 * for that).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { ManualClock, TsinferError } from '@tsinfer/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RESULT_KEYS } from '../src/format.js';
import { parsePyJson } from '../src/pyformat.js';
import { type BenchOptions, DEFAULT_BENCH_OPTIONS, runBench } from '../src/run.js';
import { type Fixture, startFixture } from './fixture-openai-server.js';

const tokenizerCacheDir = join(tmpdir(), 'tsinfer-bench-test-tokenizer');
let dir: string;
let fx: Fixture | null = null;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bench-run-'));
});
afterEach(async () => {
  await fx?.close();
  fx = null;
});

function opts(p: Partial<BenchOptions>): BenchOptions {
  return { ...DEFAULT_BENCH_OPTIONS, disableTqdm: true, readyCheckTimeoutSec: 5, ...p };
}

async function bench(p: Partial<BenchOptions>) {
  const log: string[] = [];
  const r = await runBench(opts(p), {
    log: (l) => log.push(l),
    warmupPauseMs: 0,
    tokenizerCacheDir,
    env: {},
  });
  return { ...r, log };
}

describe('runBench against the fixture server', () => {
  it('vllm backend, random-ids: full table, exact token totals, concurrency cap, clock after the gate', async () => {
    fx = await startFixture({ tokenDelayMs: 4 });
    const outputFile = join(dir, 'vllm.jsonl');
    const r = await bench({
      backend: 'vllm',
      baseUrl: fx.url,
      datasetName: 'random-ids',
      numPrompts: 12,
      randomInputLen: 32,
      randomOutputLen: 6,
      randomRangeRatio: 1,
      maxConcurrency: 3,
      outputFile,
    });
    expect(r.metrics.completed).toBe(12);
    expect(r.metrics.totalOutput).toBe(72);
    expect(r.metrics.totalInput).toBe(12 * 31); // BOS removed from each text prompt
    expect(r.metrics.totalOutputRetokenized).toBeGreaterThan(0);
    // Warm-up (1) + 12 measured requests; never more than 3 in flight.
    expect(fx.stats.posts).toBe(13);
    expect(fx.stats.maxInFlight).toBeLessThanOrEqual(3);
    expect(fx.stats.bodies[1]).toMatchObject({
      model: 'fixture-model',
      max_tokens: 6,
      ignore_eos: true,
      best_of: 1,
    });
    expect(fx.stats.bodies[0]).toMatchObject({ max_tokens: 6 }); // warm-up output capped at min(len, 32)
    // ITL: 5 gaps per request, TPOT over 5 tokens.
    for (const o of r.outputs) {
      expect(o.itl).toHaveLength(5);
      expect(o.outputLen).toBe(6);
    }
    // The per-request clock starts after the semaphore: at most 3 requests are ever being
    // timed, so Σ latency ≤ 3 · duration (Little's law). Timing from before the gate would
    // count queueing: 4 waves of 3 would give Σ latency ≈ 7.5 · duration.
    expect(r.metrics.concurrency).toBeLessThanOrEqual(3 + 1e-9);
    expect(r.metrics.concurrency).toBeGreaterThan(1);
    // The table is printed whole.
    const tableStart = r.log.indexOf('============ Serving Benchmark Result ============');
    expect(tableStart).toBeGreaterThan(0);
    expect(r.log.slice(tableStart - 1)).toEqual(r.table);
    expect(r.log.at(-1)).toBe('='.repeat(50));
    expect(r.table.find((l) => l.startsWith('Max request concurrency:'))).toContain(' 3 ');
    expect(r.table.find((l) => l.startsWith('Successful requests:'))).toContain(' 12 ');
    // One JSONL line per run, appended.
    await bench({
      backend: 'vllm',
      baseUrl: fx.url,
      datasetName: 'random-ids',
      numPrompts: 2,
      randomInputLen: 8,
      randomOutputLen: 2,
      outputFile,
      tag: 'second',
    });
    const lines = readFileSync(outputFile, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
    const first = parsePyJson(lines[0]!) as Record<string, unknown>;
    expect(Object.keys(first)).toEqual([...RESULT_KEYS]);
    expect(first['completed']).toBe(12);
    expect(first['request_rate']).toBe(Number.POSITIVE_INFINITY);
    expect(first['server_info']).toEqual({ fixture: true, internal_states: [{}] });
    expect((parsePyJson(lines[1]!) as Record<string, unknown>)['tag']).toBe('second');
  });

  it('sglang native /generate with the shipped ShareGPT sample, --output-details and --loads-interval', async () => {
    fx = await startFixture({ tokenDelayMs: 3 });
    const outputFile = join(dir, 'sglang.jsonl');
    const r = await bench({
      backend: 'sglang',
      baseUrl: fx.url,
      numPrompts: 5,
      sharegptOutputLen: 8,
      requestRate: 200,
      outputFile,
      outputDetails: true,
      loadsInterval: 0.005,
    });
    expect(r.log.some((l) => l.includes('sharegpt-small.json'))).toBe(true);
    expect(r.log.some((l) => l.startsWith('Tokenizer: the built-in tiny model tokenizer'))).toBe(true);
    expect(r.metrics.completed).toBe(5);
    expect(r.metrics.totalOutput).toBe(40);
    // 8 tokens in 4 events of 2: the first event is the TTFT; each later gap is split over its 2 tokens → 6 ITLs.
    for (const o of r.outputs) expect(o.itl).toHaveLength(6);
    expect(fx.stats.bodies[1]).toMatchObject({
      sampling_params: { max_new_tokens: 8, ignore_eos: true, temperature: 0 },
      stream: true,
    });
    const line = parsePyJson(readFileSync(outputFile, 'utf8').trim()) as Record<string, unknown>;
    expect(line['request_rate']).toBe(200);
    expect((line['ttfts'] as number[]).length).toBe(5);
    expect((line['itls'] as number[][])[0]).toHaveLength(6);
    expect(line['input_lens']).toEqual([3, 3, 3, 3, 3]); // server prompt_tokens replace dataset lengths in details
    expect(line['total_input_tokens']).toBe(r.rows.reduce((a, x) => a + x.promptLen, 0)); // totals keep dataset lengths
    const tl = line['loads_timeline'] as Array<{ t: number; loads: Array<{ dp_rank: number }> }>;
    expect(tl.length).toBeGreaterThan(0);
    expect(tl[0]!.loads.map((l) => l.dp_rank)).toEqual([0, 1]);
  });

  it('chat backend: a failed request is excluded from the metrics and its error kept', async () => {
    fx = await startFixture({ fail: (n) => n === 2 });
    const r = await bench({
      backend: 'sglang-oai-chat',
      baseUrl: fx.url,
      datasetName: 'random',
      numPrompts: 4,
      randomInputLen: 16,
      randomOutputLen: 5,
      randomRangeRatio: 1,
      extraRequestBody: { stream_options: { include_usage: true } },
      outputFile: join(dir, 'chat.jsonl'),
      outputDetails: true,
    });
    expect(r.metrics.completed).toBe(3);
    expect(r.metrics.totalOutput).toBe(15);
    const failed = r.outputs.filter((o) => !o.success);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.error).toMatch(/^Internal Server Error: .*fixture failure #2/);
    expect(r.result['errors']).toContain(failed[0]!.error);
    expect(r.log).toContain(`1 of 4 requests failed; first error: ${failed[0]!.error.split('\n')[0]}`);
    expect(fx.stats.bodies[1]).toMatchObject({
      max_completion_tokens: 5,
      stream_options: { include_usage: true },
    });
  });

  it('--disable-stream: TTFT equals the latency', async () => {
    fx = await startFixture({ tokenDelayMs: 1 });
    const r = await bench({
      backend: 'sglang-oai',
      baseUrl: fx.url,
      datasetName: 'random-ids',
      numPrompts: 3,
      randomInputLen: 8,
      randomOutputLen: 4,
      randomRangeRatio: 1,
      disableStream: true,
      outputFile: join(dir, 'nostream.jsonl'),
    });
    expect(r.metrics.completed).toBe(3);
    for (const o of r.outputs) {
      expect(o.ttft).toBe(o.latency);
      expect(o.itl).toEqual([]);
    }
  });

  it('--request-rate: one exponential gap after each request, seeded (sleep injected, nothing waits)', async () => {
    fx = await startFixture();
    const run = async (seed: number) => {
      const sleeps: number[] = [];
      await runBench(
        opts({
          backend: 'vllm',
          baseUrl: fx!.url,
          datasetName: 'random-ids',
          numPrompts: 300,
          randomInputLen: 4,
          randomOutputLen: 1,
          requestRate: 10,
          warmupRequests: 0,
          seed,
          outputFile: join(dir, 'rate.jsonl'),
        }),
        { log: () => {}, sleep: async (ms) => void sleeps.push(ms), tokenizerCacheDir, env: {} },
      );
      return sleeps;
    };
    const a = await run(1);
    expect(a).toHaveLength(300); // bench_serving also sleeps after the last request
    const mean = a.reduce((x, y) => x + y, 0) / a.length;
    expect(mean).toBeGreaterThan(80); // 1/rate = 100 ms; ±20 % at n = 300 is > 3 standard errors
    expect(mean).toBeLessThan(120);
    expect(await run(1)).toEqual(a);
    expect(await run(2)).not.toEqual(a);
  });

  it('draws a progress bar on a terminal, none with --disable-tqdm', async () => {
    fx = await startFixture();
    const drawn = async (disableTqdm: boolean): Promise<string> => {
      let text = '';
      const tty = new Writable({
        write(chunk, _enc, cb) {
          text += String(chunk);
          cb();
        },
      }) as Writable & { isTTY: boolean; columns: number };
      tty.isTTY = true;
      tty.columns = 120;
      await runBench(
        opts({
          backend: 'vllm',
          baseUrl: fx!.url,
          datasetName: 'random-ids',
          numPrompts: 3,
          randomInputLen: 4,
          randomOutputLen: 2,
          warmupRequests: 0,
          disableTqdm,
          outputFile: join(dir, 'bar.jsonl'),
        }),
        { log: () => {}, progressStream: tty as unknown as NodeJS.WriteStream, tokenizerCacheDir, env: {} },
      );
      return text;
    };
    expect(await drawn(false)).toContain('3/3');
    expect(await drawn(true)).toBe('');
  });

  it('fails with TSI_ERR_BENCH_SERVER when every warm-up request fails', async () => {
    fx = await startFixture({ fail: () => true });
    await expect(
      bench({
        backend: 'vllm',
        baseUrl: fx.url,
        datasetName: 'random-ids',
        numPrompts: 2,
        randomInputLen: 4,
        randomOutputLen: 2,
        outputFile: join(dir, 'x.jsonl'),
      }),
    ).rejects.toMatchObject({
      code: 'TSI_ERR_BENCH_SERVER',
      message: expect.stringMatching(/^Warmup failed/),
    });
  });

  it('gives up the ready check after --ready-check-timeout-sec (clock and sleep injected)', async () => {
    const clock = new ManualClock(0);
    const sleeps: number[] = [];
    const err = await runBench(
      opts({ backend: 'sglang', baseUrl: 'http://127.0.0.1:9', readyCheckTimeoutSec: 3 }),
      {
        clock,
        sleep: async (ms) => {
          sleeps.push(ms);
          clock.advance(ms);
        },
        log: () => {},
        env: {},
      },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TsinferError);
    expect((err as TsinferError).code).toBe('TSI_ERR_BENCH_SERVER');
    expect(sleeps).toEqual([1000, 1000, 1000]);
  });
});
