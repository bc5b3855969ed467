import { createRng, InvalidConfigError, ManualClock, TsinferError } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { LoadSnapshotBoard } from '../load-snapshot/board.js';
import { createLoadSnapshot } from '../load-snapshot/snapshot.js';
import { parseLoadBalanceMethod, resolveLoadBalanceConfig, resolveLoadBalanceMethod } from './config.js';
import { DpDispatcher, type DpDispatcherOptions } from './dispatcher.js';

interface Load {
  running?: number;
  waiting?: number;
  tokens?: number;
  acked?: number;
}

function setup(dpSize: number, opts: Partial<DpDispatcherOptions> = {}) {
  const clock = new ManualClock(1_000);
  const board = LoadSnapshotBoard.create(dpSize);
  const rec = createLoadSnapshot();
  /** Rank `rank` publishes a snapshot stamped now (or at `ts`). */
  const pub = (rank: number, l: Load = {}, ts = clock.nowMs()): void => {
    rec.timestamp = ts;
    rec.numRunningReqs = l.running ?? 0;
    rec.numWaitingReqs = l.waiting ?? 0;
    rec.numTotalTokens = l.tokens ?? 0;
    rec.ackedDispatchSeq = l.acked ?? 0;
    board.publish(rank, rec);
  };
  const d = new DpDispatcher({ dpSize, loads: board, clock, ...opts });
  const many = (n: number, tokens = 0): number[] => Array.from({ length: n }, () => d.dispatch(tokens));
  return { clock, board, pub, d, many };
}

function errorOf(fn: () => unknown): { code: string; status: number; message: string } | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof TsinferError) return { code: e.code, status: e.statusCode, message: e.message };
    throw e;
  }
  return undefined;
}

describe('method selection', () => {
  it('parses case-insensitively and rejects unknown names naming the flag', () => {
    expect(parseLoadBalanceMethod('TOTAL_TOKENS')).toBe('total_tokens');
    expect(parseLoadBalanceMethod('Minimum_Tokens')).toBe('minimum_tokens');
    expect(() => parseLoadBalanceMethod('shortest_queue')).toThrow(InvalidConfigError);
    expect(() => parseLoadBalanceMethod('shortest_queue')).toThrow(/--load-balance-method/);
  });

  it('auto resolves to minimum_tokens when dpSize > 1 and to round_robin when 1', () => {
    expect(resolveLoadBalanceMethod('auto', 4)).toBe('minimum_tokens');
    expect(resolveLoadBalanceMethod('auto', 1)).toBe('round_robin');
    expect(resolveLoadBalanceMethod('total_requests', 1)).toBe('total_requests');
    expect(setup(2).d.method).toBe('minimum_tokens');
    expect(setup(1).d.method).toBe('round_robin');
  });

  it('config: defaults, max(1, interval), validation', () => {
    expect(resolveLoadBalanceConfig()).toEqual({
      loadBalanceMethod: 'auto',
      loadSnapshotPublishInterval: 15,
      loadSnapshotHeartbeatMs: 1000,
      loadSnapshotStaleMs: 30_000,
    });
    expect(resolveLoadBalanceConfig({ loadSnapshotPublishInterval: 0 }).loadSnapshotPublishInterval).toBe(1);
    expect(() => resolveLoadBalanceConfig({ loadSnapshotStaleMs: 0 })).toThrow(/--load-snapshot-stale-ms/);
    expect(() => resolveLoadBalanceConfig({ loadBalanceMethod: 'nope' as never })).toThrow(
      InvalidConfigError,
    );
  });

  it('rejects a board of another size and bad prompt token counts', () => {
    const board = LoadSnapshotBoard.create(2);
    expect(() => new DpDispatcher({ dpSize: 3, loads: board, clock: new ManualClock() })).toThrow(
      /--dp-size/,
    );
    const { d, pub } = setup(2);
    pub(0);
    pub(1);
    for (const bad of [-1, 1.5, Number.NaN]) {
      expect(errorOf(() => d.dispatch(bad))?.code).toBe('TSI_ERR_INVALID_REQUEST');
    }
  });
});

