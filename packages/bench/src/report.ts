/**
 * `tsinfer bench report`: reads JSONL result lines (ours or bench_serving's)
 * and writes one self-contained HTML page with inline SVG charts rendered
 * headless by vega-lite → vega (`renderer: 'none'`, `toSVG()`).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { TsinferError } from '@tsinfer/core';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import { parsePyJson } from './pyformat.js';

/** One JSONL line with where it came from. */
export interface RunRecord {
  file: string;
  line: number;
  label: string;
  data: Record<string, unknown>;
}

export async function readRuns(files: readonly string[]): Promise<RunRecord[]> {
  const runs: RunRecord[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new TsinferError(
        'TSI_ERR_BENCH_REPORT_INPUT',
        `${file}: cannot read: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    const lines = text.split('\n');
    const fileRuns: RunRecord[] = [];
    lines.forEach((raw, i) => {
      if (raw.trim() === '') return;
      let data: unknown;
      try {
        data = parsePyJson(raw);
      } catch (err) {
        throw new TsinferError(
          'TSI_ERR_BENCH_REPORT_INPUT',
          `${file}:${i + 1}: not JSON: ${(err as Error).message}`,
        );
      }
      if (typeof data !== 'object' || data === null || Array.isArray(data) || !('completed' in data)) {
        throw new TsinferError(
          'TSI_ERR_BENCH_REPORT_INPUT',
          `${file}:${i + 1}: not a bench result line (a JSON object with "completed", "duration", ...)`,
        );
      }
      fileRuns.push({ file, line: i + 1, label: '', data: data as Record<string, unknown> });
    });
    for (const r of fileRuns) {
      const tag = typeof r.data['tag'] === 'string' ? (r.data['tag'] as string) : basename(file, '.jsonl');
      const mc = r.data['max_concurrency'];
      const rate = num(r.data['request_rate']);
      const parts = [tag];
      if (mc !== null && mc !== undefined) parts.push(`c=${String(mc)}`);
      if (rate !== null && Number.isFinite(rate)) parts.push(`rate=${rate}`);
      if (parts.length === 1 && fileRuns.length > 1) parts.push(`#${r.line}`);
      r.label = parts.join(' ');
    }
    runs.push(...fileRuns);
  }
  // Make labels unique.
  const seen = new Map<string, number>();
  for (const r of runs) {
    const n = seen.get(r.label) ?? 0;
    seen.set(r.label, n + 1);
    if (n > 0) r.label = `${r.label} (${n + 1})`;
  }
  return runs;
}

function num(v: unknown): number | null {
  return typeof v === 'number' ? v : null;
}

function series(r: RunRecord): string {
  return typeof r.data['tag'] === 'string' ? (r.data['tag'] as string) : basename(r.file, '.jsonl');
}

/** Evenly spaced points of the empirical CDF (at most `maxPoints`). */
export function ecdf(values: readonly number[], maxPoints = 400): Array<{ value: number; p: number }> {
  const a = [...values].filter(Number.isFinite).sort((x, y) => x - y);
  const n = a.length;
  if (n === 0) return [];
  const m = Math.min(n, maxPoints);
  const out: Array<{ value: number; p: number }> = [];
  for (let k = 0; k < m; k++) {
    const idx = m === 1 ? n - 1 : Math.round((k * (n - 1)) / (m - 1));
    out.push({ value: a[idx]!, p: (idx + 1) / n });
  }
  return out;
}

export interface Chart {
  title: string;
  note: string;
  spec: vl.TopLevelSpec;
}

const AXIS_W = 560;
const AXIS_H = 300;

