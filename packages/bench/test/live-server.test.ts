/**
 * The bench against a real `tsinfer serve` process on a simulated model
 * (`--model-path sim:tiny-cpu`): the full table prints, and token counts
 * agree with what the server reports. Runs when the server package's HTTP
 * layer exists (packages/server/src/http); the server is started as a child
 * process through tsx, so the bench does not depend on the server package.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BenchOptions, DEFAULT_BENCH_OPTIONS, runBench } from '../src/run.js';
import { ByteTokenizer } from '../src/tokenizer.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const serverMain = join(root, 'packages/server/src/cli/main.ts');
const hasServer = existsSync(join(root, 'packages/server/src/http')) && existsSync(serverMain);

describe.runIf(hasServer)('bench against a live tsinfer server (sim:tiny-cpu)', () => {
  let child: ChildProcess;
  let url = '';
  let dir = '';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-live-'));
    child = spawn(
      process.execPath,
      [
        '--conditions=@tsinfer/source',
        '--import',
        'tsx',
        serverMain,
        'serve',
        '--model-path',
        'sim:tiny-cpu',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start in 60 s:\n${output}`)), 60_000);
      const onData = (b: Buffer): void => {
        output += b.toString();
        const m = / on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code}:\n${output}`));
      });
    });
  }, 90_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });

  const opts = (p: Partial<BenchOptions>): BenchOptions => ({
    ...DEFAULT_BENCH_OPTIONS,
    baseUrl: url,
    disableTqdm: true,
    readyCheckTimeoutSec: 30,
    ...p,
  });

  for (const backend of ['sglang-oai', 'sglang', 'sglang-oai-chat'] as const) {
    it(`${backend}: full table, exact token counts`, async () => {
      const log: string[] = [];
      const r = await runBench(
        opts({
          backend,
          datasetName: 'random',
          numPrompts: 16,
          randomInputLen: 64,
          randomOutputLen: 12,
          randomRangeRatio: 1,
          maxConcurrency: 4,
          outputDetails: true,
          loadsInterval: 0.05,
          outputFile: join(dir, `${backend}.jsonl`),
        }),
        { log: (l) => log.push(l), warmupPauseMs: 0 },
      );
      expect(log.some((l) => l.includes('byte tokenizer'))).toBe(true);
      expect(r.metrics.completed).toBe(16);
      expect(r.metrics.totalInput).toBe(16 * 64);
      expect(r.metrics.totalOutput).toBe(16 * 12); // the server's completion_tokens
      if (backend !== 'sglang-oai-chat') {
        // The server counts the prompt exactly as the bench did.
        expect(r.result['input_lens']).toEqual(new Array(16).fill(64));
      }
      for (const o of r.outputs) expect(o.ttft).toBeGreaterThan(0);
      const start = log.indexOf('============ Serving Benchmark Result ============');
      expect(start).toBeGreaterThan(0);
      expect(log.slice(start - 1)).toEqual(r.table);
      expect(r.table).toHaveLength(44);
      expect(r.table[2]).toBe(`${'Backend:'.padEnd(40)} ${backend.padEnd(10)}`);
      expect(r.loads!.length).toBeGreaterThan(0);
      expect(r.loads![0]!.loads[0]!.dp_rank).toBe(0);
      expect((r.result['server_info'] as Record<string, unknown>)['model_path']).toBe('sim:tiny-cpu');
    });
  }

  it('the byte tokenizer matches the server’s prompt count for ShareGPT text', async () => {
    const r = await runBench(
      opts({
        backend: 'sglang-oai',
        numPrompts: 8,
        sharegptOutputLen: 8,
        sharegptContextLen: 2000,
        outputDetails: true,
        outputFile: join(dir, 'sharegpt.jsonl'),
      }),
      { log: () => {}, warmupPauseMs: 0 },
    );
    expect(r.metrics.completed).toBe(8);
    const bt = new ByteTokenizer();
    expect(r.result['input_lens']).toEqual(r.rows.map((x) => bt.encode(x.prompt as string).length));
  });
});
