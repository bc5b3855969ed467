/**
 * Multi-rank scenarios: several ranks' PrefillDelayers (one per DP rank, each
 * with its own clock) driven pass by pass through a shared in-test round.
 * Each row of a scenario gives every rank's inputs for one pass and the
 * verdict every rank must reach. Together they cover every branch and
 * reason of the decision (docs/delayer.md, "How one pass is decided").
 */
import { describe, expect, it } from 'vitest';
import { Cluster, type RankOutcome, type RankPass } from '../test/round-gather.js';
import type { PrefillDelayerConfig } from './config.js';
import type { DelayerReason, InputEstimation } from './decide.js';
import { MaxPrefillBsTracker } from './max-prefill-bs.js';

/** A rank that wants to prefill with running batch rb, max_prefill_bs mp, waiting queue wq. */
const P = (rb: number, mp: number, wq: number, mrr = 100, tokenUsage = 0.5): RankPass => ({
  tokenUsage,
  negotiate: {
    prefillable: true,
    runningBatch: rb,
    maxPrefillBs: mp,
    maxRunningRequests: mrr,
    waitingQueueLen: wq,
  },
});
/** A rank with nothing to admit: exits early, finalize reports zeros. */
const IDLE = (tokenUsage = 0.5): RankPass => ({ tokenUsage, negotiate: null });

interface Expect {
  allow: boolean;
  reason: DelayerReason;
  est: InputEstimation;
  /** delayedCount of the next state (null = no open episode). */
  count?: number | null;
  skipFirst?: boolean;
  waitPasses?: number;
  waitMs?: number;
}

interface Step {
  at: number;
  ranks: RankPass[];
  want: Expect;
}

interface Scenario {
  name: string;
  config?: Partial<PrefillDelayerConfig>;
  dpSize?: number;
  enableDpAttention?: boolean;
  steps: Step[];
}

const ALL = (reason: DelayerReason, more: Partial<Expect> = {}): Expect => ({
  allow: reason !== 'delay',
  reason,
  est: 'all',
  ...more,
});
const MIXED = (reason: DelayerReason, more: Partial<Expect> = {}): Expect => ({
  allow: reason !== 'delay',
  reason,
  est: 'mixed',
  ...more,
});
const NONE: Expect = { allow: true, reason: '', est: 'none', count: null };

/** Slot pressure on 2 ranks: 100 slots, RB 98, MP 5 -> 2 free < 5. */
const SLOT2 = [P(98, 5, 0), P(90, 3, 0)];
/** No pressure on 2 ranks. */
const CALM2 = [P(10, 5, 0), P(12, 3, 0)];

