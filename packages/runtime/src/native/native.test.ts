import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRng } from '@tsinfer/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY, makePrompts, runBatched, runSequential } from '../../test/fixtures/schedules.js';
import { buildTiny, type TinyModel } from '../../test/fixtures/tiny-models.js';
import type { ForwardBatch, ForwardOutput, ModelRunner } from '../contract.js';
import { OnnxRunner } from '../execution/onnx-runner.js';
import { createRunner } from './backend.js';
import { loadNativeBackend, NativeUnavailableError } from './loader.js';
import { NativeRunner, type NativeRunnerOptions } from './runner.js';

const loaded = loadNativeBackend();
const available = loaded.ok;
const why = loaded.ok ? '' : ` (skipped: ${loaded.reason})`;

describe('loadNativeBackend', () => {
  it('gives a clear reason, never a throw, when the addon is missing', () => {
    const r = loadNativeBackend('/nonexistent/build/Release/tsinfer_native.node');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toMatch(
      /native addon not built: \/nonexistent\/build\/Release\/tsinfer_native\.node does not exist/,
    );
    expect(r.reason).toContain('node packages/runtime/native/build.mjs');
  });

  it("carries the last build's failure when the addon is missing", async () => {
    const root = await mkdtemp(join(tmpdir(), 'tsinfer-native-'));
    try {
      await mkdir(join(root, 'build', 'Release'), { recursive: true });
      await writeFile(
        join(root, 'build', 'build-error.txt'),
        'onnxruntime-node 1.30.0 is installed; the native backend needs 1.29.0\n',
      );
      const r = loadNativeBackend(join(root, 'build', 'Release', 'tsinfer_native.node'));
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toContain('its last build failed: onnxruntime-node 1.30.0 is installed');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('reports why a file that is not an addon fails to load', () => {
    const r = loadNativeBackend(new URL(import.meta.url).pathname);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/^native addon failed to load from .*native\.test\.ts: /);
  });

  it(`reports the built addon's state${why}`, () => {
    // Informational in CI logs: either the binding for onnxruntime 1.29.0, or the reason.
    if (loaded.ok) expect(loaded.binding.ortVersion).toBe('1.29.0');
    else expect(loaded.reason.length).toBeGreaterThan(20);
  });
});

let genai: TinyModel;
let optimum: TinyModel;
beforeAll(async () => {
  if (!available) return;
  genai = await buildTiny('genai');
  optimum = await buildTiny('optimum');
}, 120_000);
afterAll(async () => {
  await genai?.cleanup();
  await optimum?.cleanup();
});

const base = (extra: Partial<NativeRunnerOptions> = {}): NativeRunnerOptions => ({
  modelDir: genai.dir,
  maxTotalTokens: 4096,
  intraOpThreads: 2,
  ...extra,
});

async function withRunners<T>(
  nativeExtra: Partial<NativeRunnerOptions>,
  body: (js: OnnxRunner, nat: NativeRunner) => Promise<T>,
): Promise<T> {
  const js = await OnnxRunner.create(base());
  const nat = await NativeRunner.create(base({ maxSlots: 8, maxSeqLen: 512, ...nativeExtra }));
  try {
    return await body(js, nat);
  } finally {
    await js.close();
    await nat.close();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

describe.skipIf(!available)(`NativeRunner vs OnnxRunner (tiny genai, CPU fp32)${why}`, () => {
  for (const decodeGap of [8, 0]) {
    it(`same greedy tokens and KV accounting for ragged batches with joins, leaves and a chunked prefill (decodeGap ${decodeGap})`, async () => {
      await withRunners({ decodeGap, debugLastLogits: true }, async (js, nat) => {
        const prompts = makePrompts(js.info.vocabSize);
        const kvJs: number[] = [];
        const kvNat: number[] = [];
        const idsNat: number[][] = [];
        const a = await runBatched(js, prompts, null, (o) => kvJs.push(o.kvUsedTokens));
        const b = await runBatched(
          nat,
          prompts,
          (id) => nat.lastLogits.get(id),
          (o) => {
            kvNat.push(o.kvUsedTokens);
            idsNat.push([...o.ids]);
          },
        );
        expect(b.tokens).toEqual(a.tokens);
        expect(kvNat).toEqual(kvJs);
        expect(kvNat.at(-1)).toBe(0);
        // Every generated token came from logits that match a sequential run of the JS backend.
        const jsDebug = await OnnxRunner.create(base({ debugLastLogits: true }));
        try {
          const ref = await runSequential(jsDebug, prompts, (id) => jsDebug.lastLogits.get(id));
          expect(ref.tokens).toEqual(a.tokens);
          for (let r = 0; r < prompts.length; r++) {
            expect(b.logits[r]?.length).toBe(ref.logits[r]?.length);
            for (let g = 0; g < (ref.logits[r]?.length ?? 0); g++) {
              expect(
                maxAbsDiff(b.logits[r]?.[g] as Float32Array, ref.logits[r]?.[g] as Float32Array),
              ).toBeLessThan(1e-4);
            }
          }
        } finally {
          await jsDebug.close();
        }
        expect(nat.heldRequests).toBe(0);
      });
    });
  }

  it('seeded top-k and full-logits sampling (with logprobs) give what the JS backend gives', async () => {
    await withRunners({}, async (js, nat) => {
      const prompts = makePrompts(js.info.vocabSize);
      const params = [
        { ...GREEDY, temperature: 0.8, topK: 20, seed: 5, logprobs: 3 },
        { ...GREEDY, temperature: 1, topP: 0.9, repetitionPenalty: 1.3, seed: 9, logprobs: 2 },
        { ...GREEDY, temperature: 0.7, minP: 0.05, presencePenalty: 0.5, seed: 1 },
        GREEDY,
      ];
      const outs: ForwardOutput[][] = [[], []];
      for (const [k, r] of [js, nat].entries()) {
        const ids = params.map((_, i) => i);
        outs[k]?.push(
          await r.forward({
            free: [],
            add: params.map((sampling, id) => ({ id, sampling })),
            prefill: ids.map((id) => ({ id, tokens: prompts[id] as Int32Array, start: 0, sample: true })),
            decode: [],
          }),
        );
        for (let s = 0; s < 6; s++)
          outs[k]?.push(await r.forward({ free: [], add: [], prefill: [], decode: ids }));
      }
      const [a, b] = outs as [ForwardOutput[], ForwardOutput[]];
      expect(a.length).toBe(b.length);
      for (let i = 0; i < a.length; i++) {
        const x = a[i] as ForwardOutput;
        const y = b[i] as ForwardOutput;
        expect(y.tokens).toEqual(x.tokens);
        expect(y.kvUsedTokens).toBe(x.kvUsedTokens);
        for (let j = 0; j < x.ids.length; j++) {
          const lx = x.logprobs?.[j] ?? null;
          const ly = y.logprobs?.[j] ?? null;
          expect(ly === null).toBe(lx === null);
          if (lx && ly) {
            expect(ly.topIds).toEqual(lx.topIds);
            expect(Math.abs(ly.logprob - lx.logprob)).toBeLessThan(1e-4);
          }
        }
      }
    });
  });

  it('resumes a retracted request (NewRequest.promptLength) exactly where it stopped, as the JS backend does', async () => {
    await withRunners({}, async (js, nat) => {
      const sampling = {
        ...GREEDY,
        temperature: 0.9,
        topP: 0.95,
        frequencyPenalty: 0.7,
        presencePenalty: 0.3,
        seed: 1234,
      };
      const prompt = Int32Array.from([5, 17, 300, 42, 9, 77, 1000, 3]);
      const step = async (r: ModelRunner, batch: Partial<ForwardBatch>) =>
        r.forward({ free: [], add: [], prefill: [], decode: [], ...batch });
      const runOn = async (r: ModelRunner) => {
        const whole: number[] = [];
        let out = await step(r, {
          add: [{ id: 1, sampling }],
          prefill: [{ id: 1, tokens: prompt, start: 0, sample: true }],
        });
        whole.push(out.tokens[0] as number);
        for (let i = 0; i < 11; i++) whole.push((await step(r, { decode: [1] })).tokens[0] as number);
        await step(r, { free: [1] });
        const k = 6;
        const fill = Int32Array.from([...prompt, ...whole.slice(0, k)]);
        await step(r, {
          add: [{ id: 2, sampling, promptLength: prompt.length }],
          prefill: [{ id: 2, tokens: fill.subarray(0, 5), start: 0, sample: false }],
        });
        out = await step(r, { prefill: [{ id: 2, tokens: fill.subarray(5), start: 5, sample: true }] });
        const resumed = [out.tokens[0] as number];
        for (let i = k + 1; i < whole.length; i++)
          resumed.push((await step(r, { decode: [2] })).tokens[0] as number);
        await step(r, { free: [2] });
        return { whole, resumed };
      };
      const a = await runOn(js);
      const b = await runOn(nat);
      expect(b).toEqual(a);
      expect(b.resumed).toEqual(b.whole.slice(6));
      await expect(
        nat.forward({ free: [], add: [{ id: 9, sampling, promptLength: 0 }], prefill: [], decode: [] }),
      ).rejects.toMatchObject({ code: 'TSI_ERR_INVALID_BATCH' });
    });
  });

  it('fp16 (the dtype of the CUDA path): same greedy tokens and accounting as the JS backend', async () => {
    const m = await buildTiny('genai', 7, 'fp16');
    const js = await OnnxRunner.create({ ...base(), modelDir: m.dir });
    const nat = await NativeRunner.create({ ...base({ maxSlots: 8, maxSeqLen: 256 }), modelDir: m.dir });
    try {
      const prompts = makePrompts(js.info.vocabSize);
      const kvJs: number[] = [];
      const kvNat: number[] = [];
      const a = await runBatched(js, prompts, null, (o) => kvJs.push(o.kvUsedTokens));
      const b = await runBatched(nat, prompts, null, (o) => kvNat.push(o.kvUsedTokens));
      expect(b.tokens).toEqual(a.tokens);
      expect(kvNat).toEqual(kvJs);
      nat.kv.open(1);
      nat.kv.reserve(1, 4);
      nat.kv.setLength(1, 4);
      const k = [new Uint16Array(nat.spec.numKvHeads * 4 * nat.spec.headDim).fill(0xffff)];
      const v = [new Uint16Array(k[0]?.length ?? 0).fill(0xffff)];
      const ks = Array.from({ length: nat.spec.numLayers }, () => (k[0] as Uint16Array).slice());
      const vs = Array.from({ length: nat.spec.numLayers }, () => (v[0] as Uint16Array).slice());
      nat.kv.gather([1], [4], 4, ks, vs);
      // Whatever earlier requests left in row 0 is finite fp16 (exponent not all ones).
      for (const arr of [...ks, ...vs]) expect(arr.every((h) => (h & 0x7c00) !== 0x7c00)).toBe(true);
      nat.kv.free(1);
    } finally {
      await js.close();
      await nat.close();
      await m.cleanup();
    }
  }, 60_000);

  it('the cache starts zero-filled and the KvStore view (gather) holds what the JS store holds', async () => {
    await withRunners({}, async (js, nat) => {
      const H = nat.spec.numKvHeads;
      const D = nat.spec.headDim;
      // A gather over an unused row reads the zero-filled cache: zeros, never NaN.
      nat.kv.open(999);
      nat.kv.reserve(999, 512);
      nat.kv.setLength(999, 512);
      const ks = Array.from({ length: nat.spec.numLayers }, () =>
        new Float32Array(H * 512 * D).fill(Number.NaN),
      );
      const vs = Array.from({ length: nat.spec.numLayers }, () =>
        new Float32Array(H * 512 * D).fill(Number.NaN),
      );
      nat.kv.gather([999], [512], 512, ks, vs);
      for (const a of [...ks, ...vs]) expect(a.every((x) => x === 0)).toBe(true);
      nat.kv.free(999);
      expect(nat.kv.usedTokens).toBe(0);

      const prompt = makePrompts(js.info.vocabSize)[3] as Int32Array;
      const batch: ForwardBatch = {
        free: [],
        add: [{ id: 1, sampling: GREEDY }],
        prefill: [{ id: 1, tokens: prompt, start: 0, sample: true }],
        decode: [],
      };
      const o1 = await js.forward(batch);
      const o2 = await nat.forward(batch);
      expect(o2.tokens).toEqual(o1.tokens);
      await js.forward({ free: [], add: [], prefill: [], decode: [1] });
      await nat.forward({ free: [], add: [], prefill: [], decode: [1] });
      const n = prompt.length + 1;
      const L = nat.spec.numLayers;
      const mk = () => Array.from({ length: L }, () => new Float32Array(H * n * D));
      const [jk, jv, nk, nv] = [mk(), mk(), mk(), mk()];
      js.kv.gather([1], [n], n, jk, jv);
      nat.kv.gather([1], [n], n, nk, nv);
      for (let l = 0; l < L; l++) {
        expect(maxAbsDiff(nk[l] as Float32Array, jk[l] as Float32Array)).toBeLessThan(1e-5);
        expect(maxAbsDiff(nv[l] as Float32Array, jv[l] as Float32Array)).toBeLessThan(1e-5);
        expect((nk[l] as Float32Array).some((x) => x !== 0)).toBe(true);
      }
    });
  });

  it('1,000 random requests with aborts at any point: same tokens and accounting as JS, and the cache ends empty', async () => {
    await withRunners({ maxSlots: 16, maxSeqLen: 64 }, async (js, nat) => {
      const rng = createRng(2024);
      const V = js.info.vocabSize;
      type Live = { id: number; prompt: Int32Array; done: number; sampled: boolean; left: number };
      const live = new Map<number, Live>();
      let next = 0;
      let steps = 0;
      const compare = (a: ForwardOutput, b: ForwardOutput) => {
        expect(b.ids).toEqual(a.ids);
        expect(b.tokens).toEqual(a.tokens);
        expect(b.kvUsedTokens).toBe(a.kvUsedTokens);
      };
      while (next < 1000 || live.size > 0) {
        const batch = {
          free: [] as number[],
          add: [] as ForwardBatch['add'][number][],
          prefill: [] as ForwardBatch['prefill'][number][],
          decode: [] as number[],
        };
        // Aborts: any held request, whatever its state.
        for (const r of [...live.values()]) {
          if (rng.next() < 0.08 || r.left === 0) {
            batch.free.push(r.id);
            live.delete(r.id);
          }
        }
        while (next < 1000 && live.size < 16 && rng.next() < 0.7) {
          const n = 1 + Math.floor(rng.next() * 20);
          const r: Live = {
            id: next++,
            prompt: Int32Array.from({ length: n }, () => rng.int(3, V - 1)),
            done: 0,
            sampled: false,
            left: 1 + Math.floor(rng.next() * 6),
          };
          live.set(r.id, r);
          batch.add.push({ id: r.id, sampling: GREEDY });
        }
        for (const r of live.values()) {
          if (r.done < r.prompt.length) {
            const take =
              rng.next() < 0.3
                ? 1 + Math.floor(rng.next() * (r.prompt.length - r.done))
                : r.prompt.length - r.done;
            const end = r.done + take;
            batch.prefill.push({
              id: r.id,
              tokens: r.prompt.subarray(r.done, end),
              start: r.done,
              sample: end === r.prompt.length,
            });
            r.done = end;
          } else if (r.sampled && r.left > 0 && rng.next() < 0.9) {
            batch.decode.push(r.id);
          }
        }
        const a = await js.forward(batch);
        const b = await nat.forward(batch);
        compare(a, b);
        for (const id of a.ids) {
          const r = live.get(id) as Live;
          r.sampled = true;
          r.left--;
        }
        expect(nat.kv.requests).toBe(live.size);
        steps++;
      }
      const last = await nat.forward({ free: [], add: [], prefill: [], decode: [] });
      expect(last.kvUsedTokens).toBe(0);
      expect(nat.heldRequests).toBe(0);
      expect(nat.kv.stats()).toMatchObject({ usedTokens: 0, requests: 0, freeBlocks: nat.kv.maxSlots });
      expect(steps).toBeGreaterThan(100);
    });
  }, 120_000);

  it('decode spans idle rows without corrupting them, and splits at a full row', async () => {
    await withRunners({ maxSlots: 4, maxSeqLen: 16 }, async (js, nat) => {
      const V = js.info.vocabSize;
      const p = (n: number, k: number) =>
        Int32Array.from({ length: n }, (_, i) => 3 + ((i * 37 + k * 101) % (V - 3)));
      const add = (id: number) => ({ id, sampling: GREEDY });
      const both = async (b: ForwardBatch) => {
        const x = await js.forward(b);
        const y = await nat.forward(b);
        expect(y.tokens).toEqual(x.tokens);
        expect(y.kvUsedTokens).toBe(x.kvUsedTokens);
        return nat.lastStep.runs;
      };
      // Slots: 0 = request 0, 1 = request 1 (mid-prompt: 5 of 10 tokens), 2 = request 2.
      await both({
        free: [],
        add: [add(0), add(1), add(2)],
        prefill: [
          { id: 0, tokens: p(4, 0), start: 0, sample: true },
          { id: 1, tokens: p(10, 1).subarray(0, 5), start: 0, sample: false },
          { id: 2, tokens: p(6, 2), start: 0, sample: true },
        ],
        decode: [],
      });
      expect([0, 1, 2].map((id) => nat.kv.slot(id))).toEqual([0, 1, 2]);
      // One run over slots 0..2; row 1 gets a dummy token written past its 5 cached tokens.
      expect(await both({ free: [], add: [], prefill: [], decode: [0, 2] })).toBe(1);
      // Request 1's rest of the prompt lands over the dummy: its tokens still match the JS backend.
      await both({
        free: [],
        add: [],
        prefill: [{ id: 1, tokens: p(10, 1).subarray(5), start: 5, sample: true }],
        decode: [0, 2],
      });
      expect(await both({ free: [], add: [], prefill: [], decode: [0, 1, 2] })).toBe(1);
      // Fill request 1's row (16 tokens): a decode of 0 and 2 must now split around it.
      for (let i = 0; i < 4; i++) await both({ free: [], add: [], prefill: [], decode: [0, 1, 2] });
      expect(nat.kv.length(1)).toBe(15);
      await both({ free: [], add: [], prefill: [], decode: [1] });
      expect(nat.kv.length(1)).toBe(16);
      expect(await both({ free: [], add: [], prefill: [], decode: [0, 2] })).toBe(2);
      // A free row in the middle is spanned again.
      await both({ free: [1], add: [], prefill: [], decode: [0, 2] });
      expect(nat.lastStep.runs).toBe(1);
      expect(await both({ free: [0, 2], add: [], prefill: [], decode: [] })).toBe(0);
      expect(nat.kv.usedTokens).toBe(0);
    });
  });

  it('rejects a pass needing more slots than the cache has, changing nothing', async () => {
    const nat = await NativeRunner.create(base({ maxSlots: 2, maxSeqLen: 64 }));
    try {
      const add = (id: number) => ({ id, sampling: GREEDY });
      const pre = (id: number) => ({ id, tokens: Int32Array.of(5, 6), start: 0, sample: true });
      await nat.forward({ free: [], add: [add(0), add(1)], prefill: [pre(0), pre(1)], decode: [] });
      await expect(
        nat.forward({ free: [], add: [add(2)], prefill: [pre(2)], decode: [0] }),
      ).rejects.toMatchObject({
        code: 'TSI_ERR_INVALID_BATCH',
        message: expect.stringMatching(/native cache slots \(maxSlots\) is 2/),
      });
      await expect(
        nat.forward({
          free: [],
          add: [],
          prefill: [{ id: 0, tokens: new Int32Array(63), start: 2, sample: true }],
          decode: [],
        }),
      ).rejects.toMatchObject({
        code: 'TSI_ERR_INVALID_BATCH',
        message: expect.stringMatching(/context length is 64/),
      });
      expect(nat.kv.usedTokens).toBe(4);
      const o = await nat.forward({ free: [1], add: [add(2)], prefill: [pre(2)], decode: [0] });
      expect(o.kvUsedTokens).toBe(5);
      expect(nat.kv.slot(2)).toBe(1);
    } finally {
      await nat.close();
    }
  });

  it('runs the forward off the JS thread (the event loop keeps turning during a long prefill)', async () => {
    const nat = await NativeRunner.create(base({ maxSlots: 1, maxSeqLen: 2048, intraOpThreads: 1 }));
    try {
      const tokens = Int32Array.from({ length: 2000 }, (_, i) => 3 + (i % 1000));
      let ticks = 0;
      let done = false;
      const spin = () => {
        ticks++;
        if (!done) setImmediate(spin);
      };
      setImmediate(spin);
      const t0 = performance.now();
      await nat.forward({
        free: [],
        add: [{ id: 0, sampling: GREEDY }],
        prefill: [{ id: 0, tokens, start: 0, sample: true }],
        decode: [],
      });
      done = true;
      const ms = performance.now() - t0;
      // A blocking run would allow at most a couple of ticks; the native run allows many while it works.
      expect(nat.lastStep.sessionMs).toBeGreaterThan(5);
      expect(ticks).toBeGreaterThan(20);
      expect(ms).toBeGreaterThan(0);
    } finally {
      await nat.close();
    }
  });

  it('refuses optimum-layout models; auto falls back to the JS backend and says why', async () => {
    await expect(NativeRunner.create({ modelDir: optimum.dir, maxTotalTokens: 1024 })).rejects.toBeInstanceOf(
      NativeUnavailableError,
    );
    const c = await createRunner({ modelDir: optimum.dir, maxTotalTokens: 1024, backend: 'auto' });
    try {
      expect(c.backend).toBe('js');
      expect(c.reason).toMatch(/genai layout/);
    } finally {
      await c.runner.close();
    }
    const n = await createRunner({ ...base({ maxSlots: 2, maxSeqLen: 64 }), backend: 'auto' });
    try {
      expect(n.backend).toBe('native');
      expect(n.runner).toBeInstanceOf(NativeRunner);
    } finally {
      await n.runner.close();
    }
  });
});

// Keep the ModelRunner contract visible to the type checker.
const _typecheck: (r: NativeRunner) => ModelRunner = (r) => r;
void _typecheck;
