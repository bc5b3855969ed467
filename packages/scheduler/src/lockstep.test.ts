import { ManualClock } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { profile, prompt, Recorder, runAlone } from '../test/helpers.js';
import { InProcessGatherGroup, PrefetchedAllGather } from './collective.js';
import type { SchedulerConfig } from './config.js';
import type { PassStats } from './stats.js';
import { VirtualCluster } from './virtual.js';

function twoRanks(config: Partial<SchedulerConfig>) {
  const rec = new Recorder();
  const c = new VirtualCluster({
    profile: profile(),
    config: { dpSize: 2, ...config },
    sink: (r) => rec.sink(r),
  });
  const byRank: PassStats[][] = [[], []];
  for (const s of c.schedulers) {
    const orig = s.step.bind(s);
    s.step = async () => {
      const st = await orig();
      byRank[s.rank]!.push(structuredClone(st));
      return st;
    };
  }
  // rank 0: a decode batch; rank 1: prompts arriving while rank 0 decodes
  for (let i = 0; i < 8; i++)
    c.submit(0, 0, { rid: `d${i}`, promptTokens: prompt(20, i), maxNewTokens: 200 });
  for (let i = 0; i < 6; i++)
    c.submit(100 + i * 97, 1, { rid: `p${i}`, promptTokens: prompt(400, 50 + i), maxNewTokens: 10 });
  return { c, rec, byRank };
}

describe('--enable-dp-attention lockstep', () => {
  it('ranks agree on the forward mode every pass: while one prefills the other cannot decode (it runs idle)', async () => {
    const { c, rec, byRank } = twoRanks({ enableDpAttention: true });
    await c.run();
    expect(rec.finished.size).toBe(14);
    const [r0, r1] = byRank as [PassStats[], PassStats[]];
    expect(r0.length).toBe(r1.length); // one pass each per lockstep round
    let forced = 0;
    for (let i = 0; i < r0.length; i++) {
      const a = r0[i]!;
      const b = r1[i]!;
      expect([a.mode, b.mode]).not.toContainEqual(undefined);
      if (a.mode === 'prefill' || b.mode === 'prefill') {
        expect(a.mode).not.toBe('decode');
        expect(b.mode).not.toBe('decode');
      }
      if (a.forcedIdle) {
        forced++;
        expect(b.mode).toBe('prefill');
      }
      expect(a.groupIdle).toBe(b.groupIdle);
    }
    const r1PrefillWhileR0Runs = r1.filter(
      (b, i) => b.mode === 'prefill' && r0[i]!.numRunningReqs > 0,
    ).length;
    expect(r1PrefillWhileR0Runs).toBeGreaterThanOrEqual(4);
    expect(forced).toBe(r1PrefillWhileR0Runs);
    // rank 1, with nothing to do between its prompts, ran idle passes in step with rank 0's decodes
    expect(r1.filter((s) => s.mode === 'idle' && !s.forwarded).length).toBeGreaterThan(50);
    // tokens are unaffected by the lockstep
    const alone = await runAlone(profile(), { rid: 'p3', promptTokens: prompt(400, 53), maxNewTokens: 10 });
    expect(rec.finished.get('p3')!.tokens).toEqual(alone.tokens);
  });

  it('without the flag the ranks run independently (one decodes while the other prefills)', async () => {
    const { c, rec, byRank } = twoRanks({ enableDpAttention: false });
    await c.run();
    expect(rec.finished.size).toBe(14);
    const [r0, r1] = byRank as [PassStats[], PassStats[]];
    expect(r0.every((s) => !s.forcedIdle)).toBe(true);
    // rank 1 never ran an idle pass: it stepped only when it had work
    expect(r1.filter((s) => s.mode === 'idle' && !s.forwarded)).toHaveLength(0);
    // rank 0 decoded during rank 1's prefills
    const prefillWindows = r1.filter((s) => s.mode === 'prefill').map((s) => [s.startMs, s.endMs] as const);
    const overlapping = r0.filter(
      (s) => s.mode === 'decode' && prefillWindows.some(([a, b]) => s.startMs < b && s.endMs > a),
    );
    expect(overlapping.length).toBeGreaterThan(0);
  });

  it('the delayer negotiates across the lockstep group: "mixed" delays max-delay-passes − 1 passes, then wait_timeout', async () => {
    const P = 5;
    const { c, byRank } = twoRanks({
      enableDpAttention: true,
      delayer: { enabled: true, maxDelayPasses: P } as never,
    });
    await c.run();
    const [r0, r1] = byRank as [PassStats[], PassStats[]];
    // both ranks see the same verdict every pass
    for (let i = 0; i < r0.length; i++) {
      expect(r0[i]!.delayer!.reason).toBe(r1[i]!.delayer!.reason);
      expect(r0[i]!.delayer!.allow).toBe(r1[i]!.delayer!.allow);
    }
    // rank 1's first prompt arrives while rank 0 has nothing waiting: mixed → P−1 delays, then wait_timeout
    // at t=0 rank 0 alone has prompts: mixed from the start, rank 0 held P−1 passes
    expect(r0.slice(0, P).map((s) => s.delayer!.reason)).toEqual([
      ...Array(P - 1).fill('delay'),
      'wait_timeout',
    ]);
    expect(r0.slice(0, P).map((s) => s.mode)).toEqual([...Array(P - 1).fill('idle'), 'prefill']);
    const firstMixed = r1.findIndex((s) => s.delayer!.inputEstimation === 'mixed' && s.delayer!.prefillable);
    expect(firstMixed).toBeGreaterThan(P);
    const seq = r1.slice(firstMixed, firstMixed + P).map((s) => s.delayer!.reason);
    expect(seq).toEqual([...Array(P - 1).fill('delay'), 'wait_timeout']);
    expect(r1[firstMixed + P - 1]!.mode).toBe('prefill');
    expect(r1.slice(firstMixed, firstMixed + P - 1).every((s) => s.mode === 'idle')).toBe(true);
    // meanwhile rank 0 decoded
    expect(r0.slice(firstMixed, firstMixed + P - 1).every((s) => s.mode === 'decode')).toBe(true);
  });
});