const scenarios: Scenario[] = [
  {
    name: 'all, no trigger: no_wait; none: ""',
    steps: [
      { at: 0, ranks: CALM2, want: ALL('no_wait', { count: null, skipFirst: true }) },
      { at: 10, ranks: [IDLE(), IDLE()], want: NONE },
    ],
  },
  {
    name: 'slot condition: first trigger swallowed by skip-first, then delays until slots free up',
    steps: [
      { at: 0, ranks: SLOT2, want: ALL('no_wait', { skipFirst: false, count: null }) },
      { at: 10, ranks: SLOT2, want: ALL('delay', { count: 1 }) },
      { at: 20, ranks: SLOT2, want: ALL('delay', { count: 2 }) },
      // RB falls to 95 on rank 0: 100 - 95 = 5 < 5 is false.
      {
        at: 35,
        ranks: [P(95, 5, 0), P(90, 3, 0)],
        want: ALL('wait_success', { count: null, waitPasses: 2, waitMs: 25 }),
      },
      { at: 40, ranks: SLOT2, want: ALL('delay', { count: 1, skipFirst: false }) },
    ],
  },
  {
    name: 'slot condition in baseline is unbounded (no pass cap, no wall clock)',
    config: { maxDelayPasses: 3, queueMinRatio: 0.5, maxDelayMs: 10 },
    steps: [
      { at: 0, ranks: SLOT2, want: ALL('no_wait') },
      ...Array.from({ length: 8 }, (_, i) => ({
        at: 100 * (i + 1),
        ranks: SLOT2,
        want: ALL('delay', { count: i + 1 }),
      })),
    ],
  },
  {
    name: 'mixed: delays P-1 passes then wait_timeout; queue/slot/skip-first play no role',
    config: { maxDelayPasses: 3, queueMinRatio: 0.5 },
    steps: [
      { at: 0, ranks: [P(98, 5, 0), IDLE()], want: MIXED('delay', { count: 1, skipFirst: true }) },
      { at: 10, ranks: [P(98, 5, 0), IDLE()], want: MIXED('delay', { count: 2 }) },
      {
        at: 20,
        ranks: [P(98, 5, 0), IDLE()],
        want: MIXED('wait_timeout', { count: null, waitPasses: 2, waitMs: 20 }),
      },
      { at: 30, ranks: [IDLE(), P(0, 0, 0)], want: MIXED('delay', { count: 1, skipFirst: true }) },
    ],
  },
  {
    name: 'watermark in all: a prefillable rank below the watermark forces allow, skip-first untouched',
    config: { tokenUsageLowWatermark: 0.3 },
    steps: [
      {
        at: 0,
        ranks: [P(98, 5, 0, 100, 0.1), P(90, 3, 0)],
        want: ALL('token_watermark', { skipFirst: true }),
      },
      // usage exactly at the watermark does not count (strict <)
      { at: 10, ranks: [P(98, 5, 0, 100, 0.3), P(90, 3, 0)], want: ALL('no_wait', { skipFirst: false }) },
      { at: 20, ranks: SLOT2, want: ALL('delay', { count: 1 }) },
      {
        at: 30,
        ranks: [P(98, 5, 0), P(90, 3, 0, 100, 0.05)],
        want: ALL('token_watermark', { count: null, waitPasses: 1 }),
      },
    ],
  },
  {
    name: 'watermark in mixed: releases an open mixed episode; a non-prefillable low-usage rank forces nothing',
    config: { tokenUsageLowWatermark: 0.3, maxDelayPasses: 10 },
    steps: [
      { at: 0, ranks: [P(0, 0, 0), IDLE(0.01)], want: MIXED('delay', { count: 1 }) },
      { at: 10, ranks: [P(0, 0, 0), IDLE(0.01)], want: MIXED('delay', { count: 2 }) },
      { at: 15, ranks: [IDLE(0.01), IDLE(0.01)], want: NONE },
      { at: 20, ranks: [P(0, 0, 0), IDLE(0.01)], want: MIXED('delay', { count: 1 }) },
      {
        at: 30,
        ranks: [P(0, 0, 0, 100, 0.2), IDLE()],
        want: MIXED('token_watermark', { count: null, waitPasses: 1, waitMs: 10 }),
      },
    ],
  },
  {
    name: 'queue condition: waits while the longest queue < min(trunc(RB*R), MP), admits when it fills',
    config: { queueMinRatio: 0.25 },
    steps: [
      // RB max 64, MP max 20, WQ max 5: threshold min(16, 20) = 16. Slots: 200 - 64 >= 20.
      { at: 0, ranks: [P(64, 20, 5, 200), P(10, 2, 3, 200)], want: ALL('no_wait', { skipFirst: false }) },
      { at: 10, ranks: [P(64, 20, 5, 200), P(10, 2, 3, 200)], want: ALL('delay', { count: 1 }) },
      { at: 20, ranks: [P(64, 20, 15, 200), P(10, 2, 3, 200)], want: ALL('delay', { count: 2 }) },
      // the maximum comes from the other rank
      {
        at: 30,
        ranks: [P(64, 20, 15, 200), P(10, 2, 16, 200)],
        want: ALL('wait_success', { waitPasses: 2, waitMs: 20 }),
      },
    ],
  },
  {
    name: 'queue condition: threshold capped by MP',
    config: { queueMinRatio: 0.25 },
    steps: [
      { at: 0, ranks: [P(64, 4, 3, 200), P(64, 2, 0, 200)], want: ALL('no_wait') },
      { at: 10, ranks: [P(64, 4, 3, 200), P(64, 2, 0, 200)], want: ALL('delay') },
      { at: 20, ranks: [P(64, 4, 4, 200), P(64, 2, 0, 200)], want: ALL('wait_success') },
    ],
  },
  {
    name: 'queue condition off: trunc(RB*R) = 0, RB = 0, R = 0',
    config: { queueMinRatio: 0.5 },
    steps: [
      { at: 0, ranks: SLOT2, want: ALL('no_wait', { skipFirst: false }) }, // consume skip-first
      { at: 10, ranks: [P(1, 5, 0), P(0, 5, 0)], want: ALL('no_wait') }, // trunc(1 * 0.5) = 0
      { at: 20, ranks: [P(0, 5, 0), P(0, 5, 0)], want: ALL('no_wait') }, // RB = 0
    ],
  },
  {
    name: 'queue condition with R = 0 never fires',
    config: { queueMinRatio: 0 },
    steps: [
      { at: 0, ranks: SLOT2, want: ALL('no_wait', { skipFirst: false }) },
      { at: 10, ranks: [P(64, 20, 0, 200), P(64, 20, 0, 200)], want: ALL('no_wait') },
    ],
  },
  {
    name: 'queue wall-clock timeout releases as wait_success (baseline label)',
    config: { queueMinRatio: 0.25, maxDelayMs: 1000 },
    steps: [
      { at: 0, ranks: [P(64, 20, 5, 200), P(64, 20, 5, 200)], want: ALL('no_wait') },
      { at: 100, ranks: [P(64, 20, 5, 200), P(64, 20, 5, 200)], want: ALL('delay', { count: 1 }) },
      { at: 600, ranks: [P(64, 20, 5, 200), P(64, 20, 5, 200)], want: ALL('delay', { count: 2 }) },
      { at: 1099, ranks: [P(64, 20, 5, 200), P(64, 20, 5, 200)], want: ALL('delay', { count: 3 }) },
      {
        at: 1100,
        ranks: [P(64, 20, 5, 200), P(64, 20, 5, 200)],
        want: ALL('wait_success', { waitPasses: 3, waitMs: 1000 }),
      },
      { at: 1110, ranks: [P(64, 20, 5, 200), P(64, 20, 5, 200)], want: ALL('delay', { count: 1 }) },
    ],
  },
  {
    name: 'queue deadline counts from the episode start, whichever trigger started it',
    config: { queueMinRatio: 0.5, maxDelayMs: 100 },
    steps: [
      { at: 0, ranks: SLOT2, want: ALL('no_wait') },
      { at: 10, ranks: SLOT2, want: ALL('delay', { count: 1 }) }, // slot starts the episode at 10
      // slot clears, queue holds (trunc(20*0.5)=10, MP 5 -> 5; WQ 0 < 5) but 100 ms have passed
      {
        at: 110,
        ranks: [P(20, 5, 0), P(20, 3, 0)],
        want: ALL('wait_success', { waitPasses: 1, waitMs: 100 }),
      },
    ],
  },
  {
    name: 'skip-first is consumed only by an all-branch trigger, not by mixed delays or the watermark',
    config: { tokenUsageLowWatermark: 0.3 },
    steps: [
      { at: 0, ranks: [P(98, 5, 0), IDLE()], want: MIXED('delay', { count: 1, skipFirst: true }) },
      {
        at: 10,
        ranks: [P(98, 5, 0, 100, 0.1), P(90, 3, 0)],
        want: ALL('token_watermark', { skipFirst: true }),
      },
      { at: 20, ranks: [P(98, 5, 0), IDLE()], want: MIXED('delay', { count: 1, skipFirst: true }) },
      // first all-branch trigger: swallowed; the open mixed episode makes it wait_success
      { at: 30, ranks: SLOT2, want: ALL('wait_success', { skipFirst: false, count: null, waitPasses: 1 }) },
      { at: 40, ranks: SLOT2, want: ALL('delay', { count: 1, skipFirst: false }) },
    ],
  },
  {
    name: 'a none pass mid-episode ends it: the next release says no_wait',
    steps: [
      { at: 0, ranks: SLOT2, want: ALL('no_wait') },
      { at: 10, ranks: SLOT2, want: ALL('delay', { count: 1 }) },
      { at: 20, ranks: SLOT2, want: ALL('delay', { count: 2 }) },
      { at: 30, ranks: [IDLE(), IDLE()], want: { ...NONE, waitPasses: 2, waitMs: 20 } },
      { at: 40, ranks: CALM2, want: ALL('no_wait', { waitPasses: 0 }) },
      { at: 50, ranks: SLOT2, want: ALL('delay', { count: 1 }) },
      { at: 60, ranks: [IDLE(), IDLE()], want: NONE },
      { at: 70, ranks: SLOT2, want: ALL('delay', { count: 1 }) }, // the count restarts
    ],
  },
  {
    name: 'three ranks: mixed with two of three, then all',
    config: { maxDelayPasses: 2 },
    steps: [
      { at: 0, ranks: [P(1, 1, 1), P(1, 1, 1), IDLE()], want: MIXED('delay', { count: 1 }) },
      { at: 10, ranks: [P(1, 1, 1), P(1, 1, 1), IDLE()], want: MIXED('wait_timeout', { waitPasses: 1 }) },
      { at: 20, ranks: [P(1, 1, 1), P(1, 1, 1), P(1, 1, 1)], want: ALL('no_wait') },
    ],
  },
  {
    name: 'DP attention off: slots = ceil(maxRunningRequests / dpSize) (one gathered row)',
    dpSize: 4,
    enableDpAttention: false,
    steps: [
      // ceil(10 / 4) = 3 slots; RB 1, MP 3: 3 - 1 = 2 < 3.
      { at: 0, ranks: [P(1, 3, 0, 10)], want: ALL('no_wait', { skipFirst: false }) },
      { at: 10, ranks: [P(1, 3, 0, 10)], want: ALL('delay') },
      // ceil(9 / 4) = 3 too (floor would give 2)
      { at: 20, ranks: [P(1, 2, 0, 9)], want: ALL('wait_success') },
    ],
  },
  {
    name: 'DP attention on with the same numbers: no slot pressure',
    dpSize: 1,
    enableDpAttention: true,
    steps: [{ at: 0, ranks: [P(1, 3, 0, 10)], want: ALL('no_wait', { skipFirst: true }) }],
  },
  {
    name: 'opt-in --prefill-delayer-cap-slot-delay: slot delays end after P-1 with wait_timeout',
    config: { maxDelayPasses: 3, capSlotDelay: true },
    steps: [
      { at: 0, ranks: SLOT2, want: ALL('no_wait') },
      { at: 10, ranks: SLOT2, want: ALL('delay', { count: 1 }) },
      { at: 20, ranks: SLOT2, want: ALL('delay', { count: 2 }) },
      { at: 30, ranks: SLOT2, want: ALL('wait_timeout', { count: null, waitPasses: 2, waitMs: 20 }) },
      { at: 40, ranks: SLOT2, want: ALL('delay', { count: 1 }) },
    ],
  },
  {
    name: 'opt-in --prefill-delayer-admission-cap: trickle traffic (MP = 1) still batches',
    config: { queueMinRatio: 0.25, admissionCap: true, prefillMaxRequests: 8, maxDelayMs: 1000 },
    steps: [
      { at: 0, ranks: [P(64, 1, 1, 200), P(64, 1, 0, 200)], want: ALL('no_wait') },
      // threshold min(16, 8) = 8 instead of min(16, MP 1) = 1
      { at: 10, ranks: [P(64, 1, 1, 200), P(64, 1, 0, 200)], want: ALL('delay') },
      { at: 20, ranks: [P(64, 1, 7, 200), P(64, 1, 0, 200)], want: ALL('delay') },
      { at: 30, ranks: [P(64, 1, 8, 200), P(64, 1, 0, 200)], want: ALL('wait_success', { waitPasses: 2 }) },
    ],
  },
  {
    name: 'baseline without the admission cap: the same trickle never waits',
    config: { queueMinRatio: 0.25, prefillMaxRequests: 8 },
    steps: [
      { at: 0, ranks: [P(64, 1, 1, 200), P(64, 1, 0, 200)], want: ALL('no_wait') },
      { at: 10, ranks: [P(64, 1, 1, 200), P(64, 1, 0, 200)], want: ALL('no_wait') },
    ],
  },
];

