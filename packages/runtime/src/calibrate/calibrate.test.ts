import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRng, InvalidConfigError, ManualClock } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import type { ModelRunner } from '../contract.js';
import { COST_TERMS, type CostModel, stepFeatures } from '../sim/cost.js';
import { loadSimProfile, serializeSimProfile } from '../sim/profile.js';
import { SimRunner } from '../sim/runner.js';
import { testProfile } from '../sim/test-util.js';
import { type CalibrateProgress, calibrate } from './calibrate.js';
import { runCalibrateCommand } from './command.js';
import { fitCostModel } from './fit.js';

function simWithClock(profile = testProfile(), noise = 0, seed = 1) {
  const clock = new ManualClock(0);
  const rng = createRng(seed);
  const runner = new SimRunner({
    profile,
    wait: async (ms) => {
      // multiplicative noise, like run-to-run jitter of a real device
      const g = Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
      clock.advance(Math.max(0, ms * (1 + noise * g)));
    },
  });
  return { clock, runner };
}

describe('calibrate', () => {
  it('recovers a SimRunner’s own cost model exactly from noise-free timings', async () => {
    const profile = testProfile();
    const { clock, runner } = simWithClock(profile);
    const progress: CalibrateProgress[] = [];
    const result = await calibrate(runner, {
      clock,
      onProgress: (p) => progress.push(p),
      date: 'D',
      device: 'test',
    });
    for (const t of COST_TERMS) {
      expect(result.profile.cost[t], t).toBeCloseTo(profile.cost[t], 9);
      expect(Math.abs(result.profile.cost[t] - profile.cost[t]) / profile.cost[t]).toBeLessThan(1e-6);
    }
    expect(result.quality.r2).toBeGreaterThan(0.999999);
    expect(result.quality.maxAbsRelativeError).toBeLessThan(1e-6);
    expect(runner.heldRequests).toBe(0);
    expect(runner.kvUsedTokens).toBe(0);
    // the design exercises every phase, and the profile carries the model facts
    expect(new Set(result.points.map((p) => p.phase))).toEqual(
      new Set(['empty', 'prefill', 'chunked-prefill', 'decode', 'mixed']),
    );
    expect(result.profile.model).toMatchObject({
      name: 'sim-test',
      vocabSize: 1000,
      kvCapacityTokens: 200_000,
    });
    expect(result.profile.source).toContain(
      'calibrated by tsinfer calibrate against sim-test on device test at D',
    );
    // progress: monotone, ends at total
    const dones = progress.map((p) => p.done);
    expect(dones).toEqual([...dones].sort((a, b) => a - b));
    const last = progress[progress.length - 1]!;
    expect(last.done).toBe(last.total);
    expect(last.total).toBe(result.points.length * 5);
  });

  it('recovers the coefficients within tolerance from noisy timings (3% jitter)', async () => {
    const profile = testProfile();
    const { clock, runner } = simWithClock(profile, 0.03, 42);
    const { profile: fitted, quality } = await calibrate(runner, { clock, repeats: 7 });
    expect(quality.r2).toBeGreaterThan(0.99);
    // The big terms are pinned down well; small ones within a looser bound.
    const rel = (t: keyof CostModel) => Math.abs(fitted.cost[t] - profile.cost[t]) / profile.cost[t];
    expect(rel('fixedMs')).toBeLessThan(0.05);
    expect(rel('perPrefillTokenMs')).toBeLessThan(0.05);
    expect(rel('decodeFixedMs')).toBeLessThan(0.05);
    expect(rel('perKvTokenReadMs')).toBeLessThan(0.05);
    expect(rel('perDecodeRequestMs')).toBeLessThan(0.1);
    expect(rel('prefillFixedMs')).toBeLessThan(0.1);
    expect(rel('perPrefillRequestMs')).toBeLessThan(0.25);
    // and predictions of unseen passes are close
    const check = [
      { free: [], add: [], prefill: [], decode: Array.from({ length: 48 }, (_, i) => i) },
      {
        free: [],
        add: [],
        prefill: [{ id: 99, start: 0, tokens: new Int32Array(512), sample: true }],
        decode: [],
      },
    ];
    for (const b of check) {
      const f = stepFeatures(b, () => 700);
      const truth = COST_TERMS.reduce((s, t) => s + profile.cost[t] * f[t], 0);
      const pred = COST_TERMS.reduce((s, t) => s + fitted.cost[t] * f[t], 0);
      expect(Math.abs(pred - truth) / truth).toBeLessThan(0.05);
    }
  });

  it('fits zeros for terms the runner does not show', async () => {
    const profile = testProfile();
    const sparse = {
      ...profile,
      cost: { ...profile.cost, prefillFixedMs: 0, perPrefillRequestMs: 0, perPrefillAttentionPairMs: 0 },
    };
    const { clock, runner } = simWithClock(sparse);
    const { profile: fitted } = await calibrate(runner, { clock, repeats: 2 });
    expect(fitted.cost.prefillFixedMs).toBeLessThan(1e-9);
    expect(fitted.cost.perPrefillRequestMs).toBeLessThan(1e-9);
    expect(fitted.cost.perPrefillAttentionPairMs).toBeLessThan(1e-12);
    expect(fitted.cost.perPrefillTokenMs).toBeCloseTo(0.01, 9);
  });

  it('keeps its design inside the runner’s context, KV capacity and maxBatch', async () => {
    const profile = testProfile({ model: { contextLength: 300, kvCapacityTokens: 3000, maxBatch: 8 } });
    const { clock, runner } = simWithClock(profile);
    const result = await calibrate(runner, { clock, repeats: 2, maxBatch: 8 });
    expect(result.points.some((p) => p.label === 'decode 8 at 256')).toBe(true);
    expect(result.points.some((p) => p.label.includes('1024'))).toBe(false);
    expect(result.points.some((p) => p.label === 'decode 16 at 16')).toBe(false);
    expect(result.profile.model.maxBatch).toBe(8);
    expect(result.quality.r2).toBeGreaterThan(0.999999);
  });

  it('fitCostModel reports quality on unweighted residuals', () => {
    const f = stepFeatures({ free: [], add: [], prefill: [], decode: [1] }, () => 10);
    const fit = fitCostModel(
      [
        { features: { ...f, perDecodeRequestMs: 1, perKvTokenReadMs: 11 }, measuredMs: 3 },
        { features: { ...f, perDecodeRequestMs: 2, perKvTokenReadMs: 22 }, measuredMs: 5 },
        { features: { ...f, perDecodeRequestMs: 3, perKvTokenReadMs: 33 }, measuredMs: 7.5 },
      ],
      { terms: ['fixedMs', 'perDecodeRequestMs'], weighting: 'absolute' },
    );
    expect(fit.cost.perKvTokenReadMs).toBe(0);
    expect(fit.cost.perDecodeRequestMs).toBeCloseTo(2.25, 9);
    expect(fit.quality.residuals).toHaveLength(3);
    expect(fit.quality.r2).toBeGreaterThan(0.98);
    expect(fit.quality.r2).toBeLessThan(1);
  });
});