describe('round_robin', () => {
  it('cycles 0..n-1, gives each rank its own sequence numbers, and reads no load', () => {
    const { d, pub } = setup(3, { method: 'round_robin' });
    pub(0, { tokens: 1e9 });
    pub(1);
    pub(2);
    const seqs: number[] = [];
    const ranks = Array.from({ length: 7 }, () => {
      const r = d.dispatch(100);
      seqs.push(d.lastSeq);
      return r;
    });
    expect(ranks).toEqual([0, 1, 2, 0, 1, 2, 0]);
    expect(seqs).toEqual([1, 1, 1, 2, 2, 2, 3]);
    expect(Array.from(d.dispatched)).toEqual([3, 2, 2]);
  });

  it('skips a dead rank and a stale rank, keeping the counter going', () => {
    const { d, pub, clock } = setup(3, { method: 'round_robin', staleAfterMs: 500 });
    pub(0);
    pub(1);
    pub(2);
    expect([d.dispatch(1), d.dispatch(1)]).toEqual([0, 1]);
    d.markDead(2);
    expect([d.dispatch(1), d.dispatch(1), d.dispatch(1)]).toEqual([0, 1, 0]);
    clock.advance(400);
    pub(1); // ranks 0 and 1 keep publishing, rank 0 stops
    clock.advance(200); // rank 0's snapshot is 600 ms old
    expect([d.dispatch(1), d.dispatch(1)]).toEqual([1, 1]);
  });
});

describe('total_requests', () => {
  it('first minimum of running + waiting, +1 per dispatch inside the throttle window', () => {
    const { d, pub, many } = setup(3, { method: 'total_requests' });
    pub(0, { running: 2, waiting: 1 });
    pub(1, { running: 1 });
    pub(2, { waiting: 1, tokens: 0 });
    expect(many(6, 500)).toEqual([1, 2, 1, 2, 0, 1]);
    expect([0, 1, 2].map((r) => d.totalRequests(r))).toEqual([4, 4, 3]);
    expect([0, 1, 2].map((r) => d.totalTokens(r))).toEqual([0, 0, 0]); // tokens not incremented
    expect(d.refreshes).toBe(1);
  });

  it('across the 20 ms window a fresh snapshot replaces the +1 increments; a repeated timestamp keeps them', () => {
    const { d, pub, clock, many } = setup(2, { method: 'total_requests' });
    pub(0, { running: 1 });
    pub(1, { running: 1 });
    expect(many(4)).toEqual([0, 1, 0, 1]);
    clock.advance(25);
    pub(1, { running: 1, waiting: 1 }); // rank 1 reports 2; rank 0's snapshot is the one already applied
    expect(d.dispatch(0)).toBe(1); // rank 0 keeps 3 (1 + 2 increments), rank 1 now 2
    expect([d.totalRequests(0), d.totalRequests(1)]).toEqual([3, 3]);
    expect(d.staleSkips).toBe(1);
    expect(d.refreshes).toBe(2);
  });
});