function check(got: RankOutcome, want: Expect, where: string): void {
  expect({ allow: got.allow, reason: got.reason, est: got.inputEstimation }, where).toEqual({
    allow: want.allow,
    reason: want.reason,
    est: want.est,
  });
  if (want.count !== undefined) {
    expect(got.state.prev === null ? null : got.state.prev.delayedCount, `${where} count`).toBe(want.count);
  }
  if (want.skipFirst !== undefined) expect(got.state.skipFirst, `${where} skipFirst`).toBe(want.skipFirst);
  if (want.waitPasses !== undefined)
    expect(got.waitForwardPasses, `${where} waitPasses`).toBe(want.waitPasses);
  if (want.waitMs !== undefined) expect(got.waitMs, `${where} waitMs`).toBe(want.waitMs);
}

describe('multi-rank scenarios (every rank reaches the same verdict)', () => {
  for (const s of scenarios) {
    it(s.name, () => {
      const worldSize = s.steps[0]!.ranks.length;
      const enableDpAttention = s.enableDpAttention ?? true;
      const cluster = new Cluster(
        worldSize,
        { config: s.config ?? {}, dpSize: s.dpSize ?? worldSize, enableDpAttention },
        // skewed local clocks: irrelevant with the shared round timestamp
        [0, 250, -400].slice(0, worldSize),
      );
      s.steps.forEach((step, i) => {
        const outs = cluster.pass(step.ranks, step.at);
        outs.forEach((o, r) => {
          check(o, step.want, `${s.name} / pass ${i} / rank ${r}`);
        });
        for (const o of outs) expect(o).toEqual(outs[0]);
      });
    });
  }
});

