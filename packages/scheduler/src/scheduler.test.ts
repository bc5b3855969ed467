import { ManualClock } from '@tsinfer/core';
import { SimRunner } from '@tsinfer/runtime';
import { describe, expect, it } from 'vitest';
import { letterStopMatcher, letters, profile, prompt, Recorder, runAlone } from '../test/helpers.js';
import { InvalidRequestError } from './errors.js';
import { Scheduler } from './scheduler.js';
import { VirtualCluster } from './virtual.js';

function cluster(opts: ConstructorParameters<typeof VirtualCluster>[0], rec: Recorder): VirtualCluster {
  return new VirtualCluster({ ...opts, sink: (r) => rec.sink(r) });
}

describe('Scheduler pass basics (virtual time, SimRunner)', () => {
  it('runs a request to max_new_tokens, streaming every token, and frees its KV', async () => {
    const rec = new Recorder();
    const p = profile();
    const c = cluster({ profile: p }, rec);
    c.submit(0, 0, { rid: 'a', promptTokens: prompt(10, 1), maxNewTokens: 7, dispatchSeq: 41 });
    await c.run();
    const f = rec.finished.get('a')!;
    const last = rec.passes.at(-1)!;
    expect(last.ackedDispatchSeq).toBe(41);
    expect(last.totalPrefillUncachedTokens).toBe(10);
    expect(last.totalPrefillBusyUs).toBeCloseTo(c.runners[0]!.profile.cost.fixedMs * 1000 + 2000 + 100, 6);
    expect(last.totalGeneratedTokens).toBe(7);
    expect(last.totalDecodePasses).toBe(6);
    expect(f.reason).toBe('length');
    expect(f.tokens).toHaveLength(7);
    expect(rec.streamed.get('a')).toEqual(f.tokens);
    // pass 1 prefill (samples token 1), then 6 decodes; the last pass's free reaches the runner in no later pass,
    // so the scheduler's accounting and the runner agree once the final free-only pass ran.
    const modes = rec.passes.map((s) => s.mode);
    expect(modes.slice(0, 7)).toEqual([
      'prefill',
      'decode',
      'decode',
      'decode',
      'decode',
      'decode',
      'decode',
    ]);
    expect(c.schedulers[0]!.usedTokens).toBe(0);
    expect(c.runners[0]!.heldRequests).toBe(0);
    expect(c.runners[0]!.kvUsedTokens).toBe(0);
    // virtual time moved by the modelled pass times only
    expect(c.nowMs()).toBeCloseTo(c.runners[0]!.totalCostMs, 9);
  });

  it('keeps its KV accounting equal to the runner after every pass', async () => {
    const rec = new Recorder();
    const p = profile({ eosProbability: 0.05 });
    const c = cluster({ profile: p, config: { chunkedPrefillSize: 64 } }, rec);
    const runner = c.runners[0]!;
    const mismatches: string[] = [];
    rec.onFinishHooks.push(() => {});
    const s = c.schedulers[0]!;
    const origStep = s.step.bind(s);
    s.step = async () => {
      const st = await origStep();
      // the runner has not yet been told about frees decided in this pass: compare with what it holds minus those
      if (runner.kvUsedTokens < s.usedTokens)
        mismatches.push(`pass ${st.pass}: runner ${runner.kvUsedTokens} < sched ${s.usedTokens}`);
      return st;
    };
    for (let i = 0; i < 30; i++)
      c.submit(i * 3, 0, { rid: `r${i}`, promptTokens: prompt(20 + i * 7, i), maxNewTokens: 30 });
    await c.run();
    expect(mismatches).toEqual([]);
    expect(rec.finished.size).toBe(30);
    expect(runner.kvUsedTokens).toBe(0);
  });

  it('rejects invalid requests with TSI_ERR_INVALID_REQUEST', () => {
    const p = profile({ context: 100, kv: 1000 });
    const s = new Scheduler({ runner: new SimRunner({ profile: p }), clock: new ManualClock() });
    expect(() => s.addRequest({ rid: 'e', promptTokens: [], maxNewTokens: 5 })).toThrow(InvalidRequestError);
    expect(() => s.addRequest({ rid: 'l', promptTokens: prompt(99, 1), maxNewTokens: 5 })).toThrow(
      /at most 98 fit/,
    );
    expect(() => s.addRequest({ rid: 'm', promptTokens: prompt(5, 1), maxNewTokens: 0 })).toThrow(
      /max_new_tokens/,
    );
    s.addRequest({ rid: 'ok', promptTokens: prompt(90, 1), maxNewTokens: 500 });
    expect(s.getRequest('ok')!.maxNewTokens).toBe(9); // clipped: 90 + 9 = 99 = min(context, kv) - 1
    try {
      s.addRequest({ rid: 'ok', promptTokens: prompt(5, 1), maxNewTokens: 5 });
      expect.unreachable();
    } catch (err) {
      expect((err as InvalidRequestError).code).toBe('TSI_ERR_INVALID_REQUEST');
    }
  });
});