function distributionChart(runs: readonly RunRecord[], what: 'ttft' | 'itl'): Chart | null {
  const rows: Array<{ run: string; value: number; p: number }> = [];
  let exact = 0;
  for (const r of runs) {
    const key = what === 'ttft' ? 'ttfts' : 'itls';
    const raw = r.data[key];
    if (Array.isArray(raw)) {
      const flat = (what === 'itl' ? (raw as unknown[]).flat() : raw) as unknown[];
      const vals = flat.filter((v): v is number => typeof v === 'number').map((s) => s * 1000);
      if (what === 'ttft') {
        // Failed requests have ttft 0; keep successful ones only (errors is parallel).
        const errs = r.data['errors'];
        const keep = Array.isArray(errs) ? vals.filter((_, i) => !errs[i]) : vals;
        for (const pt of ecdf(keep)) rows.push({ run: r.label, ...pt });
      } else for (const pt of ecdf(vals)) rows.push({ run: r.label, ...pt });
      exact++;
      continue;
    }
    for (const [p, k] of [
      [0.5, 'median'],
      [0.9, 'p90'],
      [0.95, 'p95'],
      [0.99, 'p99'],
    ] as const) {
      const v = num(r.data[`${k}_${what}_ms`]);
      if (v !== null) rows.push({ run: r.label, value: v, p });
    }
  }
  if (rows.length === 0) return null;
  const name = what === 'ttft' ? 'TTFT' : 'ITL';
  return {
    title: `${name} distribution (CDF)`,
    note:
      exact === runs.length
        ? `Empirical CDF of per-request ${name}s (from --output-details).`
        : `Runs written with --output-details show the empirical CDF; the others show their P50/P90/P95/P99 points only.`,
    spec: {
      width: AXIS_W,
      height: AXIS_H,
      data: { values: rows },
      mark: { type: 'line', point: rows.length < 200, interpolate: 'step-after' },
      encoding: {
        x: { field: 'value', type: 'quantitative', title: `${name} (ms)`, scale: { zero: true } },
        y: { field: 'p', type: 'quantitative', title: 'fraction ≤ x', scale: { domain: [0, 1] } },
        color: { field: 'run', type: 'nominal', title: 'run' },
      },
    },
  };
}

export function buildCharts(runs: readonly RunRecord[]): Chart[] {
  const charts: Chart[] = [];
  const tp = runs
    .map((r) => ({
      series: series(r),
      run: r.label,
      concurrency: num(r.data['concurrency']),
      output_throughput: num(r.data['output_throughput']),
      median_ttft_ms: num(r.data['median_ttft_ms']),
      p99_ttft_ms: num(r.data['p99_ttft_ms']),
      median_itl_ms: num(r.data['median_itl_ms']),
    }))
    .filter((x) => x.concurrency !== null && x.output_throughput !== null)
    .sort((a, b) => a.concurrency! - b.concurrency!);
  if (tp.length > 0) {
    charts.push({
      title: 'Output token throughput against concurrency',
      note: 'Concurrency is the measured mean number of requests in flight (Σ E2E latency / duration); one line per tag (or file).',
      spec: {
        width: AXIS_W,
        height: AXIS_H,
        data: { values: tp },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'concurrency', type: 'quantitative', title: 'concurrency (mean requests in flight)' },
          y: { field: 'output_throughput', type: 'quantitative', title: 'output tokens/s' },
          color: { field: 'series', type: 'nominal', title: 'series' },
          tooltip: [{ field: 'run' }, { field: 'output_throughput' }, { field: 'concurrency' }],
        },
      },
    });
    const lat = tp
      .flatMap((x) => [
        { series: x.series, concurrency: x.concurrency, metric: 'median TTFT', ms: x.median_ttft_ms },
        { series: x.series, concurrency: x.concurrency, metric: 'P99 TTFT', ms: x.p99_ttft_ms },
        { series: x.series, concurrency: x.concurrency, metric: 'median ITL', ms: x.median_itl_ms },
      ])
      .filter((x) => x.ms !== null);
    charts.push({
      title: 'Latency against concurrency',
      note: 'Median and P99 time to first token, median inter-token latency.',
      spec: {
        width: AXIS_W,
        height: AXIS_H,
        data: { values: lat },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'concurrency', type: 'quantitative', title: 'concurrency (mean requests in flight)' },
          y: { field: 'ms', type: 'quantitative', title: 'ms' },
          color: { field: 'metric', type: 'nominal', title: 'metric' },
          strokeDash: { field: 'series', type: 'nominal', title: 'series' },
        },
      },
    });
  }
  const ttft = distributionChart(runs, 'ttft');
  if (ttft) charts.push(ttft);
  const itl = distributionChart(runs, 'itl');
  if (itl) charts.push(itl);
  for (const r of runs) {
    const tl = r.data['loads_timeline'];
    if (!Array.isArray(tl) || tl.length === 0) continue;
    const rows: Array<{ t: number; rank: string; requests: number; kind: string }> = [];
    for (const s of tl as Array<{ t?: unknown; loads?: unknown }>) {
      if (typeof s.t !== 'number' || !Array.isArray(s.loads)) continue;
      for (const l of s.loads as Array<Record<string, unknown>>) {
        const rank = `rank ${String(l['dp_rank'])}`;
        rows.push({ t: s.t, rank, requests: num(l['num_running_reqs']) ?? 0, kind: 'running' });
        rows.push({ t: s.t, rank, requests: num(l['num_waiting_reqs']) ?? 0, kind: 'waiting' });
      }
    }
    if (rows.length === 0) continue;
    charts.push({
      title: `Per-rank load over time — ${r.label}`,
      note: 'GET /v1/loads sampled during the run (--loads-interval): running (solid) and waiting (dashed) requests per data-parallel rank.',
      spec: {
        width: AXIS_W,
        height: AXIS_H,
        data: { values: rows },
        mark: { type: 'line', interpolate: 'step-after' },
        encoding: {
          x: { field: 't', type: 'quantitative', title: 'seconds since the run started' },
          y: { field: 'requests', type: 'quantitative', title: 'requests' },
          color: { field: 'rank', type: 'nominal', title: 'rank' },
          strokeDash: { field: 'kind', type: 'nominal', title: '' },
        },
      },
    });
  }
  return charts;
}