describe('reason coverage', () => {
  it('the scenario table exercises every reason in every status it can occur in', () => {
    const seen = new Set(scenarios.flatMap((s) => s.steps.map((st) => `${st.want.est}/${st.want.reason}`)));
    for (const k of [
      'all/no_wait',
      'all/wait_success',
      'all/token_watermark',
      'all/delay',
      'all/wait_timeout',
      'none/',
      'mixed/token_watermark',
      'mixed/delay',
      'mixed/wait_timeout',
    ]) {
      expect(seen.has(k), k).toBe(true);
    }
  });
});

describe('known SGLang behaviour kept: maxRunningRequests is local and not gathered', () => {
  it('a rank whose first negotiation omits it (ignore_eos path) can split from its peers', () => {
    const cluster = new Cluster(2, { dpSize: 2, enableDpAttention: true });
    cluster.pass(SLOT2, 0); // consume skip-first on both ranks
    const outs = cluster.pass([{ negotiate: { prefillable: true } }, P(5, 3, 0, 100)], 10);
    // rank 0: 0 - 5 < 3 delays; rank 1: 100 - 5 < 3 is false.
    expect(outs.map((o) => o.reason)).toEqual(['delay', 'no_wait']);
  });
});

describe('opt-in --prefill-delayer-max-prefill-bs-window across ranks', () => {
  /**
   * 100 slots per rank. Pass 0 admits a burst of 40 on rank 0; afterwards
   * each allowed pass admits 2 per rank (running batch +2) and one request
   * finishes per pass (running batch -1). Each rank feeds its own tracker.
   */
  function run(window: number): { maxRunning: number; delays: number } {
    const cluster = new Cluster(2, {
      dpSize: 2,
      enableDpAttention: true,
      config: { maxPrefillBsWindow: window },
    });
    const trackers = [0, 1].map(
      () => new MaxPrefillBsTracker(cluster.delayers[0]!.config.maxPrefillBsWindow),
    );
    let rb = 20;
    let maxRunning = rb;
    let delays = 0;
    for (let pass = 0; pass < 100; pass++) {
      const outs = cluster.pass(
        trackers.map((t) => P(rb, t.value, 5, 100)),
        pass * 10,
      );
      if (outs[0]!.allow) {
        trackers.forEach((t, r) => {
          t.record(pass === 0 && r === 0 ? 40 : 2);
        });
        if (pass > 0) rb += 2;
      } else {
        delays++;
      }
      rb = Math.max(0, rb - 1);
      maxRunning = Math.max(maxRunning, rb);
    }
    return { maxRunning, delays };
  }

  it('baseline: one burst clamps the running batch near 100 - 40 for good', () => {
    const { maxRunning, delays } = run(0);
    // 100 - 40 = 60 free-slot bar; 62 once, when skip-first lets the first trigger through.
    expect(maxRunning).toBeLessThanOrEqual(62);
    expect(delays).toBeGreaterThan(10);
  });

  it('window 4: the burst ages out after 4 admissions and the running batch fills up', () => {
    const { maxRunning } = run(4);
    expect(maxRunning).toBeGreaterThanOrEqual(90);
  });
});
