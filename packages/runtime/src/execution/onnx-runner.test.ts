import { createRng } from '@tsinfer/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GEN_LENGTHS,
  GREEDY,
  makePrompts,
  recomputeLogits,
  runBatched,
  runSequential,
} from '../../test/fixtures/schedules.js';
import { buildTiny, type TinyModel } from '../../test/fixtures/tiny-models.js';
import type { ForwardBatch, SamplingParams } from '../contract.js';
import { groupRagged, OnnxRunner } from './onnx-runner.js';

const layouts = ['genai', 'optimum'] as const;
const models = new Map<string, TinyModel>();

beforeAll(async () => {
  for (const l of layouts) models.set(l, await buildTiny(l));
}, 120_000);
afterAll(async () => {
  for (const m of models.values()) await m.cleanup();
});

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if ((a[i] as number) > (a[best] as number)) best = i;
  return best;
}

describe.each(layouts)('OnnxRunner (%s layout, tiny, CPU fp32)', (layout) => {
  const open = (extra: Partial<Parameters<typeof OnnxRunner.create>[0]> = {}) =>
    OnnxRunner.create({
      modelDir: (models.get(layout) as TinyModel).dir,
      maxTotalTokens: 4096,
      intraOpThreads: 2,
      ...extra,
    });

  it('loads the model facts from the config files', async () => {
    const r = await open();
    try {
      expect(r.info.vocabSize).toBe((models.get(layout) as TinyModel).vocabSize);
      expect(r.info.contextLength).toBe(2048);
      expect(r.info.eosTokenIds.length).toBeGreaterThan(0);
      expect(r.info.kvCapacityTokens).toBe(4096);
      expect(r.spec.layout).toBe(layout);
    } finally {
      await r.close();
    }
  });

  it('batched (ragged prefill, chunk continuation, joins and leaves) equals each prompt decoded alone', async () => {
    const prompts = makePrompts((models.get(layout) as TinyModel).vocabSize);
    const seq = await open({ debugLastLogits: true });
    const bat = await open({ debugLastLogits: true });
    try {
      const ref = await runSequential(seq, prompts, (id) => seq.lastLogits.get(id));
      let maxRows = 0;
      const got = await runBatched(
        bat,
        prompts,
        (id) => bat.lastLogits.get(id),
        (_, b) => {
          maxRows = Math.max(maxRows, b.decode.length);
        },
      );
      expect(maxRows).toBeGreaterThanOrEqual(5);
      let worst = 0;
      for (let id = 0; id < prompts.length; id++) {
        expect(ref.tokens[id]?.length).toBe(GEN_LENGTHS[id]);
        expect(got.tokens[id], `request ${id}`).toEqual(ref.tokens[id]);
        const refL = ref.logits[id] as Float32Array[];
        const gotL = got.logits[id] as Float32Array[];
        expect(gotL.length).toBe(refL.length);
        for (let g = 0; g < refL.length; g++) {
          worst = Math.max(worst, maxAbsDiff(gotL[g] as Float32Array, refL[g] as Float32Array));
          // The in-graph ArgMax is the argmax of the fetched logits.
          expect(got.tokens[id]?.[g]).toBe(argmax(gotL[g] as Float32Array));
        }
      }
      expect(worst).toBeLessThan(1e-4);
      expect(bat.kv.usedTokens).toBe(0);
      // And both equal a full recompute of every prefix without a KV cache.
      let worstRecompute = 0;
      for (let id = 0; id < prompts.length; id++) {
        const full = await recomputeLogits(seq, prompts[id] as Int32Array, ref.tokens[id] as number[], (i) =>
          seq.lastLogits.get(i),
        );
        full.forEach((l, g) => {
          worstRecompute = Math.max(
            worstRecompute,
            maxAbsDiff(l, (ref.logits[id] as Float32Array[])[g] as Float32Array),
          );
        });
      }
      expect(worstRecompute).toBeLessThan(1e-4);
    } finally {
      await seq.close();
      await bat.close();
    }
  });

  it('1,000 requests with random lengths, aborts and finishes leave the KV cache exactly empty', async () => {
    const r = await open({ maxTotalTokens: 2000, maxRequests: 64 });
    const rng = createRng(1234);
    const V = r.info.vocabSize;
    type Live = { prompt: Int32Array; done: number; len: number; toGen: number; sampled: boolean };
    const live = new Map<number, Live>();
    let started = 0;
    let finished = 0;
    let aborted = 0;
    let nextId = 0;
    let pendingFree: number[] = [];
    try {
      while (started < 1000 || live.size > 0 || pendingFree.length > 0) {
        const batch: {
          free: number[];
          add: { id: number; sampling: SamplingParams }[];
          prefill: ForwardBatch['prefill'][number][];
          decode: number[];
        } = {
          free: pendingFree,
          add: [],
          prefill: [],
          decode: [],
        };
        pendingFree = [];
        // Random aborts of held requests (mid-prefill included).
        for (const [id] of live) {
          if (rng.next() < 0.03) {
            batch.free.push(id);
            live.delete(id);
            aborted++;
          }
        }
        const joins = started < 1000 ? rng.int(0, 6) : 0;
        for (let j = 0; j < joins && started < 1000 && live.size < 48; j++) {
          const id = nextId++ % 100_000;
          const prompt = Int32Array.from({ length: rng.int(1, 20) }, () => rng.int(0, V - 1));
          live.set(id, { prompt, done: 0, len: 0, toGen: rng.int(1, 12), sampled: false });
          batch.add.push({ id, sampling: GREEDY });
          started++;
        }
        for (const [id, q] of live) {
          if (q.done < q.prompt.length) {
            // Chunks of up to 8 tokens: long prompts take several passes.
            const n = Math.min(8, q.prompt.length - q.done);
            const last = q.done + n === q.prompt.length;
            batch.prefill.push({
              id,
              tokens: q.prompt.subarray(q.done, q.done + n),
              start: q.done,
              sample: last,
            });
            q.done += n;
            q.len += n;
          } else if (q.sampled) {
            batch.decode.push(id);
            q.len += 1;
          }
        }
        const out = await r.forward(batch);
        let expected = 0;
        for (const q of live.values()) expected += q.len;
        expect(out.kvUsedTokens).toBe(expected);
        for (let i = 0; i < out.ids.length; i++) {
          const id = out.ids[i] as number;
          const q = live.get(id) as Live;
          q.sampled = true;
          q.toGen--;
          if (q.toGen === 0) {
            live.delete(id);
            pendingFree.push(id);
            finished++;
          }
        }
      }
      expect(started).toBe(1000);
      expect(finished + aborted).toBe(1000);
      expect(aborted).toBeGreaterThan(20);
      expect(r.heldRequests).toBe(0);
      const s = r.kv.stats();
      expect(s.usedTokens).toBe(0);
      expect(s.requests).toBe(0);
      expect(s.freeBlocks).toBe(s.totalBlocks);
    } finally {
      await r.close();
    }
  }, 120_000);
});

