import { ManualClock, TsinferError } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import type { ForwardBatch, ForwardOutput, SamplingParams } from '../contract.js';
import { stepCostMs } from './cost.js';
import { InvalidBatchError, KvCapacityError } from './errors.js';
import { createRealTimeWait, SimRunner } from './runner.js';
import { sampling, testProfile } from './test-util.js';
import { VirtualTimeline } from './timeline.js';

const instant = async (): Promise<void> => {};
const prompt = (n: number, salt = 0): Int32Array =>
  Int32Array.from({ length: n }, (_, i) => (i * 37 + salt * 101 + 11) % 1000);
const E: ForwardBatch = { free: [], add: [], prefill: [], decode: [] };

/** Prefills `tokens` for request `id` in chunks of `chunk` and decodes `steps` tokens, alone. Returns the generated tokens. */
async function generate(
  r: SimRunner,
  id: number,
  tokens: Int32Array,
  steps: number,
  opts: { chunk?: number; sampling?: SamplingParams; others?: number[] } = {},
): Promise<number[]> {
  const chunk = opts.chunk ?? tokens.length;
  const out: number[] = [];
  for (let start = 0; start < tokens.length; start += chunk) {
    const end = Math.min(tokens.length, start + chunk);
    const o = await r.forward({
      ...E,
      add: start === 0 ? [{ id, sampling: opts.sampling ?? sampling() }] : [],
      prefill: [{ id, start, tokens: tokens.slice(start, end), sample: end === tokens.length }],
      decode: opts.others ?? [],
    });
    if (end === tokens.length) out.push(o.tokens[0]!);
  }
  for (let k = 1; k < steps; k++) {
    const o = await r.forward({ ...E, decode: [...(opts.others ?? []), id] });
    out.push(o.tokens[o.tokens.length - 1]!);
  }
  return out;
}