describe('runCalibrateCommand', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsinfer-cal-'));

  it('calibrates a sim: profile in virtual time and writes a loadable profile', async () => {
    const src = join(dir, 'in.json');
    writeFileSync(src, serializeSimProfile(testProfile()));
    const out = join(dir, 'out.json');
    const result = await runCalibrateCommand({ modelPath: `sim:${src}`, out, repeats: 2, date: 'D' });
    const written = await loadSimProfile(out);
    expect(written).toEqual(JSON.parse(JSON.stringify(result.profile)));
    expect(written.cost.perDecodeRequestMs).toBeCloseTo(0.05, 9);
    expect(written.source).toContain('sim (virtual time, cpu)');
  });

  it('opens a model directory through the given opener, and says so when none is given', async () => {
    await expect(runCalibrateCommand({ modelPath: '/models/tiny' })).rejects.toBeInstanceOf(
      InvalidConfigError,
    );
    const clock = new ManualClock(0);
    let closed = false;
    const inner = new SimRunner({ profile: testProfile(), wait: async (ms) => clock.advance(ms) });
    const opened: string[] = [];
    const result = await runCalibrateCommand({
      modelPath: '/models/tiny',
      device: 'cpu',
      repeats: 1,
      clock,
      openRunner: async (d, dev): Promise<ModelRunner> => {
        opened.push(`${d}@${dev}`);
        return {
          info: inner.info,
          forward: (b) => inner.forward(b),
          close: async () => {
            closed = true;
          },
        };
      },
    });
    expect(opened).toEqual(['/models/tiny@cpu']);
    expect(closed).toBe(true);
    expect(result.profile.cost.perPrefillTokenMs).toBeCloseTo(0.01, 9);
  });
});
