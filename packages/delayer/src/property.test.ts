/**
 * Property tests (fast-check): ranks fed the same rows agree, round after
 * round, for random configs and histories, even with skewed and jittery
 * local clocks — because the deadline is judged on the shared round
 * timestamp. And the baseline local-clock mode can split near the deadline,
 * which is the SGLang flaw (SGLang #30521) the shared timestamp fixes.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Cluster, type RankOutcome, type RankPass } from '../test/round-gather.js';
import type { PrefillDelayerConfig } from './config.js';
import { type DecisionConfig, type DelayerState, decidePrefill } from './decide.js';
import type { DeadlineClock } from './prefill-delayer.js';

const configArb: fc.Arbitrary<Partial<PrefillDelayerConfig>> = fc.record({
  maxDelayPasses: fc.integer({ min: 1, max: 6 }),
  tokenUsageLowWatermark: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }),
  queueMinRatio: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }),
  maxDelayMs: fc.option(fc.integer({ min: 0, max: 400 }), { nil: null }),
  capSlotDelay: fc.boolean(),
  admissionCap: fc.boolean(),
  prefillMaxRequests: fc.option(fc.integer({ min: 1, max: 12 }), { nil: null }),
});

const rankArb: fc.Arbitrary<(mrr: number) => RankPass> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc
      .double({ min: 0, max: 1, noNaN: true })
      .map((u) => () => ({ tokenUsage: u, negotiate: null })),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({
        u: fc.double({ min: 0, max: 1, noNaN: true }),
        rb: fc.nat({ max: 24 }),
        mp: fc.nat({ max: 10 }),
        wq: fc.nat({ max: 20 }),
      })
      .map(
        ({ u, rb, mp, wq }) =>
          (mrr: number): RankPass => ({
            tokenUsage: u,
            negotiate: {
              prefillable: true,
              runningBatch: rb,
              maxPrefillBs: mp,
              maxRunningRequests: mrr,
              waitingQueueLen: wq,
            },
          }),
      ),
  },
);

interface World {
  worldSize: number;
  config: Partial<PrefillDelayerConfig>;
  mrr: number;
  skews: number[];
  rounds: Array<{ dt: number; ranks: Array<(mrr: number) => RankPass>; jitter: number[] }>;
}

const worldArb: fc.Arbitrary<World> = fc.integer({ min: 1, max: 4 }).chain((worldSize) =>
  fc.record({
    worldSize: fc.constant(worldSize),
    config: configArb,
    mrr: fc.nat({ max: 30 }),
    skews: fc.array(fc.integer({ min: -5000, max: 5000 }), { minLength: worldSize, maxLength: worldSize }),
    rounds: fc.array(
      fc.record({
        dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 250 })),
        ranks: fc.array(rankArb, { minLength: worldSize, maxLength: worldSize }),
        jitter: fc.array(fc.integer({ min: 0, max: 40 }), { minLength: worldSize, maxLength: worldSize }),
      }),
      { minLength: 1, maxLength: 40 },
    ),
  }),
);

function replay(
  w: World,
  mode: DeadlineClock,
): { cluster: Cluster; history: RankOutcome[][]; inputs: RankPass[][] } {
  const cluster = new Cluster(
    w.worldSize,
    { config: w.config, dpSize: w.worldSize, enableDpAttention: true, deadlineClock: mode },
    w.skews,
  );
  const history: RankOutcome[][] = [];
  const inputs: RankPass[][] = [];
  let t = 0;
  for (const round of w.rounds) {
    t += round.dt;
    const ranks = round.ranks.map((mk) => mk(w.mrr));
    inputs.push(ranks);
    history.push(cluster.pass(ranks, t, round.jitter));
  }
  return { cluster, history, inputs };
}

describe('property: every rank fed the same rows reaches the same verdict and state', () => {
  it('shared round timestamp: agreement every round despite random skew and jitter', () => {
    fc.assert(
      fc.property(worldArb, (w) => {
        const { history, inputs } = replay(w, 'shared');
        const P = w.config.maxDelayPasses!;
        const W = w.config.tokenUsageLowWatermark ?? null;
        let prevCount = 0;
        let skipFirstWas = true;
        history.forEach((outs, k) => {
          for (const o of outs) expect(o).toEqual(outs[0]);
          const o = outs[0]!;
          const ins = inputs[k]!;
          // status and counts come from the rows
          const pre = ins.filter((p) => p.negotiate?.prefillable === true);
          const est = pre.length === 0 ? 'none' : pre.length === ins.length ? 'all' : 'mixed';
          expect(o.inputEstimation).toBe(est);
          expect(o.numPrefillable).toBe(pre.length);
          const wm = W === null ? 0 : pre.filter((p) => (p.tokenUsage ?? 0.5) < W).length;
          expect(o.numTokenWatermarkForceAllow).toBe(wm);
          if (est !== 'none') expect(o.reason === 'token_watermark').toBe(wm > 0);
          // verdict/state shape
          expect(o.allow).toBe(o.reason !== 'delay');
          expect(o.state.prev === null).toBe(o.allow);
          if (!o.allow) {
            expect(o.state.prev!.delayedCount).toBe(prevCount + 1);
            if (est === 'mixed') expect(o.state.prev!.delayedCount).toBeLessThanOrEqual(P - 1);
            if (w.config.capSlotDelay && w.config.queueMinRatio === null) {
              expect(o.state.prev!.delayedCount).toBeLessThanOrEqual(Math.max(P - 1, 0));
            }
          } else {
            expect(o.waitForwardPasses).toBe(prevCount);
          }
          // skip-first never comes back
          if (!skipFirstWas) expect(o.state.skipFirst).toBe(false);
          skipFirstWas = o.state.skipFirst;
          prevCount = o.state.prev?.delayedCount ?? 0;
        });
      }),
      { numRuns: 300 },
    );
  });

  it('the verdicts do not depend on the local clocks at all in shared mode', () => {
    fc.assert(
      fc.property(
        worldArb,
        fc.array(fc.integer({ min: -9000, max: 9000 }), { minLength: 4, maxLength: 4 }),
        (w, other) => {
          const a = replay(w, 'shared').history;
          const b = replay({ ...w, skews: other.slice(0, w.worldSize) }, 'shared').history;
          expect(b).toEqual(a);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('decidePrefill is deterministic and leaves its inputs untouched', () => {
    const rowArb = fc.tuple(
      fc.nat({ max: 1 }),
      fc.nat({ max: 1 }),
      fc.nat({ max: 30 }),
      fc.nat({ max: 30 }),
      fc.nat({ max: 30 }),
    );
    fc.assert(
      fc.property(
        fc.array(rowArb, { minLength: 1, maxLength: 5 }),
        fc.option(
          fc.record({ delayedCount: fc.nat({ max: 40 }), startMs: fc.integer({ min: 0, max: 10_000 }) }),
          {
            nil: null,
          },
        ),
        fc.boolean(),
        fc.integer({ min: 10_000, max: 20_000 }),
        configArb,
        fc.nat({ max: 40 }),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        (rows, prev, skipFirst, now, c, mrr, dpSize, dpa) => {
          const state: DelayerState = { prev, skipFirst };
          const config: DecisionConfig = {
            maxDelayPasses: c.maxDelayPasses!,
            tokenUsageLowWatermark: c.tokenUsageLowWatermark ?? null,
            queueMinRatio: c.queueMinRatio ?? null,
            maxDelayMs: c.maxDelayMs ?? null,
            dpSize,
            enableDpAttention: dpa,
            capSlotDelay: c.capSlotDelay ?? false,
            admissionCap: c.admissionCap ? (c.prefillMaxRequests ?? null) : null,
          };
          const before = structuredClone({ rows, state, config });
          const x = decidePrefill(rows, { maxRunningRequests: mrr }, state, now, config);
          const y = decidePrefill(rows, { maxRunningRequests: mrr }, state, now, config);
          expect(y).toEqual(x);
          expect({ rows, state, config }).toEqual(before);
          if (!x.allow) {
            expect(x.state.prev).toEqual({
              delayedCount: (prev?.delayedCount ?? 0) + 1,
              startMs: prev ? prev.startMs : now,
            });
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('the flaw the shared timestamp fixes: local-clock deadlines can split ranks (SGLang #30521)', () => {
  const config = { queueMinRatio: 0.25, maxDelayMs: 100 };
  // Queue trigger on every rank: RB 64 -> threshold min(16, 20) = 16 > WQ 5. 200 slots: no slot pressure.
  const Q: RankPass = {
    negotiate: {
      prefillable: true,
      runningBatch: 64,
      maxPrefillBs: 20,
      maxRunningRequests: 200,
      waitingQueueLen: 5,
    },
  };

  function episode(mode: DeadlineClock, startJitter: number[], D: number) {
    const n = startJitter.length;
    const cluster = new Cluster(n, {
      config: { ...config, maxDelayMs: D },
      dpSize: n,
      enableDpAttention: true,
      deadlineClock: mode,
    });
    const ranks = Array.from({ length: n }, () => Q);
    cluster.pass(ranks, 0); // skip-first swallowed
    const start = cluster.pass(ranks, 10, startJitter); // the episode starts; each rank reads its clock a bit late
    expect(start.every((o) => o.reason === 'delay')).toBe(true);
    // The deadline round: true time 10 + D + min(jitter); every rank reads its clock on time.
    const at = 10 + D + Math.min(...startJitter);
    return cluster.pass(ranks, at);
  }

  it('example: 2 ranks, rank 1 read its clock 3 ms late when the episode started', () => {
    const local = episode('local', [0, 3], 100);
    expect(local.map((o) => o.reason)).toEqual(['wait_success', 'delay']);
    expect(local[0]!.state.prev).toBeNull();
    expect(local[1]!.state.prev?.delayedCount).toBe(2);
    // Same timings, shared round timestamp: both release.
    const shared = episode('shared', [0, 3], 100);
    expect(shared.map((o) => o.reason)).toEqual(['wait_success', 'wait_success']);
  });

  it('property: any unequal start jitter splits local mode at the right moment; shared mode never splits', () => {
    fc.assert(
      fc.property(
        fc
          .array(fc.integer({ min: 0, max: 30 }), { minLength: 2, maxLength: 4 })
          .filter((j) => new Set(j).size > 1),
        fc.integer({ min: 1, max: 5000 }),
        (jitter, D) => {
          const local = episode('local', jitter, D);
          const reasons = new Set(local.map((o) => o.reason));
          expect(reasons).toEqual(new Set(['wait_success', 'delay']));
          const shared = episode('shared', jitter, D);
          for (const o of shared) expect(o).toEqual(shared[0]);
        },
      ),
      { numRuns: 200 },
    );
  });
});
