import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidConfigError } from '@tsinfer/core';
import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type BenchFlags, parseBenchFlags, registerBench } from '../src/cli.js';
import { parsePyJson } from '../src/pyformat.js';
import { DEFAULT_BENCH_OPTIONS } from '../src/run.js';
import { type Fixture, startFixture } from './fixture-openai-server.js';

function program(): Command {
  const p = new Command('tsinfer').exitOverride();
  registerBench(p);
  return p;
}

let fx: Fixture | null = null;
afterEach(async () => {
  vi.restoreAllMocks();
  await fx?.close();
  fx = null;
});

describe('tsinfer bench (commander)', () => {
  it('has bench_serving’s defaults', async () => {
    let seen: BenchFlags | null = null;
    const p = new Command('tsinfer').exitOverride();
    const bench = registerBench(p);
    bench.action((flags: BenchFlags) => {
      seen = flags;
    });
    await p.parseAsync(['node', 'tsinfer', 'bench']);
    const o = parseBenchFlags(seen!);
    expect(o).toMatchObject({
      backend: 'sglang',
      host: '0.0.0.0',
      port: undefined,
      datasetName: 'sharegpt',
      datasetPath: '',
      numPrompts: 1000,
      randomInputLen: 1024,
      randomOutputLen: 1024,
      randomRangeRatio: 0,
      requestRate: Number.POSITIVE_INFINITY,
      maxConcurrency: undefined,
      seed: 42,
      warmupRequests: 1,
      readyCheckTimeoutSec: 60,
      temperature: 0,
      topP: 1,
      disableStream: false,
      disableIgnoreEos: false,
      outputDetails: false,
    });
    expect(o).toEqual({ ...DEFAULT_BENCH_OPTIONS, ...o });
  });

  it('validates flags with TSI_ERR_INVALID_CONFIG naming the flag', () => {
    const flags = (p: Partial<BenchFlags>): BenchFlags => ({
      backend: 'sglang',
      host: '0.0.0.0',
      datasetName: 'sharegpt',
      datasetPath: '',
      numPrompts: '10',
      randomInputLen: '1',
      randomOutputLen: '1',
      randomRangeRatio: '0',
      requestRate: 'inf',
      seed: '42',
      temperature: '0',
      topP: '1',
      warmupRequests: '1',
      readyCheckTimeoutSec: '0',
      ...p,
    });
    const cases: Array<[Partial<BenchFlags>, string]> = [
      [{ backend: 'trt' }, '--backend'],
      [{ datasetName: 'mooncake' }, '--dataset-name'],
      [{ numPrompts: '0' }, '--num-prompts'],
      [{ maxConcurrency: '1.5' }, '--max-concurrency'],
      [{ requestRate: 'fast' }, '--request-rate'],
      [{ extraRequestBody: '[1]' }, '--extra-request-body'],
      [{ header: ['NoEquals'] }, '--header'],
    ];
    for (const [p, flag] of cases) {
      try {
        parseBenchFlags(flags(p));
        expect.unreachable(flag);
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidConfigError);
        expect((err as InvalidConfigError).flag).toBe(flag);
      }
    }
    expect(parseBenchFlags(flags({ header: ['X-A=1', 'X-B = two'] })).headers).toEqual({
      'X-A': '1',
      'X-B': 'two',
    });
  });

  it('runs a benchmark end to end and prints the table', async () => {
    fx = await startFixture();
    const dir = await mkdtemp(join(tmpdir(), 'bench-cli-'));
    const out = join(dir, 'runs.jsonl');
    const printed: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => {
      printed.push(a.join(' '));
    });
    await program().parseAsync([
      'node',
      'tsinfer',
      'bench',
      '--backend',
      'vllm',
      '--port',
      String(fx.port),
      '--host',
      '127.0.0.1',
      '--dataset-name',
      'random-ids',
      '--num-prompts',
      '4',
      '--random-input-len',
      '16',
      '--random-output-len',
      '3',
      '--warmup-requests',
      '0',
      '--output-file',
      out,
      '--disable-tqdm',
    ]);
    expect(printed).toContain('============ Serving Benchmark Result ============');
    expect(printed.some((l) => /^Successful requests:\s+\d+/.test(l))).toBe(true);
    const line = parsePyJson(readFileSync(out, 'utf8').trim()) as Record<string, unknown>;
    expect(line['backend']).toBe('vllm');
    expect(line['random_range_ratio']).toBe(0);
    expect(line['completed']).toBe(4);
  });

  it('bench report <files> --out <dir> writes index.html', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-cli-'));
    const f = join(dir, 'a.jsonl');
    writeFileSync(
      f,
      '{"tag": "t", "completed": 3, "concurrency": 1.5, "output_throughput": 10.0, "median_ttft_ms": 4.0}\n',
    );
    vi.spyOn(console, 'log').mockImplementation(() => {});
    await program().parseAsync(['node', 'tsinfer', 'bench', 'report', f, '--out', join(dir, 'rep')]);
    const html = readFileSync(join(dir, 'rep', 'index.html'), 'utf8');
    expect(html).toContain('<svg');
    expect(existsSync(join(dir, 'rep', 'index.html'))).toBe(true);
  });
});