describe('OnnxRunner errors and sampling (genai tiny)', () => {
  const open = (extra: Partial<Parameters<typeof OnnxRunner.create>[0]> = {}) =>
    OnnxRunner.create({
      modelDir: (models.get('genai') as TinyModel).dir,
      maxTotalTokens: 64,
      intraOpThreads: 2,
      ...extra,
    });

  it('rejects a forward past the KV capacity and changes nothing', async () => {
    const r = await open();
    try {
      const big = new Int32Array(70).fill(5);
      await expect(
        r.forward({
          free: [],
          add: [{ id: 1, sampling: GREEDY }],
          prefill: [{ id: 1, tokens: big, start: 0, sample: true }],
          decode: [],
        }),
      ).rejects.toMatchObject({ code: 'TSI_ERR_KV_CAPACITY' });
      expect(r.kv.usedTokens).toBe(0);
      expect(r.heldRequests).toBe(0);
      const out = await r.forward({
        free: [],
        add: [{ id: 1, sampling: GREEDY }],
        prefill: [{ id: 1, tokens: big.subarray(0, 60), start: 0, sample: true }],
        decode: [],
      });
      expect(out.kvUsedTokens).toBe(60);
    } finally {
      await r.close();
    }
  });

  it('rejects batches that break the contract', async () => {
    const r = await open();
    try {
      await expect(r.forward({ free: [], add: [], prefill: [], decode: [3] })).rejects.toMatchObject({
        code: 'TSI_ERR_INVALID_BATCH',
      });
      await expect(
        r.forward({
          free: [],
          add: [{ id: 2, sampling: GREEDY }],
          prefill: [{ id: 2, tokens: Int32Array.of(1, 2), start: 1, sample: true }],
          decode: [],
        }),
      ).rejects.toMatchObject({ code: 'TSI_ERR_INVALID_BATCH' });
      await expect(
        r.forward({
          free: [],
          add: [{ id: 2, sampling: GREEDY }],
          prefill: [{ id: 2, tokens: Int32Array.of(1, 1e6), start: 0, sample: true }],
          decode: [],
        }),
      ).rejects.toMatchObject({ code: 'TSI_ERR_INVALID_BATCH' });
      expect(r.heldRequests).toBe(0);
    } finally {
      await r.close();
    }
  });

  it('samples from the in-graph top-k, reproducibly per seed, and only among the top k logits', async () => {
    const sampling: SamplingParams = { ...GREEDY, temperature: 1.5, topK: 5, seed: 99 };
    const runOnce = async () => {
      const r = await open({ debugLastLogits: true, maxTotalTokens: 512 });
      const tokens: number[] = [];
      try {
        const prompt = Int32Array.of(10, 20, 30, 40, 50);
        let out = await r.forward({
          free: [],
          add: [{ id: 0, sampling }],
          prefill: [{ id: 0, tokens: prompt, start: 0, sample: true }],
          decode: [],
        });
        for (let step = 0; step < 12; step++) {
          const t = out.tokens[0] as number;
          const logits = r.lastLogits.get(0) as Float32Array;
          const kth = [...logits].sort((a, b) => b - a)[4] as number;
          expect(logits[t]).toBeGreaterThanOrEqual(kth);
          tokens.push(t);
          out = await r.forward({ free: [], add: [], prefill: [], decode: [0] });
        }
      } finally {
        await r.close();
      }
      return tokens;
    };
    const a = await runOnce();
    const b = await runOnce();
    expect(a).toEqual(b);
    expect(new Set(a).size).toBeGreaterThan(1);
  });

  it('serves greedy, top-k and full-logits (penalties, logprobs) requests in one batch', async () => {
    const r = await open({ debugLastLogits: true, maxTotalTokens: 512 });
    try {
      const topk: SamplingParams = { ...GREEDY, temperature: 0.8, topK: 10, seed: 1 };
      const full: SamplingParams = {
        ...GREEDY,
        temperature: 0.7,
        repetitionPenalty: 1.3,
        seed: 2,
        logprobs: 3,
      };
      const prompts = [Int32Array.of(4, 5, 6), Int32Array.of(7, 8, 9, 10), Int32Array.of(11, 12)];
      let out = await r.forward({
        free: [],
        add: [
          { id: 0, sampling: GREEDY },
          { id: 1, sampling: topk },
          { id: 2, sampling: full },
        ],
        prefill: prompts.map((tokens, id) => ({ id, tokens, start: 0, sample: true })),
        decode: [],
      });
      for (let step = 0; step < 5; step++) {
        expect([...out.ids]).toEqual([0, 1, 2]);
        const lp = out.logprobs;
        expect(lp?.[0]).toBeNull();
        expect(lp?.[1]).toBeNull();
        const l2 = lp?.[2];
        expect(l2?.topIds.length).toBe(3);
        // Raw logprob of the chosen token = log-softmax of the row the runner fetched.
        const row = r.lastLogits.get(2) as Float32Array;
        let max = Number.NEGATIVE_INFINITY;
        for (const v of row) max = Math.max(max, v);
        let z = 0;
        for (const v of row) z += Math.exp(v - max);
        const t = out.tokens[2] as number;
        expect(l2?.logprob).toBeCloseTo((row[t] as number) - max - Math.log(z), 4);
        expect(argmax(r.lastLogits.get(0) as Float32Array)).toBe(out.tokens[0]);
        out = await r.forward({ free: [], add: [], prefill: [], decode: [0, 1, 2] });
      }
    } finally {
      await r.close();
    }
  });

  it('rejects invalid capacity options with the flag name', async () => {
    await expect(open({ maxTotalTokens: 0 })).rejects.toMatchObject({
      code: 'TSI_ERR_INVALID_CONFIG',
      message: expect.stringContaining('--max-total-tokens'),
    });
    await expect(open({ maxTotalTokens: undefined, memFractionStatic: 1.5 })).rejects.toMatchObject({
      message: expect.stringContaining('--mem-fraction-static'),
    });
  });

  it('fails to load with a clear error for a missing directory', async () => {
    await expect(OnnxRunner.create({ modelDir: '/nonexistent/tsinfer-model' })).rejects.toMatchObject({
      code: 'TSI_ERR_MODEL_LOAD',
    });
  });

  it('fails at start with TSI_ERR_DEVICE_UNAVAILABLE and the fix when the CUDA provider is not installed', async () => {
    const { CUDA_PROVIDER_LIBS, ortBindingDir } = await import('./device.js');
    const { existsSync } = await import('node:fs');
    const { join } = await import('node:path');
    const installed = CUDA_PROVIDER_LIBS.every((f) => existsSync(join(ortBindingDir(), f)));
    if (installed) return; // a GPU machine with the provider installed: nothing to check here
    await expect(open({ device: 'cuda' })).rejects.toMatchObject({
      code: 'TSI_ERR_DEVICE_UNAVAILABLE',
      message: expect.stringContaining('pnpm gpu:install'),
    });
  });
});

