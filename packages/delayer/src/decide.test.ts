import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type DecisionConfig, type DelayerState, decidePrefill } from './decide.js';
import { runQueueThresholdExample } from './examples/queue-threshold.js';
import { encodeDelayerRow } from './row.js';

interface PureCase {
  name: string;
  config: {
    max_delay_passes: number;
    token_usage_low_watermark: number | null;
    queue_trigger_enabled: boolean;
    queue_min_ratio: number | null;
    max_delay_ms: number | null;
    enable_dp_attention: boolean;
    dp_size: number;
    skip_first_delayer: boolean;
  };
  prev_state: { delayed_count: number; age_s: number } | null;
  gathered_rows: number[][];
  local: { max_running_requests: number };
  expected: Record<string, unknown>;
  derived?: Record<string, unknown>;
}

const fixture = JSON.parse(
  readFileSync(new URL('../test/fixtures/delayer-cases.json', import.meta.url), 'utf8'),
) as { pure_cases: PureCase[] };

const NOW_MS = 1_234_567;

function fromCase(c: PureCase): {
  config: DecisionConfig;
  state: DelayerState;
} {
  return {
    config: {
      maxDelayPasses: c.config.max_delay_passes,
      tokenUsageLowWatermark: c.config.token_usage_low_watermark,
      queueMinRatio: c.config.queue_trigger_enabled ? c.config.queue_min_ratio : null,
      maxDelayMs: c.config.max_delay_ms,
      dpSize: c.config.dp_size,
      enableDpAttention: c.config.enable_dp_attention,
    },
    state: {
      prev:
        c.prev_state === null
          ? null
          : { delayedCount: c.prev_state.delayed_count, startMs: NOW_MS - c.prev_state.age_s * 1000 },
      skipFirst: c.config.skip_first_delayer,
    },
  };
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object') {
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
    Object.freeze(v);
  }
  return v;
}

const BASE: DecisionConfig = {
  maxDelayPasses: 30,
  tokenUsageLowWatermark: null,
  queueMinRatio: null,
  maxDelayMs: null,
  dpSize: 1,
  enableDpAttention: true,
};
const FRESH: DelayerState = { prev: null, skipFirst: false };

describe('decidePrefill: delayer-cases.json pure_cases (SGLang mocked unit tests)', () => {
  it('has the 12 vectors', () => {
    expect(fixture.pure_cases).toHaveLength(12);
  });

  for (const c of fixture.pure_cases) {
    it(c.name, () => {
      const { config, state } = fromCase(c);
      const rows = deepFreeze(c.gathered_rows.map((r) => [...r]));
      deepFreeze(state);
      deepFreeze(config);
      const out = decidePrefill(
        rows,
        { maxRunningRequests: c.local.max_running_requests },
        state,
        NOW_MS,
        config,
      );
      const want = { ...c.derived, ...c.expected };
      if ('allow' in want) expect(out.allow).toBe(want['allow']);
      if ('reason' in want) expect(out.reason).toBe(want['reason']);
      if ('input_estimation' in want) expect(out.inputEstimation).toBe(want['input_estimation']);
      if ('skip_first_delayer_after' in want)
        expect(out.state.skipFirst).toBe(want['skip_first_delayer_after']);
      if ('wait_forward_passes' in want) expect(out.waitForwardPasses).toBe(want['wait_forward_passes']);
      if ('next_delayed_count' in want) {
        expect(out.state.prev === null ? null : out.state.prev.delayedCount).toBe(want['next_delayed_count']);
      }
      // Invariants every case shares.
      expect(out.numPrefillable).toBe(c.gathered_rows.filter((r) => r[0] === 1).length);
      expect(out.numTokenWatermarkForceAllow).toBe(c.gathered_rows.filter((r) => r[1] === 1).length);
      expect(out.allow).toBe(out.reason !== 'delay');
      expect(out.state.prev === null).toBe(out.allow);
    });
  }
});

