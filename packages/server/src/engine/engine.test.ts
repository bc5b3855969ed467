/**
 * The engine end to end on simulated models (`--model-path sim:<profile>`):
 * real worker threads, the real Scheduler, SimRunner, the DP controller and
 * the load snapshot board. The runners take real (short) modelled time; no
 * test sleeps to order events: each step waits on an event of the stream.
 */
import { DEFAULT_PREFILL_DELAYER_CONFIG } from '@tsinfer/delayer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type LocalEngine } from './engine.js';
import { type Collected, collect, ProfileDir, promptIds, request } from './test-helpers.js';

const dir = new ProfileDir();
let fast = '';
let long = '';

beforeAll(async () => {
  await dir.open();
  fast = await dir.write('fast');
  long = await dir.write('long', { context: 100_000, fixedMs: 1 });
});

afterAll(async () => {
  await dir.close();
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('createEngine on a sim profile', () => {
  it('dp 2 with the delayer: 100 concurrent requests, 20 aborted midway, all end correctly and KV returns to zero', async () => {
    const engine = await createEngine({
      modelPath: fast,
      dpSize: 2,
      scheduler: {
        chunkedPrefillSize: 64,
        delayer: { ...DEFAULT_PREFILL_DELAYER_CONFIG, enabled: true, maxDelayPasses: 5 },
      },
      loadBalance: { loadBalanceMethod: 'minimum_tokens' },
    });
    try {
      expect(engine.info.dpSize).toBe(2);
      expect(engine.info.prefillDelayer).toBe(true);
      expect(engine.info.tokenizer).toBe('bytes');
      const aborted = new Set<number>();
      const jobs: Promise<Collected>[] = [];
      for (let i = 0; i < 100; i++) {
        const abortThis = i % 5 === 2;
        const ac = new AbortController();
        if (abortThis) aborted.add(i);
        const prompt =
          i % 2 === 0
            ? { tokenIds: promptIds(10 + ((i * 37) % 200), i) }
            : { text: `request ${i}: ${'x'.repeat(i)}` };
        // An aborted request asks for far more tokens than it can make before its abort reaches the rank.
        const max = abortThis ? 3000 : 20 + (i % 40);
        const stream = engine.generate(request(prompt, max, { signal: ac.signal, ignoreEos: true }));
        jobs.push(collect(stream, (k) => (abortThis && k === 3 ? ac.abort() : undefined)));
      }
      const results = await Promise.all(jobs);
      const perRank = [0, 0];
      for (let i = 0; i < 100; i++) {
        const r = results[i]!;
        perRank[r.finish.dpRank]!++;
        expect(r.finish.error, `request ${i}`).toBeUndefined();
        expect(r.tokens.length, `request ${i}`).toBe(r.finish.completionTokens);
        if (aborted.has(i)) {
          expect(r.finish.reason, `request ${i}`).toBe('abort');
          expect(r.tokens.length).toBeLessThan(3000);
        } else {
          expect(r.finish.reason, `request ${i}`).toBe('length');
          expect(r.finish.completionTokens, `request ${i}`).toBe(20 + (i % 40));
        }
      }
      // both ranks served
      expect(perRank[0]).toBeGreaterThan(10);
      expect(perRank[1]).toBeGreaterThan(10);
      expect(engine.requestCounts()).toEqual({ queued: 0, inFlight: 0 });
      // KV back to zero everywhere: the scheduler's accounting and the runner's cache
      const stats = await engine.rankStats();
      for (const s of stats) {
        expect(s.alive).toBe(true);
        expect(s.stats!.numUsedTokens).toBe(0);
        expect(s.stats!.numRunningReqs).toBe(0);
        expect(s.stats!.numWaitingReqs).toBe(0);
        expect(s.runnerKvUsedTokens).toBe(0);
        expect(s.delayer).not.toBeNull();
        expect(s.stats!.totalAbortedReqs).toBeGreaterThan(0);
      }
      expect(stats[0]!.stats!.totalFinishedReqs + stats[1]!.stats!.totalFinishedReqs).toBe(80);
      // Batched transport: one add message per rank for the burst, at most one message per pass back.
      const t = engine.transportStats();
      const passes = stats[0]!.stats!.pass + stats[1]!.stats!.pass;
      expect(t.addMessages).toBe(2);
      expect(t.tokens).toBe(results.reduce((a, r) => a + r.tokens.length, 0));
      expect(t.passMessages).toBeLessThanOrEqual(passes + t.abortMessages);
      expect(t.tokens / t.passMessages).toBeGreaterThan(5);
      // loads are read from shared memory, one per rank
      const loads = engine.loads();
      expect(loads.map((l) => l.dpRank)).toEqual([0, 1]);
      expect(loads[0]!.maxTotalNumTokens).toBe(100_000);
      expect(engine.loads(1).map((l) => l.dpRank)).toEqual([1]);
      expect(engine.loads(7)).toEqual([]);
      expect(engine.delayerMetrics()).toHaveLength(2);
      expect(engine.health().ok).toBe(true);

      // Greedy tokens do not depend on the batch or the rank: each equals the request run alone.
      const solo = await createEngine({ modelPath: fast, dpSize: 1 });
      try {
        for (let i = 0; i < 100; i += 7) {
          if (aborted.has(i)) continue;
          const prompt =
            i % 2 === 0
              ? { tokenIds: promptIds(10 + ((i * 37) % 200), i) }
              : { text: `request ${i}: ${'x'.repeat(i)}` };
          const alone = await collect(solo.generate(request(prompt, 20 + (i % 40), { ignoreEos: true })));
          expect(results[i]!.tokens, `request ${i}`).toEqual(alone.tokens);
          expect(results[i]!.text, `request ${i}`).toBe(alone.text);
        }
      } finally {
        await solo.shutdown();
      }
    } finally {
      await engine.shutdown();
    }
  }, 120_000);

  it('streams text that never splits a UTF-8 sequence and excludes stop strings', async () => {
    const engine = await createEngine({ modelPath: fast });
    try {
      const tok = (ids: number[]): string => {
        // the sim byte tokenizer: id < 256 is its byte, larger ids are " t<id>", EOS (2044) nothing
        const bytes: number[] = [];
        for (const id of ids) {
          if (id === 2044) continue;
          if (id < 256) bytes.push(id);
          else for (const c of Buffer.from(` t${id}`)) bytes.push(c);
        }
        return new TextDecoder().decode(Uint8Array.from(bytes));
      };
      for (let seed = 0; seed < 8; seed++) {
        const r = await collect(
          engine.generate(request({ tokenIds: promptIds(30, 100 + seed) }, 200, { ignoreEos: true })),
        );
        expect(r.text).toBe(tok(r.tokens));
        // no chunk ends in the first half of a surrogate pair
        for (const c of r.chunks) expect(/[\uD800-\uDBFF]$/.test(c)).toBe(false);
      }
      // a stop string taken from the middle of a generation ends the same generation there, excluded
      const prompt = { text: 'Once upon a time' };
      const free = await collect(engine.generate(request(prompt, 120, { ignoreEos: true })));
      const m = / t\d+ t\d+/.exec(free.text.slice(40));
      expect(m).not.toBeNull();
      const stop = m![0];
      const at = free.text.indexOf(stop);
      const stopped = await collect(
        engine.generate(request(prompt, 120, { ignoreEos: true, stop: ['zzzz-not-there', stop] })),
      );
      expect(stopped.finish.reason).toBe('stop');
      expect(stopped.finish.matchedStop).toBe(stop);
      expect(stopped.text).toBe(free.text.slice(0, at));
      expect(stopped.tokens).toEqual(free.tokens.slice(0, stopped.tokens.length));
      expect(stopped.tokens.length).toBeLessThan(free.tokens.length);
      // a stop token id ends the request with its text left out
      const stopId = free.tokens[10]!;
      const byId = await collect(engine.generate(request(prompt, 120, { stopTokenIds: [stopId] })));
      expect(byId.finish.reason).toBe('stop');
      expect(byId.finish.matchedStop).toBe(stopId);
      expect(byId.tokens).toEqual(free.tokens.slice(0, free.tokens.indexOf(stopId) + 1));
      expect(byId.text).toBe(tok(byId.tokens.slice(0, -1)));
    } finally {
      await engine.shutdown();
    }
  }, 60_000);

  it('refuses what cannot start: context length, bad rank, bad token ids, full queue', async () => {
    const engine = await createEngine({ modelPath: fast, dpSize: 2, maxQueuedRequests: 2 });
    try {
      expect(engine.info.contextLength).toBe(4096);
      expect(engine.info.maxReqLen).toBe(4095);
      expect(codeOf(() => engine.generate(request({ tokenIds: promptIds(4094, 1) }, 1)))).toBeUndefined();
      expect(codeOf(() => engine.generate(request({ tokenIds: promptIds(4095, 1) }, 1)))).toBe(
        'TSI_ERR_CONTEXT_LENGTH',
      );
      expect(codeOf(() => engine.generate(request({ tokenIds: promptIds(100, 1) }, 3997)))).toBe(
        'TSI_ERR_CONTEXT_LENGTH',
      );
      expect(codeOf(() => engine.generate(request({ tokenIds: [] }, 4)))).toBe('TSI_ERR_INVALID_REQUEST');
      expect(codeOf(() => engine.generate(request({ tokenIds: [1, 5000] }, 4)))).toBe(
        'TSI_ERR_INVALID_TOKEN_ID',
      );
      expect(codeOf(() => engine.generate(request({ tokenIds: [1, 2] }, 0)))).toBe('TSI_ERR_INVALID_REQUEST');
      expect(codeOf(() => engine.generate(request({ tokenIds: [1, 2] }, 4, { routedDpRank: 2 })))).toBe(
        'TSI_ERR_INVALID_DP_RANK',
      );
      // the first call above was accepted and is queued: one more fits, the third is refused
      const first = engine.generate(request({ tokenIds: promptIds(4094, 1) }, 1));
      expect(codeOf(() => engine.generate(request({ tokenIds: [1, 2, 3] }, 4)))).toBe('TSI_ERR_QUEUE_FULL');
      expect(engine.requestCounts().queued).toBe(2);
      await collect(first);
      // once requests have started (or ended) there is room again
      const again = await collect(engine.generate(request({ tokenIds: [1, 2, 3] }, 4, { routedDpRank: 1 })));
      expect(again.finish.dpRank).toBe(1);
      expect(again.finish.reason).toBe('length');
    } finally {
      await engine.shutdown({ timeoutMs: 60_000 });
    }
    expect(codeOf(() => engine.generate(request({ tokenIds: [1, 2, 3] }, 4)))).toBe('TSI_ERR_SHUTTING_DOWN');
  }, 60_000);

  it('a rank that crashes mid-run fails its requests with TSI_ERR_RANK_FAILED; the other rank serves on', async () => {
    const engine = await createEngine({
      modelPath: fast,
      dpSize: 2,
      loadBalance: { loadBalanceMethod: 'round_robin' },
      faultInjection: { rank: 1, afterPasses: 12 },
    });
    try {
      const jobs: Promise<Collected>[] = [];
      for (let i = 0; i < 20; i++) {
        jobs.push(
          collect(engine.generate(request({ tokenIds: promptIds(16, i) }, 200, { ignoreEos: true }))),
        );
      }
      const results = await Promise.all(jobs);
      for (const r of results) {
        if (r.finish.dpRank === 1) {
          expect(r.finish.reason).toBe('abort');
          expect(r.finish.error?.code).toBe('TSI_ERR_RANK_FAILED');
          expect(r.tokens.length).toBeLessThan(200);
        } else {
          expect(r.finish.dpRank).toBe(0);
          expect(r.finish.reason).toBe('length');
          expect(r.tokens).toHaveLength(200);
        }
      }
      expect(results.filter((r) => r.finish.dpRank === 1)).toHaveLength(10);
      const h = engine.health();
      expect(h.ok).toBe(false);
      expect(h.ranks[0]).toEqual({ dpRank: 0, alive: true });
      expect(h.ranks[1]!.alive).toBe(false);
      expect(h.ranks[1]!.reason).toMatch(/fault injection/);
      // nothing new reaches the dead rank
      const before = engine.dispatchCounts();
      const more = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          collect(engine.generate(request({ tokenIds: promptIds(8, 50 + i) }, 5))),
        ),
      );
      for (const r of more) {
        expect(r.finish.dpRank).toBe(0);
        expect(r.finish.reason).toBe('length');
      }
      expect(engine.dispatchCounts()[1]).toBe(before[1]);
      expect(codeOf(() => engine.generate(request({ tokenIds: [1, 2] }, 4, { routedDpRank: 1 })))).toBe(
        'TSI_ERR_RANK_FAILED',
      );
      const stats = await engine.rankStats();
      expect(stats[1]).toEqual({
        dpRank: 1,
        alive: false,
        stats: null,
        delayer: null,
        runnerKvUsedTokens: null,
      });
      expect(stats[0]!.runnerKvUsedTokens).toBe(0);
    } finally {
      await engine.shutdown();
    }
  }, 60_000);

  it('a rank whose thread exits mid-run is failed the same way', async () => {
    const engine = await createEngine({
      modelPath: fast,
      dpSize: 2,
      loadBalance: { loadBalanceMethod: 'total_requests' },
      faultInjection: { rank: 0, afterPasses: 8, how: 'exit' },
    });
    try {
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          collect(engine.generate(request({ tokenIds: promptIds(16, i) }, 100, { ignoreEos: true }))),
        ),
      );
      const failed = results.filter((r) => r.finish.dpRank === 0);
      expect(failed.length).toBeGreaterThan(0);
      for (const r of failed) expect(r.finish.error?.code).toBe('TSI_ERR_RANK_FAILED');
      for (const r of results.filter((x) => x.finish.dpRank === 1)) expect(r.finish.reason).toBe('length');
      expect(engine.health().ranks[0]).toEqual({
        dpRank: 0,
        alive: false,
        reason: 'worker exited with code 3',
      });
      const after = await collect(engine.generate(request({ tokenIds: [5, 6, 7] }, 3)));
      expect(after.finish.dpRank).toBe(1);
    } finally {
      await engine.shutdown();
    }
  }, 60_000);

  it('shutdown drains in-flight requests within its timeout and refuses new ones', async () => {
    const engine = await createEngine({ modelPath: fast, dpSize: 2 });
    const jobs = Array.from({ length: 10 }, (_, i) =>
      collect(engine.generate(request({ tokenIds: promptIds(20, i) }, 30, { ignoreEos: true }))),
    );
    const done = engine.shutdown({ timeoutMs: 60_000 });
    expect(codeOf(() => engine.generate(request({ tokenIds: [1, 2] }, 4)))).toBe('TSI_ERR_SHUTTING_DOWN');
    const results = await Promise.all(jobs);
    for (const r of results) {
      expect(r.finish.reason).toBe('length');
      expect(r.tokens).toHaveLength(30);
    }
    await done;
    expect(engine.health().ok).toBe(false);
    expect(engine.health().ranks.every((r) => !r.alive && r.reason === 'stopped')).toBe(true);
  }, 60_000);

  it('shutdown aborts what is still running when its timeout ends, with TSI_ERR_SHUTTING_DOWN', async () => {
    const engine: LocalEngine = await createEngine({ modelPath: long, dpSize: 2 });
    // wait until every request has produced tokens, then shut down with no grace
    let started = 0;
    let allStarted!: () => void;
    const running = new Promise<void>((resolve) => {
      allStarted = resolve;
    });
    const watch = (k: number): void => {
      if (k === 1 && ++started === 6) allStarted();
    };
    const jobs = Array.from({ length: 6 }, (_, i) =>
      collect(engine.generate(request({ tokenIds: promptIds(20, i) }, 90_000, { ignoreEos: true })), watch),
    );
    await running;
    await engine.shutdown({ timeoutMs: 0 });
    const results = await Promise.all(jobs);
    for (const r of results) {
      expect(r.finish.reason).toBe('abort');
      expect(r.finish.error?.code).toBe('TSI_ERR_SHUTTING_DOWN');
      expect(r.tokens.length).toBeLessThan(90_000);
    }
  }, 60_000);

  it('--enable-dp-attention: lockstep ranks on shared-memory all-gathers serve, stop promptly, and fail together when one dies', async () => {
    const engine = await createEngine({
      modelPath: fast,
      dpSize: 2,
      scheduler: {
        enableDpAttention: true,
        chunkedPrefillSize: 64,
        delayer: { ...DEFAULT_PREFILL_DELAYER_CONFIG, enabled: true, maxDelayPasses: 3 },
      },
    });
    try {
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          collect(
            engine.generate(request({ tokenIds: promptIds(20 + i * 7, i) }, 10 + i, { ignoreEos: true })),
          ),
        ),
      );
      for (let i = 0; i < 30; i++) {
        expect(results[i]!.finish.reason).toBe('length');
        expect(results[i]!.tokens).toHaveLength(10 + i);
      }
      expect(new Set(results.map((r) => r.finish.dpRank)).size).toBe(2);
      const stats = await engine.rankStats();
      for (const st of stats) expect(st.stats!.forcedIdle || st.stats!.totalIdlePasses > 0).toBe(true);
    } finally {
      await engine.shutdown();
    }
    expect(engine.health().ranks.every((r) => r.reason === 'stopped')).toBe(true);

    // One rank dies: the engine closes its lockstep groups, so the other fails at once with
    // TSI_ERR_COLLECTIVE_CLOSED (a 120 s collective timeout would outlast the test's timeout).
    const broken = await createEngine({
      modelPath: fast,
      dpSize: 2,
      scheduler: { enableDpAttention: true },
      collectiveTimeoutMs: 120_000,
      faultInjection: { rank: 0, afterPasses: 5 },
      loadBalance: { loadBalanceMethod: 'round_robin' },
    });
    try {
      const results = await Promise.all(
        Array.from({ length: 4 }, (_, i) =>
          collect(broken.generate(request({ tokenIds: promptIds(10, i) }, 500, { ignoreEos: true }))),
        ),
      );
      for (const r of results) {
        expect(r.finish.reason).toBe('abort');
        expect(r.finish.error?.code).toBe('TSI_ERR_RANK_FAILED');
      }
      expect(broken.health().ranks.map((r) => r.alive)).toEqual([false, false]);
      expect(broken.health().ranks[1]!.reason).toMatch(/TSI_ERR_COLLECTIVE_CLOSED/);
    } finally {
      await broken.shutdown();
    }
  }, 60_000);

  it('returns logprobs per token when asked', async () => {
    const engine = await createEngine({ modelPath: fast });
    try {
      let events = 0;
      const sampling = { ...request({ tokenIds: [1] }, 1).sampling, logprobs: 3 };
      for await (const ev of engine.generate(request({ tokenIds: promptIds(12, 3) }, 8, { sampling }))) {
        if (ev.type !== 'tokens') continue;
        events++;
        expect(ev.logprobs).not.toBeNull();
        expect(ev.logprobs!.length).toBe(ev.tokenIds.length);
        for (const lp of ev.logprobs!) expect(lp!.topIds.length).toBe(3);
      }
      expect(events).toBeGreaterThan(0);
    } finally {
      await engine.shutdown();
    }
  });

  it('rejects invalid options with an error naming the flag', async () => {
    await expect(createEngine({ modelPath: '' })).rejects.toMatchObject({ code: 'TSI_ERR_INVALID_CONFIG' });
    await expect(createEngine({ modelPath: fast, dpSize: 0 })).rejects.toThrow(/--dp-size/);
    await expect(createEngine({ modelPath: fast, maxQueuedRequests: -1 })).rejects.toThrow(
      /--max-queued-requests/,
    );
    await expect(
      createEngine({ modelPath: fast, loadBalance: { loadBalanceMethod: 'fastest' as never } }),
    ).rejects.toThrow(/--load-balance-method/);
    await expect(createEngine({ modelPath: 'sim:/nonexistent/profile.json' })).rejects.toMatchObject({
      code: 'TSI_ERR_INVALID_PROFILE',
    });
  });
});