describe.each(layouts)('OnnxRunner fp16 (%s layout, tiny, CPU)', (layout) => {
  it('keeps the KV cache as float16 bits and batched equals sequential', async () => {
    const m = await buildTiny(layout, 3, 'fp16');
    const seq = await OnnxRunner.create({
      modelDir: m.dir,
      maxTotalTokens: 4096,
      intraOpThreads: 2,
      debugLastLogits: true,
    });
    const bat = await OnnxRunner.create({
      modelDir: m.dir,
      maxTotalTokens: 4096,
      intraOpThreads: 2,
      debugLastLogits: true,
    });
    try {
      expect(seq.spec.dtype).toBe('fp16');
      const prompts = makePrompts(m.vocabSize, 3);
      const ref = await runSequential(seq, prompts, (id) => seq.lastLogits.get(id));
      const got = await runBatched(bat, prompts, (id) => bat.lastLogits.get(id));
      expect(got.tokens).toEqual(ref.tokens);
      let worst = 0;
      ref.logits.forEach((ls, id) => {
        ls.forEach((l, g) => {
          worst = Math.max(worst, maxAbsDiff(l, got.logits[id]?.[g] as Float32Array));
        });
      });
      expect(worst).toBeLessThan(1e-2);
    } finally {
      await seq.close();
      await bat.close();
      await m.cleanup();
    }
  });
});

