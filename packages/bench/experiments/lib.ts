/**
 * Shared helpers of the benchmark experiments: machine line, fresh JSONL
 * files, vega-lite charts through the bench report module, markdown tables,
 * and the docs/benchmarks.md section between `<!-- bench:<id>:start -->` and
 * `<!-- bench:<id>:end -->` (everything else in the file is preserved).
 */
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TopLevelSpec } from 'vega-lite';
import { renderSvg, writeReport } from '../src/report.js';

export const EXPERIMENTS_DIR = dirname(fileURLToPath(import.meta.url));
export const RESULTS_DIR = join(EXPERIMENTS_DIR, 'results');
export const REPO_ROOT = join(EXPERIMENTS_DIR, '..', '..', '..');

/** A fresh (emptied) results file path. */
export async function freshFile(name: string): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const p = join(RESULTS_DIR, name);
  if (existsSync(p)) await rm(p);
  return p;
}

export const rel = (p: string): string => relative(REPO_ROOT, p);

export interface NamedChart {
  title: string;
  note: string;
  spec: TopLevelSpec;
}

/** One HTML page with the charts as inline SVG, plus each chart as its own .svg file. */
export async function writeCharts(
  base: string,
  title: string,
  charts: NamedChart[],
  intro = '',
): Promise<string[]> {
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const sections: string[] = [];
  const files: string[] = [];
  for (const [i, c] of charts.entries()) {
    const svg = await renderSvg({
      $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
      ...c.spec,
    } as TopLevelSpec);
    const f = join(RESULTS_DIR, `${base}-${i + 1}.svg`);
    await writeFile(f, svg);
    files.push(f);
    sections.push(`<section><h2>${esc(c.title)}</h2><p class="note">${esc(c.note)}</p>${svg}</section>`);
  }
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#222}.note{color:#555;font-size:.9rem}section{margin:2rem 0}</style>
</head><body><h1>${esc(title)}</h1><p class="note">${esc(intro)}</p>
${sections.join('\n')}
</body></html>
`;
  const page = join(RESULTS_DIR, `${base}.html`);
  await writeFile(page, html);
  return [page, ...files];
}

/** The bench's own HTML report of a JSONL file (tables, CDFs, per-rank loads). */
export async function benchReport(jsonl: string, dir: string, title: string): Promise<string> {
  const r = await writeReport([jsonl], join(RESULTS_DIR, dir), { title });
  return r.path;
}

export function mdTable(head: string[], rows: Array<Array<string | number>>): string {
  const line = (cells: Array<string | number>): string => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Replaces (or appends) the section between the experiment's markers in docs/benchmarks.md. */
export const fx = (x: number, d = 1): string => x.toFixed(d);