describe('SimRunner tokens', () => {
  it('gives the same tokens for the same prompt whatever the batch composition and chunking', async () => {
    const alone = await generate(new SimRunner({ profile: testProfile(), wait: instant }), 0, prompt(50), 20);
    const chunked = await generate(
      new SimRunner({ profile: testProfile(), wait: instant }),
      7,
      prompt(50),
      20,
      {
        chunk: 16,
      },
    );
    const busy = new SimRunner({ profile: testProfile(), wait: instant });
    await generate(busy, 1, prompt(30, 1), 1);
    await generate(busy, 2, prompt(9, 2), 1);
    const crowded = await generate(busy, 3, prompt(50), 20, { others: [1, 2] });
    expect(chunked).toEqual(alone);
    expect(crowded).toEqual(alone);
    expect(new Set(alone).size).toBeGreaterThan(10);
  });

  it('depends on the whole prompt, not only its last token', async () => {
    const a = prompt(20);
    const b = prompt(20);
    b[3] = (b[3]! + 1) % 1000;
    const r = new SimRunner({ profile: testProfile(), wait: instant });
    expect(await generate(r, 0, a, 8)).not.toEqual(await generate(r, 1, b, 8));
  });

  it('ignores the seed for greedy requests, honours it for sampled ones', async () => {
    const run = (s: SamplingParams, runnerSeed = 0) =>
      generate(
        new SimRunner({ profile: testProfile(), wait: instant, seed: runnerSeed }),
        0,
        prompt(10),
        10,
        {
          sampling: s,
        },
      );
    const greedy = await run(sampling({ seed: 1 }));
    expect(await run(sampling({ seed: 2 }))).toEqual(greedy);
    const t1 = await run(sampling({ temperature: 1, seed: 1 }));
    expect(await run(sampling({ temperature: 1, seed: 1 }), 99)).toEqual(t1);
    expect(await run(sampling({ temperature: 1, seed: 2 }))).not.toEqual(t1);
    // null seed draws from the runner's seeded RNG: reproducible per runner seed
    const n1 = await run(sampling({ temperature: 1 }), 5);
    expect(await run(sampling({ temperature: 1 }), 5)).toEqual(n1);
    expect(await run(sampling({ temperature: 1 }), 6)).not.toEqual(n1);
  });

  it('never emits EOS unless the profile sets an EOS probability', async () => {
    const model = { vocabSize: 8, eosTokenIds: [0, 1] };
    const r = new SimRunner({ profile: testProfile({ model }), wait: instant });
    const toks = await generate(r, 0, Int32Array.of(3, 4), 2000);
    expect(toks.every((t) => t >= 2 && t < 8)).toBe(true);
    expect(new Set(toks).size).toBe(6);

    const counts: number[] = [];
    const r2 = new SimRunner({ profile: testProfile({ model, eosProbability: 0.1 }), wait: instant });
    for (let i = 0; i < 40; i++) {
      const t = await generate(r2, i, Int32Array.of(3, (i % 5) + 3, i % 8), 200);
      const first = t.findIndex((x) => x === 0 || x === 1);
      counts.push(first < 0 ? 200 : first + 1);
      await r2.forward({ ...E, free: [i] });
    }
    const eosFraction = 40 / counts.reduce((s, c) => s + c, 0);
    expect(eosFraction).toBeGreaterThan(0.06);
    expect(eosFraction).toBeLessThan(0.15);
    expect(new Set(counts).size).toBeGreaterThan(10); // variable lengths
  });

  it('returns prefill samples first, then decodes, with logprobs only where asked', async () => {
    const r = new SimRunner({ profile: testProfile(), wait: instant });
    await r.forward({
      ...E,
      add: [
        { id: 5, sampling: sampling({ logprobs: 3 }) },
        { id: 6, sampling: sampling() },
      ],
      prefill: [
        { id: 5, start: 0, tokens: prompt(4), sample: true },
        { id: 6, start: 0, tokens: prompt(4, 1), sample: true },
      ],
    });
    const o: ForwardOutput = await r.forward({
      ...E,
      add: [
        { id: 1, sampling: sampling({ logprobs: -1 }) },
        { id: 2, sampling: sampling() },
      ],
      prefill: [
        { id: 1, start: 0, tokens: prompt(4, 2), sample: true },
        { id: 2, start: 0, tokens: prompt(4, 3), sample: false },
      ],
      decode: [6, 5],
    });
    expect([...o.ids]).toEqual([1, 6, 5]);
    expect(o.logprobs).not.toBeNull();
    const [lp1, lp6, lp5] = o.logprobs!;
    expect(lp6).toBeNull();
    expect(lp1!.topIds.length).toBe(0);
    expect(lp1!.logprob).toBeLessThan(0);
    expect(lp5!.topIds.length).toBe(3);
    expect(lp5!.topIds[0]).toBe(o.tokens[2]);
    expect(new Set(lp5!.topIds).size).toBe(3);
    expect(lp5!.topLogprobs[0]).toBeCloseTo(lp5!.logprob, 6);
    const ps = [...lp5!.topLogprobs].map(Math.exp);
    expect(ps[0]! > ps[1]! && ps[1]! > ps[2]!).toBe(true);
    expect(ps.reduce((s, p) => s + p, 0)).toBeLessThanOrEqual(1);
    const none = await r.forward({ ...E, decode: [6] });
    expect(none.logprobs).toBeNull();
  });
});