describe('total_tokens', () => {
  it('minimises (tokens, requests), lowest index on a full tie, +1 request and +prompt tokens per dispatch', () => {
    const { d, pub } = setup(3, { method: 'total_tokens' });
    pub(0, { running: 5, tokens: 100 });
    pub(1, { running: 2, tokens: 100 });
    pub(2, { running: 9, tokens: 50 });
    expect(d.dispatch(60)).toBe(2); // 50 < 100
    expect([d.totalTokens(2), d.totalRequests(2)]).toEqual([110, 10]);
    expect(d.dispatch(10)).toBe(1); // (100, 2) < (100, 5)
    expect(d.dispatch(10)).toBe(0); // (100, 5) < (110, 3) < (110, 10)
    expect(d.dispatch(0)).toBe(1); // (110, 6), (110, 3), (110, 10) → fewest requests
  });

  it('lexicographic order decides between equal token counts', () => {
    const { d, pub } = setup(3, { method: 'total_tokens' });
    pub(0, { running: 3, tokens: 10 });
    pub(1, { running: 1, tokens: 10 });
    pub(2, { running: 1, tokens: 10 });
    // (10,3) (10,1) (10,1): first of the two (10,1) → 1; then (10,2) at 1 → 2; then (10,2),(10,2),(10,3) → 1
    expect([d.dispatch(0), d.dispatch(0), d.dispatch(0), d.dispatch(0)]).toEqual([1, 2, 1, 2]);
  });

  it('a burst inside the 20 ms window spreads by the speculative token increment (PR #22614)', () => {
    const { pub, many } = setup(2, { method: 'total_tokens' });
    pub(0, { tokens: 0 });
    pub(1, { tokens: 0 });
    expect(many(6, 100)).toEqual([0, 1, 0, 1, 0, 1]);
  });

  it('incrementTokens: false reproduces the pile-up before PR #22614 (only +1 request)', () => {
    const { d, pub, many } = setup(2, { method: 'total_tokens', incrementTokens: false });
    pub(0, { tokens: 500 });
    pub(1, { tokens: 100 });
    expect(many(6, 1000)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(d.totalTokens(1)).toBe(100);
    expect(d.totalRequests(1)).toBe(6);
  });

  it('refreshes at most every 20 ms; across the window a fresh snapshot overwrites the increments (SGLang F-3), an equal timestamp is skipped', () => {
    const { d, pub, clock, many } = setup(2, { method: 'total_tokens' });
    pub(0, { tokens: 0 });
    pub(1, { tokens: 0 });
    expect(many(4, 100)).toEqual([0, 1, 0, 1]); // t=1000: one refresh, then increments
    expect(d.refreshes).toBe(1);
    clock.advance(19);
    pub(0, { tokens: 0 }); // a new snapshot inside the window is not read yet
    expect(d.dispatch(100)).toBe(0);
    expect(d.refreshes).toBe(1);
    expect([d.totalTokens(0), d.totalTokens(1)]).toEqual([300, 200]);
    clock.advance(1); // 20 ms since the last refresh
    expect(d.dispatch(100)).toBe(0);
    // Rank 0's new snapshot (ts 1019) replaced its 300 speculative tokens by 0 although
    // none of its 3 requests is counted in it: F-3. Rank 1's snapshot has the same
    // timestamp as the one applied: skipped, its increments stay.
    expect(d.refreshes).toBe(2);
    expect(d.staleSkips).toBe(1);
    expect([d.totalTokens(0), d.totalTokens(1)]).toEqual([100, 200]);
  });
});

describe('batch dispatch', () => {
  it('refreshes once per batch, then dispatches in order; reports ranks and sequence numbers', () => {
    const { d, pub } = setup(2, { method: 'total_tokens', refreshIntervalMs: 0 });
    pub(0, { tokens: 0 });
    pub(1, { tokens: 0 });
    const ranks = new Int32Array(5);
    const seqs = new Float64Array(5);
    d.dispatchBatch([100, 100, 50, 50, 10], null, ranks, seqs);
    expect(d.refreshes).toBe(1);
    expect(Array.from(ranks)).toEqual([0, 1, 0, 1, 0]);
    expect(Array.from(seqs)).toEqual([1, 1, 2, 2, 3]);
  });

  it('validates the whole batch first: an invalid pinned rank dispatches nothing', () => {
    const { d, pub } = setup(2);
    pub(0);
    pub(1);
    const ranks = new Int32Array(3);
    const err = errorOf(() => d.dispatchBatch([1, 2, 3], [null, 0, 7], ranks));
    expect(err).toMatchObject({ code: 'TSI_ERR_INVALID_DP_RANK', status: 400 });
    expect(Array.from(d.dispatched)).toEqual([0, 0]);
    expect(d.inflightTokens(0) + d.inflightTokens(1)).toBe(0);
    d.dispatchBatch([1, 2, 3], [1, undefined, null], ranks);
    expect(Array.from(ranks)).toEqual([1, 0, 1]);
  });
});

describe('routed_dp_rank pinning', () => {
  it('out of range or not an integer → TSI_ERR_INVALID_DP_RANK (400) with the valid range', () => {
    const { d, pub } = setup(3);
    pub(0);
    for (const bad of [3, -1, 1.5]) {
      expect(errorOf(() => d.dispatch(10, bad))).toEqual({
        code: 'TSI_ERR_INVALID_DP_RANK',
        status: 400,
        message: `routed_dp_rank=${bad} out of range [0, 3)`,
      });
    }
  });

  it.each(['round_robin', 'total_requests', 'total_tokens', 'minimum_tokens'] as const)(
    '%s: a pinned request goes to its rank and changes no counter',
    (method) => {
      const { d, pub } = setup(3, { method });
      pub(0, { running: 1, tokens: 10 });
      pub(1, { running: 1, tokens: 10 });
      pub(2, { running: 1, tokens: 10 });
      d.dispatch(5);
      const state = () =>
        [0, 1, 2].map((r) => [
          d.load(r),
          d.totalRequests(r),
          d.totalTokens(r),
          d.inflightTokens(r),
          d.ackedSeq(r),
        ]);
      const before = state();
      expect(d.dispatch(1000, 2)).toBe(2);
      expect(d.dispatch(1000, 2)).toBe(2);
      expect(d.lastSeq).toBe(0);
      expect(state()).toEqual(before);
      expect(d.pinned).toBe(2);
      // the next unpinned choice is what it would have been without the pinned ones
      expect(d.dispatch(5)).toBe(1);
      expect(d.lastSeq).toBe(1);
    },
  );

  it('a pinned dead or stale rank fails that request with TSI_ERR_RANK_FAILED (503); others still dispatch', () => {
    const { d, pub, clock } = setup(3, { staleAfterMs: 1000 });
    pub(0);
    pub(1);
    d.markDead(1);
    expect(errorOf(() => d.dispatch(1, 1))).toMatchObject({ code: 'TSI_ERR_RANK_FAILED', status: 503 });
    expect(errorOf(() => d.dispatch(1, 1))?.message).toMatch(/worker exited/);
    expect(errorOf(() => d.dispatch(1, 2))?.message).toMatch(/has not published/);
    clock.advance(1500);
    pub(2);
    expect(errorOf(() => d.dispatch(1, 0))?.message).toMatch(/1500 ms old \(limit 1000 ms\)/);
    expect(d.dispatch(1, 2)).toBe(2);
    expect(d.dispatch(1)).toBe(2);
  });
});

describe('liveness', () => {
  it.each(['round_robin', 'total_requests', 'total_tokens', 'minimum_tokens'] as const)(
    '%s never picks a dead, stale or never-published rank; all out → TSI_ERR_NO_LIVE_RANK (503)',
    (method) => {
      const { d, pub, clock, board } = setup(4, { method, staleAfterMs: 1000 });
      // rank 3 never publishes; rank 0 is the least loaded by every measure
      pub(0, { tokens: 0 });
      pub(1, { running: 5, tokens: 500 });
      pub(2, { running: 9, tokens: 900 });
      d.markDead(0);
      const picked = new Set(Array.from({ length: 20 }, () => d.dispatch(10)));
      expect(picked.has(0) || picked.has(3)).toBe(false);
      // rank 2 goes stale: out at once, inside the throttle window
      clock.advance(600);
      pub(1, { running: 5, tokens: 500 });
      clock.advance(401);
      expect(new Set(Array.from({ length: 10 }, () => d.dispatch(10)))).toEqual(new Set([1]));
      d.markDead(1);
      expect(errorOf(() => d.dispatch(10))).toMatchObject({ code: 'TSI_ERR_NO_LIVE_RANK', status: 503 });
      // a replacement worker for rank 0: slot reset, back once it publishes
      board.reset(0);
      d.markAlive(0);
      expect(d.isLive(0)).toBe(false);
      expect(errorOf(() => d.dispatch(10))?.code).toBe('TSI_ERR_NO_LIVE_RANK');
      pub(0, { tokens: 0 });
      expect(d.isLive(0)).toBe(true);
      expect(d.dispatch(10)).toBe(0); // seen at once through the liveness re-read
    },
  );

  it('a stale rank that publishes again is back at once, before the next budget refresh', () => {
    const { d, pub, clock } = setup(2, {
      method: 'minimum_tokens',
      staleAfterMs: 100,
      refreshIntervalMs: 1000,
    });
    pub(0, { tokens: 0 });
    pub(1, { tokens: 50 });
    expect(d.dispatch(10)).toBe(0);
    clock.advance(150);
    pub(1, { tokens: 50 });
    expect(d.dispatch(10)).toBe(1); // rank 0 is stale
    expect(d.isLive(0)).toBe(false);
    pub(0, { tokens: 0 });
    expect(d.isLive(0)).toBe(true);
    expect(d.refreshes).toBe(1);
  });
});

describe('minimum_tokens', () => {
  it('picks the least held + in-flight tokens, lowest rank on ties', () => {
    const { d, pub, many } = setup(3, { method: 'minimum_tokens' });
    pub(0, { tokens: 100 });
    pub(1, { tokens: 50 });
    pub(2, { tokens: 50 });
    expect(many(5, 30)).toEqual([1, 2, 1, 2, 0]);
    expect([0, 1, 2].map((r) => d.load(r))).toEqual([130, 110, 110]);
    expect([0, 1, 2].map((r) => d.inflightRequests(r))).toEqual([1, 2, 2]);
  });

  it('a refresh keeps in-flight requests counted until the rank acknowledges them (no F-3), and never counts them twice', () => {
    const { d, pub, clock } = setup(2, { method: 'minimum_tokens' });
    pub(0, { tokens: 0 });
    pub(1, { tokens: 0 });
    expect(d.dispatch(100)).toBe(0);
    expect(d.lastSeq).toBe(1);
    clock.advance(20);
    // rank 0 publishes before it received request seq 1: its snapshot holds 0 tokens
    pub(0, { tokens: 0, acked: 0 });
    expect(d.dispatch(100)).toBe(1);
    expect([d.load(0), d.load(1)]).toEqual([100, 100]);
    clock.advance(20);
    // rank 0 received it (queued: 100 tokens) and acknowledges seq 1; rank 1 has not received its own yet
    pub(0, { tokens: 100, acked: 1 });
    pub(1, { tokens: 0, acked: 0 });
    expect(d.refresh()).toBe(true);
    expect([d.load(0), d.load(1)]).toEqual([100, 100]); // not 200, not 0
    expect([d.inflightRequests(0), d.inflightRequests(1)]).toEqual([0, 1]);
    expect(d.dispatch(10)).toBe(0);
  });

  it('the same sequence under total_tokens loses the in-flight request at the refresh (the flaw minimum_tokens fixes)', () => {
    const { d, pub, clock } = setup(2, { method: 'total_tokens' });
    pub(0, { tokens: 0 });
    pub(1, { tokens: 0 });
    expect(d.dispatch(100)).toBe(0);
    clock.advance(20);
    pub(0, { tokens: 0 });
    expect(d.dispatch(100)).toBe(0); // rank 0's increment was erased: both requests pile on rank 0
  });

  it('a partial acknowledgement drops exactly the acknowledged requests', () => {
    const { d, pub, many, clock } = setup(2, { method: 'minimum_tokens', refreshIntervalMs: 0 });
    pub(0, { tokens: 0 });
    pub(1, { tokens: 1000 });
    expect(many(3, 0)).toEqual([0, 0, 0]);
    // seqs 1..3 with 0 tokens went to rank 0; now 10, 20, 30
    d.dispatch(10);
    d.dispatch(20);
    d.dispatch(30);
    expect(d.inflightRequests(0)).toBe(6);
    expect(d.inflightTokens(0)).toBe(60);
    clock.advance(1); // (a snapshot with the timestamp already applied would be skipped)
    pub(0, { tokens: 10, acked: 4 }); // received seqs 1..4 (the 10-token one is queued)
    d.refresh();
    expect(d.inflightRequests(0)).toBe(2);
    expect(d.inflightTokens(0)).toBe(50);
    expect(d.load(0)).toBe(60);
    // an older acknowledgement (lower seq) never brings requests back
    pub(0, { tokens: 10, acked: 2 }, 5_000);
    d.refresh();
    expect(d.ackedSeq(0)).toBe(4);
    expect(d.inflightTokens(0)).toBe(50);
  });

  it('the in-flight ring grows past its capacity without losing entries', () => {
    const { d, pub, clock } = setup(2, {
      method: 'minimum_tokens',
      inflightCapacity: 2,
      refreshIntervalMs: 0,
    });
    pub(0, { tokens: 0 });
    pub(1, { tokens: 1e9 });
    for (let i = 1; i <= 10; i++) expect(d.dispatch(i)).toBe(0);
    expect(d.inflightRequests(0)).toBe(10);
    expect(d.inflightTokens(0)).toBe(55);
    clock.advance(1);
    pub(0, { tokens: 28, acked: 7 });
    d.refresh();
    expect(d.inflightRequests(0)).toBe(3);
    expect(d.inflightTokens(0)).toBe(8 + 9 + 10);
    expect(d.load(0)).toBe(28 + 27);
  });

  it('markAlive clears the dead worker’s in-flight requests; sequence numbers go on', () => {
    const { d, pub, board } = setup(2, { method: 'minimum_tokens' });
    pub(0, { tokens: 0 });
    pub(1, { tokens: 1000 });
    d.dispatch(100);
    d.dispatch(100);
    d.markDead(0);
    board.reset(0);
    d.markAlive(0);
    expect(d.inflightTokens(0)).toBe(0);
    pub(0, { tokens: 0 });
    expect(d.dispatch(5)).toBe(0);
    expect(d.lastSeq).toBe(3);
  });

  it('with delivery lag longer than the throttle window, minimum_tokens keeps the assigned tokens within one prompt; total_tokens drifts (F-3)', () => {
    const spread = (method: 'minimum_tokens' | 'total_tokens', seed: number): number => {
      const rng = createRng(seed);
      const dp = 4;
      const MAX_PROMPT = 2000;
      const { d, pub, clock } = setup(dp, { method });
      // Per rank: FIFO channel of [deliverAt, seq, tokens]; tokens held (nothing finishes); highest seq received.
      const channel: [number, number, number][][] = Array.from({ length: dp }, () => []);
      const held = new Array<number>(dp).fill(0);
      const acked = new Array<number>(dp).fill(0);
      const assigned = new Array<number>(dp).fill(0);
      for (let r = 0; r < dp; r++) pub(r);
      let worst = 0;
      for (let step = 0; step < 4000; step++) {
        clock.advance(0.5);
        const now = clock.nowMs();
        for (let r = 0; r < dp; r++) {
          const ch = channel[r]!;
          while (ch.length > 0 && ch[0]![0] <= now) {
            const [, seq, t] = ch.shift()!;
            held[r]! += t;
            acked[r] = seq;
          }
          // each rank publishes every 5 ms, at its own phase
          if (step % 10 === r * 2) pub(r, { waiting: 0, tokens: held[r], acked: acked[r] });
        }
        const tokens = rng.int(1, MAX_PROMPT);
        const r = d.dispatch(tokens);
        assigned[r]! += tokens;
        const last = channel[r]!.at(-1)?.[0] ?? 0;
        channel[r]!.push([Math.max(last, now + rng.int(0, 100)), d.lastSeq, tokens]);
        worst = Math.max(worst, Math.max(...assigned) - Math.min(...assigned));
      }
      return worst;
    };
    for (const seed of [11, 12, 13]) {
      const good = spread('minimum_tokens', seed);
      const flawed = spread('total_tokens', seed);
      expect(good).toBeLessThanOrEqual(2000);
      expect(flawed).toBeGreaterThan(5 * good);
    }
  });

  it('random traffic: after every refresh, each rank’s load is exactly its snapshot’s tokens + the unacknowledged prompt tokens', () => {
    for (const seed of [1, 2, 3]) {
      const rng = createRng(seed);
      const dp = 4;
      const { d, pub, clock } = setup(dp, { method: 'minimum_tokens', refreshIntervalMs: 0 });
      // Each rank: a FIFO channel of (seq, tokens) not yet received, tokens held, highest seq received.
      const channel: [number, number][][] = Array.from({ length: dp }, () => []);
      const held = new Array<number>(dp).fill(0);
      const received = new Array<number>(dp).fill(0);
      const published: { tokens: number; acked: number }[] = Array.from({ length: dp }, () => ({
        tokens: 0,
        acked: 0,
      }));
      const sentTokens: Map<number, number>[] = Array.from({ length: dp }, () => new Map());
      for (let r = 0; r < dp; r++) pub(r);
      for (let step = 0; step < 3000; step++) {
        clock.advance(1);
        const tokens = rng.int(1, 500);
        const r = d.dispatch(tokens);
        channel[r]!.push([d.lastSeq, tokens]);
        sentTokens[r]!.set(d.lastSeq, tokens);
        for (let k = 0; k < dp; k++) {
          // receive a random prefix of the channel
          let n = rng.int(0, channel[k]!.length);
          while (n-- > 0) {
            const [seq, t] = channel[k]!.shift()!;
            held[k]! += t;
            received[k] = seq;
          }
          // finish some work
          if (rng.next() < 0.3) held[k] = Math.max(0, held[k]! - rng.int(0, 800));
          if (rng.next() < 0.4) {
            pub(k, { tokens: held[k], acked: received[k] });
            published[k] = { tokens: held[k]!, acked: received[k]! };
          }
        }
        d.refresh();
        for (let k = 0; k < dp; k++) {
          let unacked = 0;
          for (const [seq, t] of sentTokens[k]!) if (seq > published[k]!.acked) unacked += t;
          expect(d.load(k), `seed ${seed} step ${step} rank ${k}`).toBe(published[k]!.tokens + unacked);
        }
      }
    }
  });
});