/** Renders a vega-lite spec to an SVG string, headless. */
export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function cell(v: unknown, digits = 2): string {
  if (typeof v === 'number')
    return Number.isInteger(v) ? String(v) : Number.isFinite(v) ? v.toFixed(digits) : String(v);
  if (v === null || v === undefined) return '';
  return esc(String(v));
}

const TABLE_COLUMNS: Array<[string, string]> = [
  ['backend', 'backend'],
  ['dataset_name', 'dataset'],
  ['request_rate', 'rate'],
  ['max_concurrency', 'max conc.'],
  ['completed', 'ok'],
  ['duration', 'duration (s)'],
  ['request_throughput', 'req/s'],
  ['output_throughput', 'out tok/s'],
  ['total_throughput', 'total tok/s'],
  ['concurrency', 'concurrency'],
  ['median_ttft_ms', 'median TTFT'],
  ['p99_ttft_ms', 'P99 TTFT'],
  ['median_tpot_ms', 'median TPOT'],
  ['median_itl_ms', 'median ITL'],
  ['p99_itl_ms', 'P99 ITL'],
  ['median_e2e_latency_ms', 'median E2E'],
];

export async function buildReportHtml(
  runs: readonly RunRecord[],
  title = 'tsinfer bench report',
): Promise<{ html: string; charts: number }> {
  const charts = buildCharts(runs);
  const sections: string[] = [];
  for (const c of charts) {
    const svg = await renderSvg({
      $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
      ...c.spec,
    } as vl.TopLevelSpec);
    sections.push(`<section><h2>${esc(c.title)}</h2><p class="note">${esc(c.note)}</p>${svg}</section>`);
  }
  const head = `<tr><th>run</th>${TABLE_COLUMNS.map(([, h]) => `<th>${esc(h)}</th>`).join('')}</tr>`;
  const body = runs
    .map(
      (r) =>
        `<tr><td>${esc(r.label)}</td>${TABLE_COLUMNS.map(([k]) => `<td>${cell(r.data[k])}</td>`).join('')}</tr>`,
    )
    .join('\n');
  const sources = [...new Set(runs.map((r) => r.file))]
    .map((f) => `<li><code>${esc(f)}</code></li>`)
    .join('');
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
section { margin: 2rem 0; }
.note { color: #555; font-size: 0.9rem; }
</style>
</head>
<body>
<h1>${esc(title)}</h1>
<p class="note">${runs.length} run(s) from:</p><ul>${sources}</ul>
<h2>Summary (latencies in ms)</h2>
<table>
${head}
${body}
</table>
${sections.join('\n')}
</body>
</html>
`;
  return { html, charts: charts.length };
}

/** Reads the JSONL files and writes `<outDir>/index.html`. */
export async function writeReport(
  files: readonly string[],
  outDir: string,
  options: { title?: string } = {},
): Promise<{ path: string; runs: number; charts: number }> {
  const runs = await readRuns(files);
  if (runs.length === 0) {
    throw new TsinferError('TSI_ERR_BENCH_REPORT_INPUT', `no result lines in ${files.join(', ')}`);
  }
  const { html, charts } = await buildReportHtml(runs, options.title);
  await mkdir(outDir, { recursive: true });
  const path = join(outDir, 'index.html');
  await writeFile(path, html);
  return { path, runs: runs.length, charts };
}