describe('SimRunner KV and contract', () => {
  it('tracks KV like a real runner and frees on free', async () => {
    const r = new SimRunner({ profile: testProfile(), wait: instant });
    let o = await r.forward({
      ...E,
      add: [{ id: 0, sampling: sampling() }],
      prefill: [{ id: 0, start: 0, tokens: prompt(10), sample: true }],
    });
    expect(o.kvUsedTokens).toBe(10);
    o = await r.forward({
      ...E,
      add: [{ id: 1, sampling: sampling() }],
      prefill: [{ id: 1, start: 0, tokens: prompt(5), sample: false }],
      decode: [0],
    });
    expect(o.kvUsedTokens).toBe(16);
    expect(r.seqLen(0)).toBe(11);
    expect(o.ids.length).toBe(1);
    o = await r.forward({ ...E, free: [0] });
    expect(o.kvUsedTokens).toBe(5);
    expect(r.seqLen(0)).toBeUndefined();
    // a freed id may be reused
    o = await r.forward({
      ...E,
      add: [{ id: 0, sampling: sampling() }],
      prefill: [{ id: 0, start: 0, tokens: prompt(3), sample: true }],
    });
    expect(o.kvUsedTokens).toBe(8);
  });

  it('refuses to exceed the KV capacity and changes nothing', async () => {
    const r = new SimRunner({ profile: testProfile({ model: { kvCapacityTokens: 20 } }), wait: instant });
    await r.forward({
      ...E,
      add: [{ id: 0, sampling: sampling() }],
      prefill: [{ id: 0, start: 0, tokens: prompt(15), sample: true }],
    });
    const over = r.forward({
      ...E,
      add: [{ id: 1, sampling: sampling() }],
      prefill: [{ id: 1, start: 0, tokens: prompt(5), sample: true }],
      decode: [0],
    });
    await expect(over).rejects.toBeInstanceOf(KvCapacityError);
    await expect(over).rejects.toMatchObject({
      code: 'TSI_ERR_KV_CAPACITY',
      requestedTokens: 21,
      capacityTokens: 20,
    });
    expect(r.kvUsedTokens).toBe(15);
    expect(r.heldRequests).toBe(1);
    expect(r.steps).toBe(1);
    // freeing in the same pass makes room
    const ok = await r.forward({
      free: [0],
      add: [{ id: 1, sampling: sampling() }],
      prefill: [{ id: 1, start: 0, tokens: prompt(20), sample: true }],
      decode: [],
    });
    expect(ok.kvUsedTokens).toBe(20);
  });

  it('rejects batches that break the contract, changing nothing', async () => {
    const r = new SimRunner({
      profile: testProfile({ model: { contextLength: 12, maxBatch: 2 } }),
      wait: instant,
    });
    await r.forward({
      ...E,
      add: [{ id: 0, sampling: sampling() }],
      prefill: [{ id: 0, start: 0, tokens: prompt(4), sample: false }],
    });
    const bad: [ForwardBatch, RegExp][] = [
      [{ ...E, free: [9] }, /free: request 9 is not held/],
      [{ ...E, add: [{ id: 0, sampling: sampling() }] }, /already held/],
      [{ ...E, add: [{ id: -1, sampling: sampling() }] }, /non-negative integer/],
      [{ ...E, prefill: [{ id: 3, start: 0, tokens: prompt(1), sample: true }] }, /request 3 is not held/],
      [
        { ...E, prefill: [{ id: 0, start: 3, tokens: prompt(1), sample: true }] },
        /starts at 3 but its cache holds 4/,
      ],
      [{ ...E, prefill: [{ id: 0, start: 4, tokens: new Int32Array(0), sample: true }] }, /empty/],
      [
        { ...E, prefill: [{ id: 0, start: 4, tokens: Int32Array.of(1000), sample: true }] },
        /outside \[0, 1000\)/,
      ],
      [{ ...E, prefill: [{ id: 0, start: 4, tokens: prompt(9), sample: true }] }, /context length is 12/],
      [{ ...E, decode: [0] }, /no sampled token/],
      [
        {
          ...E,
          add: [
            { id: 1, sampling: sampling() },
            { id: 2, sampling: sampling() },
          ],
          prefill: [
            { id: 0, start: 4, tokens: prompt(1), sample: true },
            { id: 1, start: 0, tokens: prompt(1), sample: true },
            { id: 2, start: 0, tokens: prompt(1), sample: true },
          ],
        },
        /maxBatch is 2/,
      ],
      [
        {
          ...E,
          prefill: [
            { id: 0, start: 4, tokens: prompt(1), sample: true },
            { id: 0, start: 5, tokens: prompt(1), sample: true },
          ],
        },
        /appears twice/,
      ],
    ];
    for (const [batch, msg] of bad) {
      await expect(r.forward(batch)).rejects.toSatisfy(
        (e: unknown) =>
          e instanceof InvalidBatchError && e.code === 'TSI_ERR_INVALID_BATCH' && msg.test(e.message),
      );
    }
    expect(r.seqLen(0)).toBe(4);
    expect(r.kvUsedTokens).toBe(4);
    // decode past the context length
    await r.forward({ ...E, prefill: [{ id: 0, start: 4, tokens: prompt(8), sample: true }] });
    await expect(r.forward({ ...E, decode: [0] })).rejects.toThrow(
      /would reach 13 tokens, context length is 12/,
    );
  });

  it('rejects a forward while another is in flight, and any after close', async () => {
    const timeline = new VirtualTimeline();
    const r = new SimRunner({ profile: testProfile(), wait: timeline.sleep });
    const first = r.forward(E);
    await expect(r.forward(E)).rejects.toThrow(/in flight/);
    await timeline.runUntilIdle();
    await first;
    await r.close();
    await expect(r.forward(E)).rejects.toBeInstanceOf(TsinferError);
  });
});