describe('collectives', () => {
  it('InProcessGatherGroup completes a round when every rank has arrived, with one timestamp', async () => {
    const clock = new ManualClock(5);
    const g = new InProcessGatherGroup(3, 2, clock);
    const got: string[] = [];
    const arrive = (r: number) =>
      Promise.resolve(g.endpoint(r).gather([r, r * 10])).then((res) => {
        got.push(
          `${r}:${res.round}:${res.timestampMs}:${res.rows.map((x) => Array.from(x).join('/')).join(',')}`,
        );
      });
    const ps = [arrive(2), arrive(0)];
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual([]);
    ps.push(arrive(1));
    await Promise.all(ps);
    expect(got.sort()).toEqual(['0:0:5:0/0,1/10,2/20', '1:0:5:0/0,1/10,2/20', '2:0:5:0/0,1/10,2/20']);
    await expect(Promise.resolve(g.endpoint(0).gather([1]))).rejects.toThrow(/length 1/);
    const pending = g.endpoint(1).gather([1, 1]);
    g.close('rank 2 died');
    await expect(pending).rejects.toMatchObject({ code: 'TSI_ERR_COLLECTIVE_CLOSED' });
  });

  it('PrefetchedAllGather hands the delayer the prefetched round, and refuses a different row or a missing prefetch', async () => {
    const g = new InProcessGatherGroup(1, 3, new ManualClock(0));
    const pf = new PrefetchedAllGather(g.endpoint(0));
    expect(() => pf.gather([1, 2, 3])).toThrow(/without a prefetched round/);
    await pf.prefetch([1, 2, 3]);
    expect(() => pf.gather([1, 2, 4])).toThrow(/differs from the prefetched row/);
    const res = pf.gather([1, 2, 3]);
    expect(Array.from(res.rows[0]!)).toEqual([1, 2, 3]);
    expect(pf.primed).toBe(false);
  });
});

describe('lockstep + delayer under random arrivals and aborts', () => {
  it('requests arriving or aborted while a rank waits in a gather never break the protocol; everything completes', async () => {
    const { createRng } = await import('@tsinfer/core');
    const rng = createRng(5);
    const rec = new Recorder();
    const c = new VirtualCluster({
      profile: profile({ kv: 20_000, eosProbability: 0.02 }),
      config: {
        dpSize: 3,
        enableDpAttention: true,
        chunkedPrefillSize: 128,
        maxRunningRequests: 96,
        delayer: { enabled: true, queueMinRatio: 0.3, maxDelayMs: 200, maxDelayPasses: 8 } as never,
      },
      sink: (r) => rec.sink(r),
    });
    const aborted = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const rank = rng.int(0, 2);
      const at = rng.int(0, 3000) + rng.next();
      const rid = `x${i}`;
      c.submit(at, rank, { rid, promptTokens: prompt(rng.int(5, 400), i), maxNewTokens: rng.int(1, 150) });
      if (rng.next() < 0.15) {
        aborted.add(rid);
        c.abortAt(at + rng.int(0, 400) + rng.next(), rank, rid);
      }
    }
    await c.run();
    expect(rec.finished.size).toBe(300);
    const reasons = [...rec.finished.values()].map((f) => f.reason);
    expect(reasons.filter((r) => r === 'abort').length).toBeGreaterThan(5);
    for (const f of rec.finished.values()) if (f.reason === 'abort') expect(aborted.has(f.rid)).toBe(true);
    for (const r of c.runners) {
      expect(r.kvUsedTokens).toBe(0);
      expect(r.heldRequests).toBe(0);
    }
  });
});