describe('decidePrefill: purity and record shape', () => {
  it('does not mutate rows, state or config (frozen inputs) and returns fresh state objects', () => {
    const rows = deepFreeze([
      [1, 0, 9, 5, 0],
      [1, 0, 3, 2, 7],
    ]);
    const prev = { delayedCount: 2, startMs: NOW_MS - 10 };
    const state = deepFreeze({ prev, skipFirst: false });
    const config = deepFreeze({ ...BASE, maxDelayPasses: 3 });
    const a = decidePrefill(rows, { maxRunningRequests: 10 }, state, NOW_MS, config);
    expect(a.reason).toBe('delay');
    expect(a.state.prev).toEqual({ delayedCount: 3, startMs: NOW_MS - 10 });
    expect(a.state.prev).not.toBe(prev);
    expect(prev).toEqual({ delayedCount: 2, startMs: NOW_MS - 10 });
    // Same inputs, same answer: nothing leaked between calls.
    const b = decidePrefill(rows, { maxRunningRequests: 10 }, state, NOW_MS, config);
    expect(b).toEqual(a);
    expect(b.state).not.toBe(a.state);
  });

  it('accepts typed-array rows (what the all-gather returns)', () => {
    const rows = [Float64Array.from([1, 0, 9, 5, 0])];
    const out = decidePrefill(rows, { maxRunningRequests: 10 }, FRESH, NOW_MS, BASE);
    expect(out.reason).toBe('delay');
  });

  it('zero rows is a none pass (nobody prefillable)', () => {
    const out = decidePrefill([], { maxRunningRequests: 10 }, FRESH, NOW_MS, BASE);
    expect(out).toMatchObject({ allow: true, reason: '', inputEstimation: 'none', numPrefillable: 0 });
  });
});