describe('groupRagged', () => {
  const rows = (...lens: number[]) => lens.map((n) => ({ tokens: { length: n } }));
  const shape = (groups: { tokens: { length: number } }[][]) =>
    groups.map((g) => g.map((r) => r.tokens.length));

  it('keeps similar lengths together, longest first, and splits off rows that would mostly be padding', () => {
    expect(shape(groupRagged(rows(5, 7, 6, 7)))).toEqual([[7, 7, 6, 5]]);
    expect(shape(groupRagged(rows(3, 100, 3, 3)))).toEqual([[100], [3, 3, 3]]);
    expect(shape(groupRagged(rows(40, 30, 25, 3, 1)))).toEqual([[40, 30, 25, 3], [1]]);
    expect(shape(groupRagged(rows(64, 8, 8, 8, 8)))).toEqual([[64], [8, 8, 8, 8]]);
    expect(groupRagged([])).toEqual([]);
  });
});

describe('resuming a retracted request (NewRequest.promptLength)', () => {
  it('continues a seeded, penalized sampling stream exactly where it stopped', async () => {
    const runner = await OnnxRunner.create({
      modelDir: (models.get('genai') as TinyModel).dir,
      maxTotalTokens: 4096,
      intraOpThreads: 2,
    });
    const sampling: SamplingParams = {
      ...GREEDY,
      temperature: 0.9,
      topP: 0.95,
      frequencyPenalty: 0.7,
      presencePenalty: 0.3,
      seed: 1234,
    };
    const prompt = Int32Array.from([5, 17, 300, 42, 9, 77, 1000, 3]);
    const step = (batch: Partial<ForwardBatch>) =>
      runner.forward({ free: [], add: [], prefill: [], decode: [], ...batch });
    try {
      // Uninterrupted: prefill, then 15 decode steps.
      const whole: number[] = [];
      let out = await step({
        add: [{ id: 1, sampling }],
        prefill: [{ id: 1, tokens: prompt, start: 0, sample: true }],
      });
      whole.push(out.tokens[0] as number);
      for (let i = 0; i < 15; i++) {
        out = await step({ decode: [1] });
        whole.push(out.tokens[0] as number);
      }
      await step({ free: [1] });

      // Retracted after 6 tokens: re-added with prompt + those 6 as its fill, in two chunks.
      const k = 6;
      const fill = Int32Array.from([...prompt, ...whole.slice(0, k)]);
      const resumed: number[] = [];
      await step({
        add: [{ id: 2, sampling, promptLength: prompt.length }],
        prefill: [{ id: 2, tokens: fill.subarray(0, 5), start: 0, sample: false }],
      });
      out = await step({ prefill: [{ id: 2, tokens: fill.subarray(5), start: 5, sample: true }] });
      resumed.push(out.tokens[0] as number);
      for (let i = k + 1; i < whole.length; i++) {
        out = await step({ decode: [2] });
        resumed.push(out.tokens[0] as number);
      }
      expect(resumed).toEqual(whole.slice(k));

      // Without promptLength the resumed stream differs (the test can tell the difference).
      await step({ free: [2] });
      out = await step({
        add: [{ id: 3, sampling }],
        prefill: [{ id: 3, tokens: fill, start: 0, sample: true }],
      });
      const naive = [out.tokens[0] as number];
      for (let i = k + 1; i < whole.length; i++) {
        out = await step({ decode: [3] });
        naive.push(out.tokens[0] as number);
      }
      expect(naive).not.toEqual(whole.slice(k));
    } finally {
      await runner.close();
    }
  });
});
