import { readFileSync } from 'node:fs';
import {
  CollectiveClosedError,
  CollectiveTimeoutError,
  InvalidConfigError,
  ManualClock,
} from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { RecordingAllGather } from '../test/round-gather.js';
import type { AllGather, GatherResult } from './collective/all-gather.js';
import { LocalAllGather } from './collective/local.js';
import { DelayerProtocolError, PrefillDelayer, type PrefillDelayerOptions } from './prefill-delayer.js';

interface ExecutorStep {
  op: 'negotiate' | 'finalize';
  local_prefillable?: boolean;
  actual_prefill?: boolean;
}
interface ExecutorCase {
  name: string;
  executor_token_usage?: number;
  steps: ExecutorStep[];
  expected: {
    both_return_same_value?: boolean;
    delayer_negotiations: number;
    negotiated_with?: Record<string, number | boolean>;
  };
}

const fixture = JSON.parse(
  readFileSync(new URL('../test/fixtures/delayer-cases.json', import.meta.url), 'utf8'),
) as { executor_cases: ExecutorCase[] };

function single(
  config: PrefillDelayerOptions['config'] = {},
  extra: Partial<PrefillDelayerOptions> = {},
): { d: PrefillDelayer; g: RecordingAllGather; clock: ManualClock } {
  const clock = new ManualClock(10_000);
  const g = new RecordingAllGather(clock);
  const d = new PrefillDelayer({ config, dpSize: 1, enableDpAttention: true, allGather: g, clock, ...extra });
  return { d, g, clock };
}

describe('executor: delayer-cases.json executor_cases', () => {
  it('has the 3 vectors', () => expect(fixture.executor_cases).toHaveLength(3));

  for (const c of fixture.executor_cases) {
    it(c.name, () => {
      const { d, g } = single();
      const pass = d.beginPass(c.executor_token_usage ?? 0.5);
      const returned: boolean[] = [];
      let finalized = false;
      for (const s of c.steps) {
        if (s.op === 'negotiate') returned.push(pass.negotiate({ prefillable: s.local_prefillable! }));
        else {
          pass.finalize(s.actual_prefill!);
          finalized = true;
        }
      }
      if (!finalized) pass.finalize(false);
      expect(g.calls.length).toBe(c.expected.delayer_negotiations);
      if (c.expected.both_return_same_value) {
        expect(returned).toHaveLength(2);
        expect(returned[1]).toBe(returned[0]);
      }
      if (c.expected.negotiated_with) {
        const w = c.expected.negotiated_with;
        expect(d.lastNegotiation!.local).toEqual({
          prefillable: w['local_prefillable'],
          tokenUsage: w['token_usage'],
          runningBatch: w['running_batch'],
          maxPrefillBs: w['max_prefill_bs'],
          maxRunningRequests: w['max_running_requests'],
          waitingQueueLen: w['waiting_queue_len'],
        });
        expect(g.calls[0]).toEqual([0, 0, 0, 0, 0]);
      }
    });
  }
});