describe('decidePrefill: baseline formulas', () => {
  const q = (rb: number, mp: number, wq: number, ratio: number, mrr = 1000) =>
    decidePrefill([[1, 0, rb, mp, wq]], { maxRunningRequests: mrr }, FRESH, NOW_MS, {
      ...BASE,
      queueMinRatio: ratio,
    });

  it('queue threshold is Math.trunc(RB * R) capped by MP; WQ < threshold delays', () => {
    // RB 64, R 0.25 -> 16; MP 20 -> 16.
    expect(q(64, 20, 15, 0.25).reason).toBe('delay');
    expect(q(64, 20, 16, 0.25).reason).toBe('no_wait');
    // MP caps: min(16, 10) = 10.
    expect(q(64, 10, 9, 0.25).reason).toBe('delay');
    expect(q(64, 10, 10, 0.25).reason).toBe('no_wait');
    // trunc, not round: 7 * 0.3 = 2.1 -> 2 ; 3 * 0.9 = 2.7 -> 2.
    expect(q(7, 20, 1, 0.3).reason).toBe('delay');
    expect(q(7, 20, 2, 0.3).reason).toBe('no_wait');
    expect(q(3, 20, 1, 0.9).reason).toBe('delay');
    expect(q(3, 20, 2, 0.9).reason).toBe('no_wait');
    // IEEE product: 10 * 0.7 = 7.000000000000001 -> 7; 0.29 * 100 = 28.999999999999996 -> 28.
    expect(q(10, 20, 6, 0.7).reason).toBe('delay');
    expect(q(10, 20, 7, 0.7).reason).toBe('no_wait');
    expect(q(100, 50, 27, 0.29).reason).toBe('delay');
    expect(q(100, 50, 28, 0.29).reason).toBe('no_wait');
  });

  it('queue trigger is off when trunc(RB*R) is 0, when RB is 0, and when R is 0', () => {
    expect(q(1, 20, 0, 0.5).reason).toBe('no_wait'); // trunc(0.5) = 0
    expect(q(0, 20, 0, 0.5).reason).toBe('no_wait'); // RB = 0
    expect(q(64, 20, 0, 0).reason).toBe('no_wait'); // R = 0
    expect(q(64, 0, 0, 0.5).reason).toBe('no_wait'); // cold start: MP = 0
  });

  it('takes RB, MP and WQ as column maxima, possibly from different ranks', () => {
    const rows = [
      [1, 0, 64, 1, 0],
      [1, 0, 1, 20, 0],
      [1, 0, 1, 1, 15],
    ];
    const cfg = { ...BASE, queueMinRatio: 0.25 };
    expect(decidePrefill(rows, { maxRunningRequests: 1000 }, FRESH, NOW_MS, cfg).reason).toBe('delay');
    const full = rows.map((r, i) => (i === 2 ? [1, 0, 1, 1, 16] : r));
    expect(decidePrefill(full, { maxRunningRequests: 1000 }, FRESH, NOW_MS, cfg).reason).toBe('no_wait');
  });

  it('slot condition is (maxRunning - RB) < MP, strict', () => {
    const s = (mrr: number, rb: number, mp: number) =>
      decidePrefill([[1, 0, rb, mp, 0]], { maxRunningRequests: mrr }, FRESH, NOW_MS, BASE).reason;
    expect(s(10, 6, 5)).toBe('delay'); // 4 < 5
    expect(s(10, 5, 5)).toBe('no_wait'); // 5 < 5 false
    // maxRunningRequests not supplied (0): 0 - 1 < 0 delays, as in SGLang (#32389).
    expect(s(0, 1, 0)).toBe('delay');
  });

  it('the deadline compares (now - start) >= D, and D null means 5000 ms', () => {
    const rows = [[1, 0, 64, 20, 5]];
    const at = (ageMs: number, d: number | null) =>
      decidePrefill(
        rows,
        { maxRunningRequests: 1000 },
        { prev: { delayedCount: 4, startMs: NOW_MS - ageMs }, skipFirst: false },
        NOW_MS,
        { ...BASE, queueMinRatio: 0.25, maxDelayMs: d },
      );
    expect(at(4999.999, null).reason).toBe('delay');
    expect(at(5000, null)).toMatchObject({
      allow: true,
      reason: 'wait_success',
      waitForwardPasses: 4,
      waitMs: 5000,
    });
    expect(at(99, 100).reason).toBe('delay');
    expect(at(100, 100).reason).toBe('wait_success');
    // D = 0: never consulted without an open episode, releases on the next pass.
    const first = decidePrefill(rows, { maxRunningRequests: 1000 }, FRESH, NOW_MS, {
      ...BASE,
      queueMinRatio: 0.25,
      maxDelayMs: 0,
    });
    expect(first.reason).toBe('delay');
    const second = decidePrefill(rows, { maxRunningRequests: 1000 }, first.state, NOW_MS, {
      ...BASE,
      queueMinRatio: 0.25,
      maxDelayMs: 0,
    });
    expect(second.reason).toBe('wait_success');
  });

  it('the deadline does not release a slot delay (no bound in the baseline)', () => {
    const out = decidePrefill(
      [[1, 0, 9, 5, 0]],
      { maxRunningRequests: 10 },
      { prev: { delayedCount: 500, startMs: NOW_MS - 60_000 }, skipFirst: false },
      NOW_MS,
      { ...BASE, queueMinRatio: 0.5, maxDelayMs: 100 },
    );
    expect(out).toMatchObject({ allow: false, reason: 'delay', state: { prev: { delayedCount: 501 } } });
  });

  it('with DP attention off uses ceil(maxRunningRequests / dpSize) slots', () => {
    // mrr 10, dp 4 -> 3 slots; RB 1, MP 3: 3 - 1 = 2 < 3 -> delay. DP attention on: 10 - 1 < 3 false.
    const rows = [[1, 0, 1, 3, 0]];
    const off = decidePrefill(rows, { maxRunningRequests: 10 }, FRESH, NOW_MS, {
      ...BASE,
      dpSize: 4,
      enableDpAttention: false,
    });
    const on = decidePrefill(rows, { maxRunningRequests: 10 }, FRESH, NOW_MS, {
      ...BASE,
      dpSize: 4,
      enableDpAttention: true,
    });
    expect(off.reason).toBe('delay');
    expect(on.reason).toBe('no_wait');
    // ceil, not floor: mrr 9, dp 4 -> 3 (floor would give 2 and 2 - 1 = 1 < 2 delays).
    const ceil = decidePrefill([[1, 0, 1, 2, 0]], { maxRunningRequests: 9 }, FRESH, NOW_MS, {
      ...BASE,
      dpSize: 4,
      enableDpAttention: false,
    });
    expect(ceil.reason).toBe('no_wait');
  });

  it('mixed: P <= 1 releases at once with wait_timeout', () => {
    const out = decidePrefill(
      [
        [1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
      ],
      { maxRunningRequests: 0 },
      FRESH,
      NOW_MS,
      { ...BASE, maxDelayPasses: 1 },
    );
    expect(out).toMatchObject({ allow: true, reason: 'wait_timeout', inputEstimation: 'mixed' });
  });
});

describe('decidePrefill: wait metrics (histogram fix)', () => {
  it('every allow path carries prev.delayedCount and now - prev.startMs; delays carry 0', () => {
    const prev = { delayedCount: 7, startMs: NOW_MS - 1500 };
    const st = { prev, skipFirst: false };
    const cases: Array<[number[][], string]> = [
      [[[0, 0, 0, 0, 0]], ''],
      [[[1, 1, 0, 0, 0]], 'token_watermark'],
      [[[1, 0, 0, 0, 0]], 'wait_success'],
      [
        [
          [1, 0, 0, 0, 0],
          [0, 0, 0, 0, 0],
        ],
        'wait_timeout',
      ],
    ];
    for (const [rows, reason] of cases) {
      const out = decidePrefill(rows, { maxRunningRequests: 100 }, st, NOW_MS, {
        ...BASE,
        maxDelayPasses: 3,
      });
      expect(out.reason).toBe(reason);
      expect(out.waitForwardPasses).toBe(7);
      expect(out.waitMs).toBe(1500);
    }
    const delayed = decidePrefill([[1, 0, 9, 5, 0]], { maxRunningRequests: 10 }, st, NOW_MS, BASE);
    expect(delayed).toMatchObject({ reason: 'delay', waitForwardPasses: 0, waitMs: 0 });
    const fresh = decidePrefill([[1, 0, 0, 0, 0]], { maxRunningRequests: 10 }, FRESH, NOW_MS, BASE);
    expect(fresh).toMatchObject({ reason: 'no_wait', waitForwardPasses: 0, waitMs: 0 });
  });
});

describe('decidePrefill: opt-in fixes', () => {
  it('capSlotDelay: a slot delay stops after P-1 delays in the episode and releases as wait_timeout', () => {
    const cfg = { ...BASE, maxDelayPasses: 3, capSlotDelay: true };
    const rows = [[1, 0, 9, 5, 0]];
    let state: DelayerState = FRESH;
    const reasons: string[] = [];
    for (let i = 0; i < 4; i++) {
      const out = decidePrefill(rows, { maxRunningRequests: 10 }, state, NOW_MS + i, cfg);
      reasons.push(out.reason);
      state = out.state;
    }
    expect(reasons).toEqual(['delay', 'delay', 'wait_timeout', 'delay']);
    // Off (baseline): never released.
    state = FRESH;
    for (let i = 0; i < 50; i++) {
      state = decidePrefill(rows, { maxRunningRequests: 10 }, state, NOW_MS, {
        ...cfg,
        capSlotDelay: false,
      }).state;
    }
    expect(state.prev?.delayedCount).toBe(50);
  });

  it('capSlotDelay leaves a queue delay to its wall-clock cap', () => {
    // Slot (10 - 9 < 5) and queue (trunc(9*0.5)=4, capped by MP 5 -> 4; WQ 0 < 4) both hold.
    const cfg = { ...BASE, maxDelayPasses: 3, capSlotDelay: true, queueMinRatio: 0.5, maxDelayMs: 1000 };
    const at = (count: number, ageMs: number) =>
      decidePrefill(
        [[1, 0, 9, 5, 0]],
        { maxRunningRequests: 10 },
        { prev: { delayedCount: count, startMs: NOW_MS - ageMs }, skipFirst: false },
        NOW_MS,
        cfg,
      ).reason;
    expect(at(2, 10)).toBe('delay'); // slot capped, queue still holds
    expect(at(2, 1000)).toBe('wait_timeout'); // both over: the slot cap labels it
  });

  it('admissionCap replaces MP as the queue threshold cap', () => {
    // Trickle: MP = 1, so the baseline threshold is min(16, 1) = 1 and WQ 1 never waits.
    const rows = [[1, 0, 64, 1, 1]];
    const base = { ...BASE, queueMinRatio: 0.25 };
    expect(decidePrefill(rows, { maxRunningRequests: 1000 }, FRESH, NOW_MS, base).reason).toBe('no_wait');
    const capped = { ...base, admissionCap: 8 };
    expect(decidePrefill(rows, { maxRunningRequests: 1000 }, FRESH, NOW_MS, capped).reason).toBe('delay');
    expect(
      decidePrefill([[1, 0, 64, 1, 8]], { maxRunningRequests: 1000 }, FRESH, NOW_MS, capped).reason,
    ).toBe('no_wait');
    // min(trunc(RB*R), cap): the ratio still bounds it (trunc(64*0.25)=16 < 32).
    const big = { ...base, admissionCap: 32 };
    expect(decidePrefill([[1, 0, 64, 1, 15]], { maxRunningRequests: 1000 }, FRESH, NOW_MS, big).reason).toBe(
      'delay',
    );
    expect(decidePrefill([[1, 0, 64, 1, 16]], { maxRunningRequests: 1000 }, FRESH, NOW_MS, big).reason).toBe(
      'no_wait',
    );
    // null = off.
    const off = { ...base, admissionCap: null };
    expect(decidePrefill(rows, { maxRunningRequests: 1000 }, FRESH, NOW_MS, off).reason).toBe('no_wait');
  });
});

describe('encodeDelayerRow', () => {
  it('packs [prefillable, watermark bit, RB, MP, WQ]', () => {
    const local = {
      prefillable: true,
      tokenUsage: 0.2,
      runningBatch: 3,
      maxPrefillBs: 4,
      waitingQueueLen: 5,
    };
    expect(encodeDelayerRow(local, null)).toEqual([1, 0, 3, 4, 5]);
    expect(encodeDelayerRow(local, 0.3)).toEqual([1, 1, 3, 4, 5]);
    expect(encodeDelayerRow(local, 0.2)).toEqual([1, 0, 3, 4, 5]); // strict <
    expect(encodeDelayerRow({ ...local, prefillable: false }, 0.9)).toEqual([0, 0, 3, 4, 5]);
  });
});

describe('examples/queue-threshold.ts (the docs/delayer.md example)', () => {
  it('waits at 5, admits at 16, and the 5000 ms timeout releases', () => {
    expect(runQueueThresholdExample()).toEqual([
      { waitingQueueLen: 5, atMs: 0, allow: false, reason: 'delay' },
      { waitingQueueLen: 16, atMs: 100, allow: true, reason: 'wait_success' },
      { waitingQueueLen: 5, atMs: 1000, allow: false, reason: 'delay' },
      { waitingQueueLen: 5, atMs: 3000, allow: false, reason: 'delay' },
      { waitingQueueLen: 5, atMs: 6000, allow: true, reason: 'wait_success' },
    ]);
  });
});
