/**
 * Shared by the repository's benchmarks (`pnpm bench:*`): each one owns a
 * section of docs/benchmarks.md between `<!-- bench:<name>:start -->` and
 * `<!-- bench:<name>:end -->` and rewrites only that section, stating the
 * machine it ran on. Not part of the runtime API (`@tsinfer/core/bench-doc`).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';

const HEADER =
  '# Benchmarks\n\nMeasured numbers, each section rewritten by the benchmark that owns it (between its markers). Do not edit inside the markers by hand.\n';

/** The 1-minute load average now; take it before a run starts and pass it to {@link describeMachine}. */
export function loadAverage(): number {
  return os.loadavg()[0] ?? 0;
}

/** One line naming the machine: CPU, cores, memory, OS, Node, and the load average at the start of the run. */
export function describeMachine(loadAtStart: number): string {
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const gib = Math.round(os.totalmem() / 2 ** 30);
  return (
    `${cpu}, ${os.availableParallelism()} cores (\`os.availableParallelism()\`), ${gib} GiB, ` +
    `${os.platform()} ${os.release()}, node ${process.version}; 1-min load average at start ${loadAtStart.toFixed(2)}`
  );
}

/** docs/benchmarks.md of the workspace containing `from` (found by walking up to pnpm-workspace.yaml). */
export function benchmarksDocPath(from: string = process.cwd()): string {
  let dir = from;
  while (!existsSync(join(dir, 'pnpm-workspace.yaml'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no pnpm-workspace.yaml above ${from}`);
    dir = up;
  }
  return join(dir, 'docs', 'benchmarks.md');
}

/**
 * Replaces the section `name` of docs/benchmarks.md with `body` (markers are
 * added here), or appends it; everything outside the markers is kept.
 * Returns the file's path.
 */
export function writeBenchSection(name: string, body: string, docPath: string = benchmarksDocPath()): string {
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  const block = `${start}\n${body.trim()}\n${end}`;
  const doc = existsSync(docPath) ? readFileSync(docPath, 'utf8') : HEADER;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  const next =
    i !== -1 && j > i
      ? doc.slice(0, i) + block + doc.slice(j + end.length)
      : `${doc.trimEnd()}\n\n${block}\n`;
  writeFileSync(docPath, next);
  return docPath;
}