describe('executor: first call wins, one gather per pass', () => {
  it('a later negotiate returns the cached verdict even when its own arguments would decide otherwise', () => {
    const { d, g } = single();
    // Consume skip-first with a slot trigger.
    let p = d.beginPass(0.5);
    expect(p.negotiate({ prefillable: true, runningBatch: 9, maxPrefillBs: 5, maxRunningRequests: 10 })).toBe(
      true,
    );
    p.finalize(true);
    expect(d.state.skipFirst).toBe(false);
    p = d.beginPass(0.5);
    expect(p.negotiate({ prefillable: true, runningBatch: 9, maxPrefillBs: 5, maxRunningRequests: 10 })).toBe(
      false,
    );
    // Alone, these would allow (none / no slot pressure); the cached "delay" wins.
    expect(p.negotiate({ prefillable: false })).toBe(false);
    expect(
      p.negotiate({ prefillable: true, runningBatch: 0, maxPrefillBs: 0, maxRunningRequests: 100 }),
    ).toBe(false);
    p.finalize(false);
    expect(g.calls).toEqual([
      [1, 0, 9, 5, 0],
      [1, 0, 9, 5, 0],
    ]);
    expect(d.lastNegotiation).toMatchObject({ allow: false, reason: 'delay', actualExecution: false });
  });

  it('omitted integers default to 0 (the ignore_eos path) and the row carries them', () => {
    const { d, g } = single();
    const p = d.beginPass(0.5);
    p.negotiate({ prefillable: true });
    p.finalize(true);
    expect(g.calls).toEqual([[1, 0, 0, 0, 0]]);
  });

  it('gathers exactly once per pass however many times negotiate is called (0, 1 or many)', () => {
    const { d, g } = single();
    const pattern = [0, 1, 3, 0, 2, 5, 1];
    for (const n of pattern) {
      const p = d.beginPass(0.5);
      for (let i = 0; i < n; i++) p.negotiate({ prefillable: true, runningBatch: i, maxRunningRequests: 8 });
      p.finalize(n > 0);
    }
    expect(g.calls).toHaveLength(pattern.length);
    // finalize-only passes contribute (0,0,0,0,0); negotiated ones the first call's row.
    expect(g.calls.map((r) => r[0])).toEqual(pattern.map((n) => (n > 0 ? 1 : 0)));
    expect(g.calls.every((r) => r[2] === 0)).toBe(true);
  });

  it('uses the pass token-usage snapshot for the watermark bit', () => {
    const { d, g } = single({ tokenUsageLowWatermark: 0.5 });
    let p = d.beginPass(0.1);
    p.negotiate({ prefillable: true, runningBatch: 9, maxPrefillBs: 5, maxRunningRequests: 10 });
    p.finalize(true);
    expect(g.calls[0]).toEqual([1, 1, 9, 5, 0]);
    expect(d.lastNegotiation).toMatchObject({ reason: 'token_watermark', numTokenWatermarkForceAllow: 1 });
    expect(d.state.skipFirst).toBe(true); // the watermark does not consume skip-first
    p = d.beginPass(0.5);
    p.negotiate({ prefillable: true });
    p.finalize(true);
    expect(g.calls[1]).toEqual([1, 0, 0, 0, 0]);
  });

  it('reuses one executor object and one lastNegotiation view', () => {
    const { d } = single();
    expect(d.lastNegotiation).toBeNull();
    const p1 = d.beginPass(0.5);
    p1.finalize(false);
    const v1 = d.lastNegotiation;
    const p2 = d.beginPass(0.5);
    expect(d.lastNegotiation!.actualExecution).toBe(false);
    p2.negotiate({ prefillable: true });
    expect(d.lastNegotiation!.actualExecution).toBeNull();
    p2.finalize(true);
    expect(p2).toBe(p1);
    expect(d.lastNegotiation).toBe(v1);
    expect(d.lastNegotiation!.round).toBe(1);
  });
});

describe('executor: protocol errors', () => {
  it('beginPass while a pass is open, negotiate/finalize outside a pass', () => {
    const { d, g } = single();
    const p = d.beginPass(0.5);
    expect(() => d.beginPass(0.5)).toThrow(DelayerProtocolError);
    p.negotiate({ prefillable: true });
    expect(() => d.beginPass(0.5)).toThrow(DelayerProtocolError);
    p.finalize(true);
    expect(() => p.finalize(true)).toThrow(DelayerProtocolError);
    let err: unknown;
    try {
      p.negotiate({ prefillable: true });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DelayerProtocolError);
    expect((err as DelayerProtocolError).code).toBe('TSI_ERR_DELAYER_PROTOCOL');
    expect(g.calls).toHaveLength(1);
  });

  it('a failed gather: negotiate throws it, is not retried in the pass, finalize records nothing', () => {
    const clock = new ManualClock();
    let fail = true;
    let calls = 0;
    const g: AllGather = {
      rank: 0,
      worldSize: 1,
      rowWidth: 5,
      gather(row): GatherResult {
        calls++;
        if (fail) throw new CollectiveTimeoutError('rank 1 missing');
        return { rows: [Float64Array.from(row)], timestampMs: 0, round: 0 };
      },
      close() {},
    };
    const d = new PrefillDelayer({ dpSize: 1, enableDpAttention: true, allGather: g, clock });
    const p = d.beginPass(0.5);
    expect(() => p.negotiate({ prefillable: true })).toThrow(CollectiveTimeoutError);
    expect(() => p.negotiate({ prefillable: true })).toThrow(CollectiveTimeoutError);
    p.finalize(false);
    expect(calls).toBe(1);
    expect(d.metrics!.snapshot().outcomes.samples).toEqual([]);
    // finalize-only pass whose gather fails throws too
    const p2 = d.beginPass(0.5);
    expect(() => p2.finalize(false)).toThrow(CollectiveTimeoutError);
    fail = false;
    const p3 = d.beginPass(0.5);
    expect(p3.negotiate({ prefillable: true })).toBe(true);
    p3.finalize(true);
    expect(calls).toBe(3);
  });

  it('rejects an all-gather that does not fit', () => {
    const clock = new ManualClock();
    const wide = new LocalAllGather({ clock, rowWidth: 6 });
    expect(() => new PrefillDelayer({ dpSize: 1, enableDpAttention: true, allGather: wide, clock })).toThrow(
      DelayerProtocolError,
    );
    const one = new LocalAllGather({ clock });
    expect(() => new PrefillDelayer({ dpSize: 2, enableDpAttention: true, allGather: one, clock })).toThrow(
      InvalidConfigError,
    );
    expect(() => new PrefillDelayer({ dpSize: 2, enableDpAttention: true, allGather: one, clock })).toThrow(
      /--dp-size/,
    );
    // DP attention off: the group is one DP group whatever --dp-size says.
    expect(
      () => new PrefillDelayer({ dpSize: 4, enableDpAttention: false, allGather: one, clock }),
    ).not.toThrow();
    expect(
      () =>
        new PrefillDelayer({
          dpSize: 1,
          enableDpAttention: true,
          allGather: one,
          clock,
          config: { queueMinRatio: 2 },
        }),
    ).toThrow(/--prefill-delayer-queue-min-ratio/);
  });
});

