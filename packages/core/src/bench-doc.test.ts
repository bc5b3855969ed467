import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchmarksDocPath, describeMachine, writeBenchSection } from './bench-doc.js';

describe('writeBenchSection', () => {
  it('creates the file, appends new sections and replaces only its own', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'bench-doc-')), 'benchmarks.md');
    writeBenchSection('a', 'first A', path);
    writeBenchSection('b', 'first B', path);
    writeFileSync(path, `${readFileSync(path, 'utf8')}\nhand-written note\n`);
    writeBenchSection('a', 'second A', path);
    const doc = readFileSync(path, 'utf8');
    expect(doc.startsWith('# Benchmarks')).toBe(true);
    expect(doc).toContain('<!-- bench:a:start -->\nsecond A\n<!-- bench:a:end -->');
    expect(doc).not.toContain('first A');
    expect(doc).toContain('<!-- bench:b:start -->\nfirst B\n<!-- bench:b:end -->');
    expect(doc).toContain('hand-written note');
    expect(doc.indexOf('bench:a:start')).toBeLessThan(doc.indexOf('bench:b:start'));
  });

  it('finds the workspace docs and names the machine', () => {
    expect(benchmarksDocPath(new URL('.', import.meta.url).pathname)).toMatch(/docs\/benchmarks\.md$/);
    expect(describeMachine(1.5)).toMatch(/cores .* node v\d+.*load average at start 1\.50$/);
  });
});
