import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TsinferError } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { PyFloat, pyJsonDumps } from '../src/pyformat.js';
import { buildCharts, ecdf, readRuns, writeReport } from '../src/report.js';

function run(tag: string, conc: number, tput: number, extra: Record<string, unknown> = {}): string {
  return pyJsonDumps({
    tag,
    backend: 'sglang-oai',
    dataset_name: 'random',
    request_rate: new PyFloat(Number.POSITIVE_INFINITY),
    max_concurrency: conc,
    completed: 10,
    duration: new PyFloat(2),
    request_throughput: 5.0,
    output_throughput: tput,
    concurrency: conc * 0.9,
    median_ttft_ms: 10 * conc,
    p90_ttft_ms: 12 * conc,
    p95_ttft_ms: 13 * conc,
    p99_ttft_ms: 15 * conc,
    median_itl_ms: 2.5,
    p90_itl_ms: 3,
    p95_itl_ms: 3.5,
    p99_itl_ms: 5,
    ...extra,
  });
}

describe('bench report', () => {
  it('writes index.html with inline SVG charts: throughput, latency, TTFT/ITL CDFs, per-rank load', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-report-'));
    const a = join(dir, 'sweep.jsonl');
    writeFileSync(
      a,
      [
        run('dp2', 1, 100),
        run('dp2', 4, 350, {
          ttfts: [0.01, 0.02, 0.03, 0],
          itls: [[0.002, 0.003], [0.004], [], []],
          errors: ['', '', '', 'Internal Server Error: x'],
          loads_interval: 0.5,
          loads_timeline: [
            {
              t: 0,
              loads: [
                { dp_rank: 0, num_running_reqs: 2, num_waiting_reqs: 1 },
                { dp_rank: 1, num_running_reqs: 2, num_waiting_reqs: 0 },
              ],
            },
            {
              t: 0.5,
              loads: [
                { dp_rank: 0, num_running_reqs: 1, num_waiting_reqs: 0 },
                { dp_rank: 1, num_running_reqs: 3, num_waiting_reqs: 0 },
              ],
            },
          ],
        }),
        '',
      ].join('\n'),
    );
    const b = join(dir, 'other.jsonl');
    writeFileSync(b, `${run('dp1', 2, 180)}\n`);
    const out = join(dir, 'report');
    const r = await writeReport([a, b], out);
    expect(r).toEqual({ path: join(out, 'index.html'), runs: 3, charts: 5 });
    const html = readFileSync(r.path, 'utf8');
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html.match(/<svg /g)?.length).toBe(5);
    for (const t of [
      'Output token throughput against concurrency',
      'Latency against concurrency',
      'TTFT distribution (CDF)',
      'ITL distribution (CDF)',
      'Per-rank load over time — dp2 c=4',
    ])
      expect(html).toContain(t);
    // Axis titles rendered as SVG text.
    expect(html).toContain('output tokens/s');
    expect(html).toContain('rank 1');
    // Summary table: one row per run.
    expect(html.match(/<tr><td>/g)?.length).toBe(3);
  });

  it('labels runs by tag, concurrency and rate and reads Python Infinity', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-report-'));
    const f = join(dir, 'r.jsonl');
    writeFileSync(
      f,
      `${run('x', 8, 1)}\n${pyJsonDumps({ completed: 1, tag: null, request_rate: 2.0, max_concurrency: null })}\n`,
    );
    const runs = await readRuns([f]);
    expect(runs.map((x) => x.label)).toEqual(['x c=8', 'r rate=2']);
    expect(runs[0]!.data['request_rate']).toBe(Number.POSITIVE_INFINITY);
    // Without per-request arrays the CDFs fall back to P50/P90/P95/P99 points.
    const ttft = buildCharts(runs).find((c) => c.title.startsWith('TTFT'))!;
    expect((ttft.spec as { data: { values: unknown[] } }).data.values).toHaveLength(4);
  });

  it('rejects a line that is not a result, naming the file and line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-report-'));
    const f = join(dir, 'bad.jsonl');
    writeFileSync(f, `${run('x', 1, 1)}\n{"hello": 1}\n`);
    const err = await writeReport([f], join(dir, 'o')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TsinferError);
    expect((err as TsinferError).code).toBe('TSI_ERR_BENCH_REPORT_INPUT');
    expect((err as Error).message).toContain(`${f}:2`);
    expect(existsSync(join(dir, 'o', 'index.html'))).toBe(false);
  });

  it('ecdf samples at most maxPoints points ending at 1', () => {
    const pts = ecdf(
      Array.from({ length: 1000 }, (_, i) => 1000 - i),
      50,
    );
    expect(pts).toHaveLength(50);
    expect(pts[0]).toEqual({ value: 1, p: 0.001 });
    expect(pts.at(-1)).toEqual({ value: 1000, p: 1 });
    for (let i = 1; i < pts.length; i++) expect(pts[i]!.value).toBeGreaterThanOrEqual(pts[i - 1]!.value);
  });
});