describe('admission budgets (PrefillAdder)', () => {
  it('--max-prefill-tokens: a batch stops before the request that would reach the budget (the first always goes)', async () => {
    const rec = new Recorder();
    const c = cluster(
      { profile: profile(), config: { maxPrefillTokens: 250, chunkedPrefillSize: null } },
      rec,
    );
    for (let i = 0; i < 5; i++)
      c.submit(0, 0, { rid: `r${i}`, promptTokens: prompt(100, i), maxNewTokens: 3 });
    c.submit(0, 0, { rid: 'big', promptTokens: prompt(600, 9), maxNewTokens: 3 });
    await c.run();
    const prefills = rec.passes
      .filter((s) => s.mode === 'prefill')
      .map((s) => [s.admittedReqs, s.prefillTokens]);
    // 100+100 fit under 250 (a third would reach it); then 2 more; then r4 alone (big would reach 250); big alone (first of its batch).
    expect(prefills).toEqual([
      [2, 200],
      [2, 200],
      [1, 100],
      [1, 600],
    ]);
    expect(rec.finished.size).toBe(6);
  });

  it('--chunked-prefill-size: a long prompt is prefilled chunk by chunk across passes, then decodes as if alone', async () => {
    const rec = new Recorder();
    const p = profile();
    const input = { rid: 'long', promptTokens: prompt(1000, 3), maxNewTokens: 5 };
    const alone = await runAlone(p, input, { chunkedPrefillSize: null });
    const c = cluster({ profile: p, config: { chunkedPrefillSize: 256 } }, rec);
    const chunks: Array<[number, number, boolean]> = [];
    const runner = c.runners[0]!;
    const orig = runner.forward.bind(runner);
    runner.forward = (batch) => {
      for (const ch of batch.prefill) chunks.push([ch.start, ch.tokens.length, ch.sample]);
      return orig(batch);
    };
    c.submit(0, 0, input);
    c.submit(0, 0, { rid: 'short', promptTokens: prompt(30, 4), maxNewTokens: 5 });
    await c.run();
    // pass 1: 256 of the long prompt (it is first); the short one waits (chunk budget used up)
    expect(chunks.slice(0, 4)).toEqual([
      [0, 256, false],
      [256, 256, false],
      [512, 256, false],
      [768, 232, true],
    ]);
    expect(rec.finished.get('long')!.tokens).toEqual(alone.tokens);
    expect(rec.finished.get('short')!.reason).toBe('length');
  });

  it('--chunked-prefill-size: a request behind others gets the rest of the chunk budget first', async () => {
    const rec = new Recorder();
    const c = cluster({ profile: profile(), config: { chunkedPrefillSize: 100 } }, rec);
    c.submit(0, 0, { rid: 'a', promptTokens: prompt(60, 1), maxNewTokens: 2 });
    c.submit(0, 0, { rid: 'b', promptTokens: prompt(150, 2), maxNewTokens: 2 });
    const chunks: Array<[number, number, number]> = [];
    const runner = c.runners[0]!;
    const orig = runner.forward.bind(runner);
    runner.forward = (batch) => {
      for (const ch of batch.prefill) chunks.push([ch.id, ch.start, ch.tokens.length]);
      return orig(batch);
    };
    await c.run();
    // a (60) + first 40 of b; then b's remaining 110 in chunks of 100 and 10
    expect(chunks).toEqual([
      [0, 0, 60],
      [1, 0, 40],
      [1, 40, 100],
      [1, 140, 10],
    ]);
  });

  it('--max-running-requests: admission stops at the cap until a running request finishes', async () => {
    const rec = new Recorder();
    const c = cluster({ profile: profile(), config: { maxRunningRequests: 3 } }, rec);
    for (let i = 0; i < 7; i++)
      c.submit(0, 0, { rid: `r${i}`, promptTokens: prompt(10, i), maxNewTokens: 4 + i });
    await c.run();
    expect(Math.max(...rec.passes.map((s) => s.numRunningReqs))).toBe(3);
    const first = rec.passes[0]!;
    expect(first.admittedReqs).toBe(3);
    expect(rec.finished.size).toBe(7);
    for (const [rid, f] of rec.finished) expect(f.tokens.length, rid).toBe(4 + Number(rid.slice(1)));
  });

  it('--prefill-max-requests: no prefill batch admits more than the cap', async () => {
    const rec = new Recorder();
    const c = cluster({ profile: profile(), config: { prefillMaxRequests: 2 } }, rec);
    for (let i = 0; i < 7; i++)
      c.submit(0, 0, { rid: `r${i}`, promptTokens: prompt(10, i), maxNewTokens: 3 });
    await c.run();
    const admitted = rec.passes.filter((s) => s.mode === 'prefill').map((s) => s.admittedReqs);
    expect(admitted).toEqual([2, 2, 2, 1]);
  });

  it('KV budget: a request is admitted only if input + clipped max_new_tokens fit under free KV − the running reservation', async () => {
    const rec = new Recorder();
    // capacity 1000; each request 100 prompt + 300 max_new = 400 reserved at admission.
    const c = cluster({ profile: profile({ kv: 1000 }), config: { chunkedPrefillSize: null } }, rec);
    for (let i = 0; i < 4; i++)
      c.submit(0, 0, { rid: `r${i}`, promptTokens: prompt(100, i), maxNewTokens: 300 });
    await c.run();
    const first = rec.passes[0]!;
    // r0: 400 < 1000; r1: 400 < 600; r2: 400 >= 200 → NO_TOKEN
    expect(first.admittedReqs).toBe(2);
    // next pass: running reservation = 2 × 299 × 0.7 = 418.6 → free 798 − 418.6 = 379.4 ≤ 400: still refused;
    // the batch stays "full" until one of them finishes
    const second = rec.passes[1]!;
    expect(second.mode).toBe('decode');
    const admitPasses = rec.passes.filter((s) => s.admittedReqs > 0);
    expect(admitPasses[1]!.pass).toBeGreaterThan(300); // after r0/r1 finished (300 tokens each)
    for (const f of rec.finished.values()) expect(f.tokens).toHaveLength(300);
  });
});

