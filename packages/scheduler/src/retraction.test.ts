import { createRng } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { profile, prompt, Recorder, runAlone } from '../test/helpers.js';
import { NewTokenRatio, ratioAfterRetraction } from './budget.js';
import { newTokenRatioParams, resolveSchedulerConfig } from './config.js';
import { VirtualCluster } from './virtual.js';

describe('new-token ratio', () => {
  it('uses SGLang defaults: init 0.7, floor 0.7 × 0.14, 600 decay steps; resets on idle', () => {
    const p = newTokenRatioParams(resolveSchedulerConfig());
    expect(p.init).toBe(0.7);
    expect(p.min).toBeCloseTo(0.098, 12);
    expect(p.decayPerPass).toBeCloseTo((0.7 - 0.098) / 600, 15);
    const r = new NewTokenRatio(p);
    for (let i = 0; i < 300; i++) r.decay();
    expect(r.value).toBeCloseTo(0.7 - 300 * p.decayPerPass, 12);
    for (let i = 0; i < 1000; i++) r.decay();
    expect(r.value).toBe(p.min);
    r.reset();
    expect(r.value).toBe(0.7);
    expect(newTokenRatioParams(resolveSchedulerConfig({ minNewTokenRatio: 0.3 })).min).toBe(0.3);
    expect(newTokenRatioParams(resolveSchedulerConfig({ scheduleConservativeness: 2 })).init).toBe(1);
  });

  it('after a retraction: min(1, (decoded + steps × n) / Σ max_new_tokens) of the survivors', () => {
    const reqs = [
      { outputLen: 10, maxNewTokens: 100 },
      { outputLen: 30, maxNewTokens: 100 },
    ] as never[];
    expect(ratioAfterRetraction(reqs, 2, 20)).toBeCloseTo((40 + 40) / 200, 12);
    expect(ratioAfterRetraction(reqs, 2, 200)).toBe(1);
    expect(ratioAfterRetraction([], 0, 20)).toBe(1);
  });
});

describe('retraction under KV pressure', () => {
  async function pressure(opts: { chunk: number | null; seed: number; n: number; kv: number }) {
    const p = profile({ kv: opts.kv });
    const rng = createRng(opts.seed);
    const inputs = Array.from({ length: opts.n }, (_, i) => ({
      rid: `r${i}`,
      promptTokens: prompt(rng.int(20, 300), opts.seed * 1000 + i),
      maxNewTokens: rng.int(100, 600),
      at: rng.int(0, 200),
    }));
    const rec = new Recorder();
    const c = new VirtualCluster({
      profile: p,
      config: { chunkedPrefillSize: opts.chunk },
      sink: (r) => rec.sink(r),
    });
    for (const x of inputs) c.submit(x.at, 0, x);
    await c.run();
    return { p, inputs, rec, c };
  }

  it('retracts and requeues (never drops); every request finishes with the tokens it makes alone', async () => {
    const { p, inputs, rec, c } = await pressure({ chunk: 128, seed: 7, n: 60, kv: 2000 });
    const last = rec.passes.at(-1)!;
    expect(last.totalRetractedReqs).toBeGreaterThan(5);
    const retractedOnce = [...rec.finished.values()].filter((f) => f.retractions > 0);
    expect(retractedOnce.length).toBeGreaterThan(3);
    expect(rec.finished.size).toBe(inputs.length);
    for (const x of inputs) {
      const f = rec.finished.get(x.rid)!;
      expect(f.reason, x.rid).toBe('length');
      expect(f.tokens.length, x.rid).toBe(x.maxNewTokens);
    }
    // Tokens equal the solo run's (progress kept as prompt on retraction; the SimRunner samples from the whole sequence).
    for (const f of retractedOnce.slice(0, 6)) {
      const x = inputs.find((i) => i.rid === f.rid)!;
      const alone = await runAlone(p, x);
      expect(f.tokens, f.rid).toEqual(alone.tokens);
    }
    // Streams never repeat tokens across a retraction.
    for (const f of retractedOnce) expect(rec.streamed.get(f.rid)).toEqual(f.tokens);
    // The KV never overflowed (the SimRunner would have thrown) and everything was freed.
    expect(Math.max(...rec.passes.map((s) => s.numUsedTokens))).toBeLessThanOrEqual(2000);
    expect(c.runners[0]!.kvUsedTokens).toBe(0);
  });

  it('raises the ratio estimate at a retraction and decays it on decode passes without one', async () => {
    const { rec } = await pressure({ chunk: null, seed: 3, n: 30, kv: 2500 });
    const passes = rec.passes;
    let raised = 0;
    let decayed = 0;
    for (let i = 1; i < passes.length; i++) {
      const prev = passes[i - 1]!;
      const cur = passes[i]!;
      if (cur.retractedReqs > 0) {
        expect(cur.mode).toBe('decode');
        if (cur.newTokenRatio > prev.newTokenRatio) raised++;
      } else if (cur.mode === 'decode' && prev.newTokenRatio > 0.0981) {
        expect(cur.newTokenRatio).toBeLessThan(prev.newTokenRatio);
        decayed++;
      }
    }
    expect(raised).toBeGreaterThan(0);
    expect(decayed).toBeGreaterThan(100);
  });

  it('retracts the requests with the fewest generated tokens first (ties: longest prompt)', async () => {
    // Two requests decode into a KV that cannot hold both to the end.
    const p = profile({ kv: 300 });
    const rec = new Recorder();
    const c = new VirtualCluster({
      profile: p,
      config: { initNewTokenRatio: 0.05, minNewTokenRatio: 0.01 },
      sink: (r) => rec.sink(r),
    });
    c.submit(0, 0, { rid: 'early', promptTokens: prompt(50, 1), maxNewTokens: 150 });
    c.submit(5, 0, { rid: 'late', promptTokens: prompt(40, 2), maxNewTokens: 150 });
    await c.run();
    const early = rec.finished.get('early')!;
    const late = rec.finished.get('late')!;
    expect(late.retractions).toBeGreaterThan(0);
    expect(early.retractions).toBe(0);
    expect(early.tokens).toHaveLength(150);
    expect(late.tokens).toHaveLength(150);
    // late was admitted while early ran, then retracted (fewer generated tokens), and re-admitted after
    expect(late.firstTokenMs).toBeLessThan(early.finishedMs);
    expect(late.finishedMs).toBeGreaterThan(early.finishedMs);
  });
});