describe('SimRunner time', () => {
  it('waits exactly the modelled cost of each pass and exposes it', async () => {
    const profile = testProfile();
    const waits: number[] = [];
    const r = new SimRunner({
      profile,
      wait: async (ms) => {
        waits.push(ms);
      },
    });
    const b1: ForwardBatch = {
      ...E,
      add: [{ id: 0, sampling: sampling() }],
      prefill: [{ id: 0, start: 0, tokens: prompt(100), sample: true }],
    };
    expect(r.estimateCostMs(b1)).toBeCloseTo(
      stepCostMs(profile.cost, b1, () => 0),
      12,
    );
    await r.forward(b1);
    const b2: ForwardBatch = { ...E, decode: [0] };
    const expected2 = stepCostMs(profile.cost, b2, () => 100);
    expect(r.estimateCostMs(b2)).toBeCloseTo(expected2, 12);
    await r.forward(b2);
    expect(waits[0]).toBeCloseTo(
      stepCostMs(profile.cost, b1, () => 0),
      12,
    );
    expect(waits[1]).toBeCloseTo(expected2, 12);
    expect(r.lastStepCostMs).toBe(waits[1]);
    expect(r.lastStepFeatures?.perKvTokenReadMs).toBe(101);
    expect(r.totalCostMs).toBeCloseTo(waits[0]! + waits[1]!, 12);
  });

  it('runs in virtual time on a VirtualTimeline: the clock moves by the cost, no real time passes', async () => {
    const timeline = new VirtualTimeline(new ManualClock(1000));
    const r = new SimRunner({ profile: testProfile(), wait: timeline.sleep });
    const done: number[] = [];
    const loop = (async () => {
      await r.forward({
        ...E,
        add: [{ id: 0, sampling: sampling() }],
        prefill: [{ id: 0, start: 0, tokens: prompt(64), sample: true }],
      });
      done.push(timeline.nowMs());
      for (let k = 0; k < 100; k++) await r.forward({ ...E, decode: [0] });
      done.push(timeline.nowMs());
    })();
    const t0 = performance.now();
    await timeline.runUntilIdle();
    await loop;
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(done[1]! - 1000).toBeCloseTo(r.totalCostMs, 9);
    expect(done[1]! - done[0]!).toBeGreaterThan(100 * 2.4);
  });
});

describe('createRealTimeWait', () => {
  /** A fake event loop: timers wake 1 ms late; a turn takes 0.05 ms. */
  function fakeLoop() {
    const clock = new ManualClock(0);
    let sleeps = 0;
    let turns = 0;
    const wait = createRealTimeWait({
      clock,
      sleep: async (ms) => {
        sleeps++;
        clock.advance(ms + 1);
      },
      yieldTurn: async () => {
        turns++;
        clock.advance(0.05);
      },
    });
    return { clock, wait, counts: () => ({ sleeps, turns }) };
  }

  it('ends each wait at its deadline, not a timer overshoot later', async () => {
    const { clock, wait } = fakeLoop();
    await wait(10);
    expect(clock.nowMs()).toBeGreaterThanOrEqual(10);
    expect(clock.nowMs()).toBeLessThan(10.1);
  });

  it('does not accumulate overshoot over back-to-back waits', async () => {
    const { clock, wait, counts } = fakeLoop();
    for (let i = 0; i < 1000; i++) await wait(0.3);
    // 1000 x 0.3 ms = 300 ms; a plain setTimeout would take >= 1000 x 1.3 ms
    expect(clock.nowMs()).toBeGreaterThanOrEqual(300);
    expect(clock.nowMs()).toBeLessThan(300.1);
    expect(counts().sleeps).toBe(0);
    for (let i = 0; i < 10; i++) await wait(5);
    expect(clock.nowMs()).toBeLessThan(350.1);
    expect(counts().sleeps).toBe(10);
  });

  it('takes a late wake-up (a descheduled process) off the next wait', async () => {
    const clock = new ManualClock(0);
    const wait = createRealTimeWait({
      clock,
      sleep: async (ms) => clock.advance(ms + 3), // 3 ms late, more than the spin window
      yieldTurn: async () => clock.advance(0.05),
    });
    for (let i = 0; i < 100; i++) await wait(5);
    expect(clock.nowMs()).toBeGreaterThanOrEqual(500);
    expect(clock.nowMs()).toBeLessThanOrEqual(503.1);
  });

  it('starts afresh after an idle gap instead of catching up', async () => {
    const { clock, wait } = fakeLoop();
    await wait(2);
    clock.advance(100);
    const t = clock.nowMs();
    await wait(2);
    expect(clock.nowMs() - t).toBeGreaterThanOrEqual(2);
  });
});
