import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ForwardBatch } from '../contract.js';
import { PRESETS } from '../model-builder/presets.js';
import { stepCostMs } from './cost.js';
import { BUILTIN_PROFILE_DIR, loadSimProfile } from './profile.js';
import { openSimRunner } from './runner.js';

const decode = (b: number): ForwardBatch => ({
  free: [],
  add: [],
  prefill: [],
  decode: [...Array(b).keys()],
});
const prefill = (n: number): ForwardBatch => ({
  free: [],
  add: [],
  prefill: [{ id: 0, start: 0, tokens: new Int32Array(n), sample: true }],
  decode: [],
});

describe('committed H100 profiles against specs/gpu-measurements.md', () => {
  it('medium-h100 reproduces the 852M device-resident-KV measurements within 5%', async () => {
    const { cost, source } = await loadSimProfile(join(BUILTIN_PROFILE_DIR, 'medium-h100.json'));
    expect(source).toMatch(/not calibrated/i);
    // decode steps at past ~512 (median of 10 on one H100)
    for (const [b, ms] of [
      [1, 3.21],
      [8, 3.68],
      [32, 4.85],
      [64, 6.23],
    ] as const) {
      expect(Math.abs(stepCostMs(cost, decode(b), () => 512) / ms - 1), `B=${b}`).toBeLessThan(0.05);
    }
    // prefill 1 x 2048 with only the last row's logits: 10.3 ms
    expect(Math.abs(stepCostMs(cost, prefill(2048), () => 0) / 10.3 - 1)).toBeLessThan(0.05);
  });

  it('small-h100 is faster than medium-h100 everywhere and within the physical bounds', async () => {
    const small = await loadSimProfile(join(BUILTIN_PROFILE_DIR, 'small-h100.json'));
    const medium = await loadSimProfile(join(BUILTIN_PROFILE_DIR, 'medium-h100.json'));
    expect(small.source).toMatch(/not calibrated/i);
    for (const b of [1, 16, 64, 256]) {
      for (const ctx of [16, 1024, 4000]) {
        expect(stepCostMs(small.cost, decode(b), () => ctx)).toBeLessThan(
          stepCostMs(medium.cost, decode(b), () => ctx),
        );
      }
    }
    for (const n of [16, 512, 4096]) {
      expect(stepCostMs(small.cost, prefill(n), () => 0)).toBeLessThan(
        stepCostMs(medium.cost, prefill(n), () => 0),
      );
    }
    // anchors.md §3.6: a decode step must read every weight once: >= 1.7 GB / 3.35 TB/s ≈ 0.5 ms (852M fp16)
    expect(stepCostMs(medium.cost, decode(1), () => 16)).toBeGreaterThan(0.5);
  });
});

describe('committed tiny-cpu profile', () => {
  it('says it was calibrated, and carries the fit it came from', async () => {
    const p = await loadSimProfile(join(BUILTIN_PROFILE_DIR, 'tiny-cpu.json'));
    expect(p.source).toMatch(/^calibrated by tsinfer calibrate/);
    expect(p.calibration?.['r2']).toBeGreaterThan(0.9);
    expect(p.model.vocabSize).toBe(2048);
    // decode cost grows with batch and context, prefill with length
    expect(stepCostMs(p.cost, decode(64), () => 1024)).toBeGreaterThan(
      stepCostMs(p.cost, decode(1), () => 16),
    );
    expect(stepCostMs(p.cost, prefill(1024), () => 0)).toBeGreaterThan(
      stepCostMs(p.cost, prefill(16), () => 0),
    );
  });
});

describe('openSimRunner', () => {
  it('opens a committed profile by bare name, and its model facts match the builder preset it stands for', async () => {
    for (const [name, preset] of [
      ['tiny-cpu', 'tiny'],
      ['small-h100', 'small'],
      ['medium-h100', 'medium'],
    ] as const) {
      const r = await openSimRunner(`sim:${name}`, { wait: async () => {} });
      expect(r.info.contextLength).toBe(PRESETS[preset].contextLength);
      expect(r.info.vocabSize).toBeGreaterThanOrEqual(PRESETS[preset].vocabSize);
      await r.close();
    }
    await expect(openSimRunner('sim:no-such-profile')).rejects.toMatchObject({
      code: 'TSI_ERR_INVALID_PROFILE',
    });
  });
});