describe('executor: attention TP groups', () => {
  it('uses the first row of every DP group (TP leaders), ignoring TP peers', () => {
    const clock = new ManualClock();
    // dp 2 x attn tp 2: rows 0 and 2 are leaders.
    const rows = [
      Float64Array.from([1, 0, 9, 5, 0]),
      Float64Array.from([0, 0, 0, 0, 0]),
      Float64Array.from([1, 0, 1, 1, 0]),
      Float64Array.from([0, 0, 0, 0, 0]),
    ];
    let round = 0;
    const g: AllGather = {
      rank: 0,
      worldSize: 4,
      rowWidth: 5,
      gather: () => ({ rows, timestampMs: 0, round: round++ }),
      close() {},
    };
    const d = new PrefillDelayer({ dpSize: 2, enableDpAttention: true, attnTpSize: 2, allGather: g, clock });
    const p = d.beginPass(0.5);
    p.negotiate({ prefillable: true, runningBatch: 9, maxPrefillBs: 5, maxRunningRequests: 10 });
    p.finalize(true);
    // all (not mixed): the peers' zero rows were not read; slot from the maxima (RB 9, MP 5).
    expect(d.lastNegotiation).toMatchObject({ inputEstimation: 'all', numPrefillable: 2, reason: 'no_wait' });
    expect(d.state.skipFirst).toBe(false);
  });
});

describe('executor: metrics once per pass, real waits', () => {
  it('counts every pass once and observes the closed episode on the executed release', () => {
    const { d, clock } = single();
    const slot = { prefillable: true, runningBatch: 9, maxPrefillBs: 5, maxRunningRequests: 10 };
    const run = (input: typeof slot | null, actual: boolean) => {
      const p = d.beginPass(0.5);
      if (input) p.negotiate(input);
      p.finalize(actual);
    };
    run(slot, true); // skip-first: allowed no_wait, observes 0
    clock.advance(30);
    run(slot, false); // delay 1
    clock.advance(30);
    run(slot, true); // delay 2, a chunked continuation still ran
    clock.advance(40);
    run({ ...slot, runningBatch: 1 }, true); // released: waited 2 passes, 70 ms
    run(null, false); // none
    const m = d.metrics!;
    expect(m.outcomeCount('all', true, 'no_wait', true)).toBe(1);
    expect(m.outcomeCount('all', false, 'delay', false)).toBe(1);
    expect(m.outcomeCount('all', false, 'delay', true)).toBe(1);
    expect(m.outcomeCount('all', true, 'wait_success', true)).toBe(1);
    expect(m.outcomeCount('none', true, '', false)).toBe(1);
    const s = m.snapshot();
    expect(s.outcomes.samples.reduce((a, x) => a + x.value, 0)).toBe(5);
    expect(s.waitForwardPasses.count).toBe(2);
    expect(s.waitForwardPasses.sum).toBe(2);
    expect(s.waitSeconds.sum).toBeCloseTo(0.07, 12);
  });

  it('metrics: null disables recording', () => {
    const { d } = single({}, { metrics: null });
    const p = d.beginPass(0.5);
    p.negotiate({ prefillable: true });
    p.finalize(true);
    expect(d.metrics).toBeNull();
    expect(d.lastNegotiation!.reason).toBe('no_wait');
  });
});