describe('finishing: stop strings, stop tokens, max_new_tokens, abort', () => {
  it('stops on a stop string, on EOS, on stop token ids, and on max_new_tokens', async () => {
    const p = profile({ eos: [0], eosProbability: 0 });
    const base = { promptTokens: prompt(12, 5), maxNewTokens: 20 };
    const alone = await runAlone(p, { rid: 'x', ...base });
    const text = letters(alone.tokens);
    const stop = text.slice(5, 8);
    const firstAt = text.indexOf(stop);
    const rec = new Recorder();
    const c = cluster({ profile: p }, rec);
    c.submit(0, 0, { rid: 'str', ...base, stop: letterStopMatcher([stop]) });
    c.submit(0, 0, { rid: 'tok', ...base, stopTokenIds: [alone.tokens[3]!] });
    c.submit(0, 0, { rid: 'len', ...base, maxNewTokens: 6 });
    await c.run();
    const str = rec.finished.get('str')!;
    expect(str.reason).toBe('stop');
    expect(str.matched).toBe(stop);
    expect(str.tokens).toEqual(alone.tokens.slice(0, firstAt + 3));
    const tok = rec.finished.get('tok')!;
    expect(tok.reason).toBe('stop');
    expect(tok.matched).toBe(alone.tokens[3]);
    expect(tok.tokens.length).toBe(alone.tokens.indexOf(alone.tokens[3]!) + 1);
    expect(rec.finished.get('len')!).toMatchObject({ reason: 'length', tokens: alone.tokens.slice(0, 6) });
  });

  it('stops on the model EOS unless ignore_eos', async () => {
    const p = profile({ eos: [0], eosProbability: 0.2 });
    const rec = new Recorder();
    const c = cluster({ profile: p }, rec);
    for (let i = 0; i < 20; i++) {
      c.submit(0, 0, { rid: `e${i}`, promptTokens: prompt(8, i), maxNewTokens: 50 });
      c.submit(0, 0, { rid: `i${i}`, promptTokens: prompt(8, i), maxNewTokens: 50, ignoreEos: true });
    }
    await c.run();
    let stops = 0;
    for (let i = 0; i < 20; i++) {
      const e = rec.finished.get(`e${i}`)!;
      const ig = rec.finished.get(`i${i}`)!;
      expect(ig.reason).toBe('length');
      expect(ig.tokens).toHaveLength(50);
      if (e.reason === 'stop') {
        stops++;
        expect(e.matched).toBe(0);
        expect(e.tokens.at(-1)).toBe(0);
        expect(e.tokens.indexOf(0)).toBe(e.tokens.length - 1);
        // same sequence as the ignore_eos twin up to the EOS
        expect(ig.tokens.slice(0, e.tokens.length)).toEqual(e.tokens);
      } else {
        expect(e.tokens).not.toContain(0);
      }
    }
    expect(stops).toBeGreaterThan(10);
  });

  it('abort mid-prefill frees the partial KV; abort mid-decode frees the KV; abort while waiting leaves the queue', async () => {
    const rec = new Recorder();
    const p = profile();
    const c = cluster({ profile: p, config: { chunkedPrefillSize: 100, maxRunningRequests: 2 } }, rec);
    const s = c.schedulers[0]!;
    const runner = c.runners[0]!;
    c.submit(0, 0, { rid: 'long', promptTokens: prompt(450, 1), maxNewTokens: 10 });
    c.submit(0, 0, { rid: 'dec', promptTokens: prompt(20, 2), maxNewTokens: 400 });
    c.submit(0, 0, { rid: 'other', promptTokens: prompt(20, 3), maxNewTokens: 400 });
    c.submit(0, 0, { rid: 'wait', promptTokens: prompt(20, 4), maxNewTokens: 5 });
    const seen: string[] = [];
    // abort "long" after its second chunk, while it is the chunked request
    let aborted = false;
    const orig = s.step.bind(s);
    s.step = async () => {
      const st = await orig();
      if (!aborted && s.chunkedRequest?.rid === 'long' && s.chunkedRequest.kvLen === 200) {
        aborted = true;
        const before = s.usedTokens;
        expect(s.abort('long')).toBe(true);
        seen.push(`long held ${s.getRequest('long')!.kvLen} of ${before}`);
      }
      return st;
    };
    c.abortAt(100, 0, 'dec');
    c.abortAt(0, 0, 'wait');
    await c.run();
    expect(aborted).toBe(true);
    expect(seen).toEqual(['long held 200 of 200']);
    expect(rec.finished.get('long')).toMatchObject({ reason: 'abort', tokens: [] });
    const dec = rec.finished.get('dec')!;
    expect(dec.reason).toBe('abort');
    expect(dec.tokens.length).toBeGreaterThan(0);
    expect(dec.tokens.length).toBeLessThan(400);
    expect(rec.finished.get('wait')).toMatchObject({ reason: 'abort', tokens: [] });
    expect(rec.finished.get('other')).toMatchObject({ reason: 'length' });
    expect(runner.kvUsedTokens).toBe(0);
    expect(runner.heldRequests).toBe(0);
    expect(s.usedTokens).toBe(0);
    const last = rec.passes.at(-1)!;
    expect(last.totalAbortedReqs).toBe(3);
  });

  it('frees an aborted request in the pass right after its abort (KV accounting drops at once)', async () => {
    const rec = new Recorder();
    const c = cluster({ profile: profile() }, rec);
    const s = c.schedulers[0]!;
    c.submit(0, 0, { rid: 'a', promptTokens: prompt(50, 1), maxNewTokens: 1000 });
    c.submit(0, 0, { rid: 'b', promptTokens: prompt(50, 2), maxNewTokens: 20 });
    let usedAtAbort = -1;
    rec.onFinishHooks.push((f) => {
      if (f.rid === 'b') {
        usedAtAbort = s.usedTokens;
        s.abort('a');
      }
    });
    await c.run();
    const abortPass = rec.passes.find((p) => p.abortedReqs === 1)!;
    expect(usedAtAbort).toBeGreaterThan(50);
    expect(abortPass.numUsedTokens).toBe(0);
    expect(abortPass.numRunningReqs).toBe(0);
  });
});

describe('regressions', () => {
  it('a request that finishes on its own prefill re-opens admission (no sticky batch_is_full on an empty rank)', async () => {
    // Found by property.test.ts: A's last chunk left exactly no KV budget for B (NO_TOKEN → batch full), then A
    // finished on its prefill without ever joining the running batch; B must still be admitted.
    const rec = new Recorder();
    const c = new VirtualCluster({
      profile: profile({ kv: 300, context: 4096 }),
      config: { chunkedPrefillSize: 1, maxPrefillTokens: 1, maxRunningRequests: 3, prefillMaxRequests: 2 },
      sink: (r) => rec.sink(r),
    });
    c.submit(0, 0, { rid: 'A', promptTokens: prompt(8, 0), maxNewTokens: 1 });
    c.submit(0, 0, { rid: 'B', promptTokens: prompt(149, 0), maxNewTokens: 142 });
    await c.run({ maxEvents: 5000 });
    expect(rec.finished.get('A')!.tokens).toHaveLength(1);
    expect(rec.finished.get('B')!.tokens).toHaveLength(142);
  });
});
