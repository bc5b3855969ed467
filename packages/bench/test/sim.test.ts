/**
 * `tsinfer sim` (runSim): the real scheduler, DP controller and delayer on
 * SimRunners in virtual time, measured by the bench's metrics.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRng } from '@tsinfer/core';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { parsePyJson } from '../src/pyformat.js';
import { nextArrivalDelayMs } from '../src/random.js';
import { gammaUnit, nextSimArrivalDelayMs } from '../src/sim/arrival.js';
import { parseSimFlags, registerSim, type SimFlags } from '../src/sim/cli.js';
import { DEFAULT_SIM_OPTIONS, runSim, type SimOptions } from '../src/sim/run.js';

const quiet = { log: () => {} };

const small = (over: Partial<SimOptions> = {}): SimOptions => ({
  ...DEFAULT_SIM_OPTIONS,
  datasetName: 'random',
  numPrompts: 48,
  randomInputLen: 256,
  randomOutputLen: 64,
  randomRangeRatio: 0.5,
  requestRate: 40,
  burstiness: 0.5,
  maxConcurrency: 16,
  seed: 7,
  loadsInterval: 0.05,
  scheduler: { dpSize: 4, enableDpAttention: true, delayer: { enabled: true, queueMinRatio: 0.5 } },
  loadBalanceMethod: 'minimum_tokens',
  ...over,
});

describe('runSim', () => {
  it('is deterministic: the same seed gives the same JSONL line; another seed does not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tsinfer-sim-'));
    const file = join(dir, 'runs.jsonl');
    const a = await runSim(small({ outputFile: file, outputDetails: true }), quiet);
    const b = await runSim(small({ outputFile: file, outputDetails: true }), quiet);
    const c = await runSim(small({ seed: 8 }), quiet);
    expect(b.line).toBe(a.line);
    expect(c.line).not.toBe(a.line);
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    expect(lines).toEqual([a.line, a.line]);
    const parsed = parsePyJson(lines[0]!) as Record<string, unknown>;
    expect(parsed['backend']).toBe('tsinfer-sim');
    expect(Array.isArray(parsed['loads_timeline'])).toBe(true);
    expect((parsed['sim'] as Record<string, unknown>)['dpSize']).toBe(4);
  });

  it('completes every request with exact token totals, and the table is the bench table', async () => {
    const r = await runSim(small({ requestRate: Number.POSITIVE_INFINITY }), quiet);
    const n = r.rows.length;
    expect(n).toBe(48);
    expect(r.metrics.completed).toBe(n);
    expect(r.outputs.every((o) => o.success)).toBe(true);
    expect(r.metrics.totalInput).toBe(r.rows.reduce((a, x) => a + x.promptLen, 0));
    expect(r.metrics.totalOutput).toBe(r.rows.reduce((a, x) => a + x.outputLen, 0));
    r.outputs.forEach((o, i) => {
      expect(o.outputLen).toBe(r.rows[i]!.outputLen);
      expect(o.itl.length).toBe(o.outputLen - 1);
      expect(o.ttft).toBeGreaterThan(0);
      expect(o.latency).toBeGreaterThanOrEqual(o.ttft);
    });
    expect(r.sim.dispatchedRequests.reduce((a, b) => a + b, 0)).toBe(n);
    expect(r.sim.dispatchedTokens.reduce((a, b) => a + b, 0)).toBe(
      r.metrics.totalInput + r.metrics.totalOutput,
    );
    expect(r.sim.prefillPasses).toBeGreaterThan(0);
    expect(r.sim.groupPrefillPasses).not.toBeNull();
    expect(r.sim.groupPrefillPasses!).toBeLessThanOrEqual(r.sim.prefillPasses);
    expect(r.sim.decodeGapMs.p99).toBeGreaterThan(0);
    expect(r.sim.delayerOutcomes).not.toBeNull();
    expect(r.table[1]).toContain('Serving Benchmark Result');
    expect(r.table.some((l) => l.startsWith('Successful requests:') && l.includes(String(n)))).toBe(true);
    // the client's concurrency gate holds in virtual time: at most 16 requests overlap
    // (times rounded to 1 ns: start + latency is a float sum; a request that starts as another ends ties)
    const ns = (x: number): number => Math.round(x * 1e9);
    const events = r.outputs.flatMap((o) => [
      { t: ns(o.startTime), d: 1 },
      { t: ns(o.startTime + o.latency), d: -1 },
    ]);
    events.sort((a, b) => a.t - b.t || a.d - b.d);
    let open = 0;
    let peak = 0;
    for (const e of events) {
      open += e.d;
      peak = Math.max(peak, open);
    }
    expect(peak).toBe(16);
  });

  it('runs virtual time much faster than real time', async () => {
    const r = await runSim(
      small({
        numPrompts: 400,
        randomInputLen: 512,
        randomOutputLen: 512,
        requestRate: 10,
        burstiness: 1,
        maxConcurrency: undefined,
        loadsInterval: undefined,
      }),
      quiet,
    );
    expect(r.sim.virtualS).toBeGreaterThan(30);
    expect(r.sim.speedup).toBeGreaterThan(10);
  });

  it('dispatches a burst through the load snapshots as each method defines', async () => {
    const burst = (method: SimOptions['loadBalanceMethod'], incrementTokens = true) =>
      runSim(
        small({
          requestRate: Number.POSITIVE_INFINITY,
          maxConcurrency: undefined,
          loadBalanceMethod: method,
          incrementTokens,
          scheduler: { dpSize: 4, enableDpAttention: true },
        }),
        quiet,
      );
    const rr = await burst('round_robin');
    expect(rr.sim.dispatchedRequests).toEqual([12, 12, 12, 12]);
    // All 48 arrive at one instant: no snapshot changes in between, so total_tokens without
    // the increment sees equal tokens everywhere and falls back to its request-count tie-break.
    const before = await burst('total_tokens', false);
    expect(before.sim.dispatchedRequests).toEqual([12, 12, 12, 12]);
    // With the increment, and with minimum_tokens's in-flight tokens, the choice follows prompt tokens.
    const tt = await burst('total_tokens');
    const mt = await burst('minimum_tokens');
    expect(mt.sim.dispatchedRequests).toEqual(tt.sim.dispatchedRequests);
    expect(mt.sim.dispatchedRequests).not.toEqual([12, 12, 12, 12]);
    expect(mt.metrics.completed).toBe(48);
  });
});

describe('arrivals', () => {
  it('burstiness 1 is the bench Poisson process, draw for draw', () => {
    const a = createRng(3);
    const b = createRng(3);
    for (let i = 0; i < 50; i++) expect(nextSimArrivalDelayMs(a, 5, 1)).toBe(nextArrivalDelayMs(b, 5));
  });
  it('gamma gaps keep the mean rate and add variance below 1', () => {
    const rng = createRng(11);
    for (const shape of [0.25, 1, 3]) {
      const n = 20_000;
      let s = 0;
      let s2 = 0;
      for (let i = 0; i < n; i++) {
        const x = gammaUnit(rng, shape);
        s += x;
        s2 += x * x;
      }
      const mean = s / n;
      const variance = s2 / n - mean * mean;
      expect(mean).toBeCloseTo(shape, 1);
      expect(variance / shape).toBeGreaterThan(0.9);
      expect(variance / shape).toBeLessThan(1.1);
    }
    const r = createRng(5);
    let total = 0;
    for (let i = 0; i < 5000; i++) total += nextSimArrivalDelayMs(r, 4, 0.2);
    expect(total / 5000).toBeGreaterThan(225);
    expect(total / 5000).toBeLessThan(275);
  });
});

describe('tsinfer sim flags', () => {
  it('composes the scheduler, delayer and load-balance flag tables', () => {
    const program = new Command();
    program.exitOverride();
    const cmd = registerSim(program);
    cmd.action(() => {});
    program.parse(
      [
        'sim',
        '--dp-size',
        '8',
        '--enable-dp-attention',
        '--enable-prefill-delayer',
        '--prefill-delayer-queue-min-ratio',
        '0.25',
        '--load-balance-method',
        'total_tokens',
        '--disable-token-increment',
        '--random-range-ratio',
        '0.8',
        '--max-concurrency',
        '64',
      ],
      { from: 'user' },
    );
    const o = parseSimFlags(cmd.opts() as SimFlags);
    expect(o.scheduler.dpSize).toBe(8);
    expect(o.scheduler.enableDpAttention).toBe(true);
    expect(o.scheduler.delayer?.enabled).toBe(true);
    expect(o.scheduler.delayer?.queueMinRatio).toBe(0.25);
    expect(o.loadBalanceMethod).toBe('total_tokens');
    expect(o.incrementTokens).toBe(false);
    expect(o.randomRangeRatio).toBe(0.8);
    expect(o.maxConcurrency).toBe(64);
    expect(o.modelPath).toBe('sim:medium-h100');
    expect(() => parseSimFlags({ dpSize: '0' })).toThrow(/--dp-size/);
  });
});

describe('delivery to the ranks', () => {
  it('holds a request dispatched mid-pass until the pass ends, and still completes everything', async () => {
    const opts = small({
      requestRate: 200,
      burstiness: 1,
      maxConcurrency: undefined,
      loadsInterval: undefined,
    });
    const atEnd = await runSim({ ...opts, deliverAtPassEnd: true }, quiet);
    const instant = await runSim({ ...opts, deliverAtPassEnd: false }, quiet);
    for (const r of [atEnd, instant]) {
      expect(r.metrics.completed).toBe(48);
      expect(r.metrics.totalOutput).toBe(r.rows.reduce((a, x) => a + x.outputLen, 0));
    }
    // the delivery point changes what the ranks see (and so the run), not whether it completes
    expect(atEnd.line).not.toBe(instant.line);
    expect(DEFAULT_SIM_OPTIONS.deliverAtPassEnd).toBe(true);
  });
});