describe('executor: deadline clock', () => {
  const queueCfg = { queueMinRatio: 0.5, maxDelayMs: 100 };
  const input = {
    prefillable: true,
    runningBatch: 10,
    maxPrefillBs: 4,
    maxRunningRequests: 100,
    waitingQueueLen: 2,
  };

  function withTimestamps(ts: number[], local: ManualClock, mode: 'shared' | 'local') {
    let i = 0;
    const g: AllGather = {
      rank: 0,
      worldSize: 1,
      rowWidth: 5,
      gather: (row) => ({ rows: [Float64Array.from(row)], timestampMs: ts[i]!, round: i++ }),
      close() {},
    };
    return new PrefillDelayer({
      config: queueCfg,
      dpSize: 1,
      enableDpAttention: true,
      allGather: g,
      clock: local,
      deadlineClock: mode,
    });
  }

  it('shared (default): judged on the round timestamp, whatever the local clock says', () => {
    const local = new ManualClock(0);
    const d = withTimestamps([0, 1000, 1050, 1100], local, 'shared');
    expect(d.deadlineClock).toBe('shared');
    const verdicts: string[] = [];
    for (let k = 0; k < 4; k++) {
      const p = d.beginPass(0.5);
      p.negotiate(input);
      p.finalize(false);
      verdicts.push(d.lastNegotiation!.reason);
      local.advance(1_000_000); // the local clock races ahead; ignored
    }
    // skip-first, delay at 1000, 50 ms in: delay, 100 ms in: released
    expect(verdicts).toEqual(['no_wait', 'delay', 'delay', 'wait_success']);
    expect(d.lastNegotiation!.nowMs).toBe(1100);
  });

  it('local (SGLang): judged on this rank clock read after the gather', () => {
    const local = new ManualClock(0);
    const d = withTimestamps([0, 0, 0, 0], local, 'local');
    const verdicts: string[] = [];
    for (let k = 0; k < 3; k++) {
      const p = d.beginPass(0.5);
      p.negotiate(input);
      p.finalize(false);
      verdicts.push(d.lastNegotiation!.reason);
      local.advance(100);
    }
    expect(verdicts).toEqual(['no_wait', 'delay', 'wait_success']);
    expect(d.lastNegotiation!.nowMs).toBe(200);
  });
});

describe('LocalAllGather', () => {
  it('returns this rank row stamped by its clock, one result object, rounds from 0', () => {
    const clock = new ManualClock(500);
    const g = new LocalAllGather({ clock });
    expect([g.rank, g.worldSize, g.rowWidth]).toEqual([0, 1, 5]);
    const src = [1, 0, 3, 4, 5];
    const r0 = g.gather(src);
    expect(r0.round).toBe(0);
    expect(r0.timestampMs).toBe(500);
    expect(Array.from(r0.rows[0]!)).toEqual([1, 0, 3, 4, 5]);
    src[2] = 99; // the collective copied the row
    expect(r0.rows[0]![2]).toBe(3);
    const rowsRef = r0.rows;
    const viewRef = r0.rows[0];
    clock.advance(7);
    const r1 = g.gather(Float64Array.from([0, 0, 1, 1, 1]));
    expect(r1).toBe(r0);
    expect(r1.rows).toBe(rowsRef);
    expect(r1.rows[0]).toBe(viewRef);
    expect(r1.round).toBe(1);
    expect(r1.timestampMs).toBe(507);
    expect(Array.from(r1.rows[0]!)).toEqual([0, 0, 1, 1, 1]);
  });

  it('rejects malformed rows and gathers after close', () => {
    const g = new LocalAllGather({ clock: new ManualClock() });
    expect(() => g.gather([1, 0, 0, 0])).toThrow(RangeError);
    expect(() => g.gather([1, 0, Number.NaN, 0, 0])).toThrow(RangeError);
    expect(() => new LocalAllGather({ clock: new ManualClock(), rowWidth: 0 })).toThrow(RangeError);
    g.close();
    expect(() => g.gather([1, 0, 0, 0, 0])).toThrow(CollectiveClosedError);
  });

  it('drives a single-rank PrefillDelayer end to end', () => {
    const clock = new ManualClock(0);
    const d = new PrefillDelayer({
      dpSize: 1,
      enableDpAttention: false,
      allGather: new LocalAllGather({ clock }),
      clock,
      config: { queueMinRatio: 0.25 },
    });
    const reasons: string[] = [];
    for (const wq of [5, 5, 5, 16]) {
      const p = d.beginPass(0.5);
      p.negotiate({
        prefillable: true,
        runningBatch: 64,
        maxPrefillBs: 20,
        maxRunningRequests: 128,
        waitingQueueLen: wq,
      });
      p.finalize(true);
      reasons.push(d.lastNegotiation!.reason);
      clock.advance(10);
    }
    expect(reasons).toEqual(['no_wait', 'delay', 'delay', 'wait_success']);
    expect(d.lastNegotiation).toMatchObject({ waitForwardPasses: 2, waitMs: 20 });
  });
});
