import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRng, InvalidConfigError } from '@tsinfer/core';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataType, loadModel } from '../onnx/index.js';
import {
  type BuiltModel,
  buildModel,
  type Layout,
  PRESETS,
  parameterCount,
  type WeightDtype,
} from './index.js';
import { loadReferenceModel, type ReferenceModel } from './reference-forward.js';
import { argmax, emptyPast, type KvState, logitsRow, runStep, type StepResult } from './run-session.js';

let root: string;
const SEED = 7;
const built = new Map<string, BuiltModel>();
const sessions = new Map<string, ort.InferenceSession>();
const key = (layout: Layout, dtype: WeightDtype): string => `${layout}-${dtype}`;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tsinfer-mb-'));
  for (const layout of ['genai', 'optimum'] as const) {
    for (const dtype of ['fp32', 'fp16'] as const) {
      const b = await buildModel({
        preset: 'tiny',
        outDir: join(root, key(layout, dtype)),
        seed: SEED,
        layout,
        dtype,
      });
      built.set(key(layout, dtype), b);
      sessions.set(key(layout, dtype), await ort.InferenceSession.create(join(b.dir, 'model.onnx')));
    }
  }
});

afterAll(async () => {
  for (const s of sessions.values()) await s.release();
  if (root) await rm(root, { recursive: true, force: true });
});

function model(layout: Layout, dtype: WeightDtype): { b: BuiltModel; s: ort.InferenceSession } {
  const b = built.get(key(layout, dtype));
  const s = sessions.get(key(layout, dtype));
  if (!b || !s) throw new Error('not built');
  return { b, s };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

function randomPrompt(seed: number, len: number, vocab: number): number[] {
  const rng = createRng(seed);
  return Array.from({ length: len }, () => rng.int(0, vocab - 1));
}

/** Single-sequence greedy run: prefill then `steps` decode steps, past fed back. Returns each step's result and the tokens. */
async function greedy(
  layout: Layout,
  dtype: WeightDtype,
  prompt: number[],
  steps: number,
): Promise<{ results: StepResult[]; tokens: number[] }> {
  const { b, s } = model(layout, dtype);
  const sh = b.shape;
  let kv: KvState = emptyPast(sh.numLayers, 1, sh.numKvHeads, sh.headDim, dtype);
  const tokens = [...prompt];
  const results: StepResult[] = [];
  let ids = prompt;
  for (let step = 0; step <= steps; step++) {
    const P = kv.length;
    const S = ids.length;
    const positions = Array.from({ length: S }, (_, i) => P + i);
    const r = await runStep(s, layout, 1, ids, new Array(P + S).fill(1), positions, kv);
    results.push(r);
    for (const t of r.present) expect(t.dims[2]).toBe(P + S);
    kv = { past: r.present, length: P + S };
    const next = argmax(logitsRow(r, 0, S - 1));
    tokens.push(next);
    ids = [next];
  }
  return { results, tokens };
}

describe('buildModel tiny', () => {
  it('writes the files of each layout with configs that match the model', async () => {
    const g = model('genai', 'fp32').b;
    expect(g.files).toEqual([
      'genai_config.json',
      'model.onnx',
      'model.onnx.data',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    expect((await readdir(g.dir)).sort()).toEqual(g.files);
    const tok = JSON.parse(await readFile(join(g.dir, 'tokenizer.json'), 'utf8')) as {
      model: { vocab: Record<string, number> };
      added_tokens: { id: number }[];
    };
    const maxId = Math.max(...Object.values(tok.model.vocab), ...tok.added_tokens.map((t) => t.id));
    expect(g.vocabSize).toBeGreaterThan(maxId);
    expect(g.vocabSize).toBe(2048);
    expect(g.parameters).toBe(parameterCount(PRESETS.tiny, 2048));
    const gc = JSON.parse(await readFile(join(g.dir, 'genai_config.json'), 'utf8'));
    expect(gc.model.type).toBe('llama');
    expect(gc.model.vocab_size).toBe(2048);
    expect(gc.model.context_length).toBe(2048);
    expect(gc.model.decoder).toMatchObject({
      filename: 'model.onnx',
      head_size: 32,
      hidden_size: 128,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_hidden_layers: 2,
      inputs: {
        input_ids: 'input_ids',
        attention_mask: 'attention_mask',
        past_key_names: 'past_key_values.%d.key',
        past_value_names: 'past_key_values.%d.value',
      },
      outputs: {
        logits: 'logits',
        present_key_names: 'present.%d.key',
        present_value_names: 'present.%d.value',
      },
    });
    expect(gc.model.bos_token_id).toBe(g.tokens.bosTokenId);
    expect(gc.model.eos_token_id).toEqual(g.tokens.eosTokenIds);
    expect(gc.model.pad_token_id).toBe(g.tokens.padTokenId);

    const o = model('optimum', 'fp32').b;
    expect(o.files).toEqual([
      'config.json',
      'generation_config.json',
      'model.onnx',
      'model.onnx.data',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const hf = JSON.parse(await readFile(join(o.dir, 'config.json'), 'utf8'));
    expect(hf).toMatchObject({
      model_type: 'llama',
      architectures: ['LlamaForCausalLM'],
      hidden_size: 128,
      intermediate_size: 384,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      max_position_embeddings: 2048,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      vocab_size: 2048,
      torch_dtype: 'float32',
      bos_token_id: o.tokens.bosTokenId,
      eos_token_id: o.tokens.eosTokenIds,
    });
    const gen = JSON.parse(await readFile(join(o.dir, 'generation_config.json'), 'utf8'));
    expect(gen.eos_token_id).toEqual(o.tokens.eosTokenIds);
    expect(
      JSON.parse(await readFile(join(model('optimum', 'fp16').b.dir, 'config.json'), 'utf8')).torch_dtype,
    ).toBe('float16');
  });

  it('declares the I/O contract of each layout', () => {
    const names = (io: readonly { name: string }[] | readonly string[]): string[] =>
      io.map((x) => (typeof x === 'string' ? x : x.name));
    const kvIn = [0, 1].flatMap((l) => [`past_key_values.${l}.key`, `past_key_values.${l}.value`]);
    const kvOut = [0, 1].flatMap((l) => [`present.${l}.key`, `present.${l}.value`]);
    expect(names(model('genai', 'fp32').s.inputNames)).toEqual(['input_ids', 'attention_mask', ...kvIn]);
    expect(names(model('optimum', 'fp32').s.inputNames)).toEqual([
      'input_ids',
      'attention_mask',
      'position_ids',
      ...kvIn,
    ]);
    for (const layout of ['genai', 'optimum'] as const)
      expect(names(model(layout, 'fp32').s.outputNames)).toEqual(['logits', ...kvOut]);
  });

  describe('matches a float64 reference forward (fp32, prefill + decode with past)', () => {
    let ref: ReferenceModel;
    beforeAll(async () => {
      const b = model('genai', 'fp32').b;
      ref = await loadReferenceModel(join(b.dir, 'model.onnx'), b.shape, b.vocabSize);
    });
    for (const layout of ['genai', 'optimum'] as const) {
      for (const len of [1, 6, 19]) {
        it(`${layout}, prompt of ${len}`, async () => {
          const prompt = randomPrompt(100 + len, len, 2048);
          const { results, tokens } = await greedy(layout, 'fp32', prompt, 3);
          const full = ref.forward(tokens.slice(0, -1));
          const V = 2048;
          // Prefill: every position.
          expect(maxAbsDiff(results[0]?.logits as Float32Array, full.subarray(0, len * V))).toBeLessThan(
            1e-4,
          );
          // Decode steps: the new position.
          for (let step = 1; step < results.length; step++) {
            const pos = len + step - 1;
            expect(
              maxAbsDiff(logitsRow(results[step] as StepResult, 0, 0), full.subarray(pos * V, (pos + 1) * V)),
            ).toBeLessThan(1e-4);
          }
        });
      }
    }
  });

  it('computes the same function in both layouts (fp32 and fp16)', async () => {
    for (const dtype of ['fp32', 'fp16'] as const) {
      for (const len of [3, 11]) {
        const prompt = randomPrompt(200 + len, len, 2048);
        const g = await greedy('genai', dtype, prompt, 4);
        const o = await greedy('optimum', dtype, prompt, 4);
        for (let i = 0; i < g.results.length; i++) {
          const d = maxAbsDiff((g.results[i] as StepResult).logits, (o.results[i] as StepResult).logits);
          expect(d).toBeLessThan(dtype === 'fp32' ? 1e-4 : 0.1);
        }
        if (dtype === 'fp32') expect(o.tokens).toEqual(g.tokens);
      }
    }
  });

  it('spreads the logits of a random model (no near-ties at the top)', async () => {
    const { results } = await greedy('genai', 'fp32', randomPrompt(5, 32, 2048), 0);
    const r = results[0] as StepResult;
    let small = 0;
    for (let pos = 0; pos < 32; pos++) {
      const row = Array.from(logitsRow(r, 0, pos)).sort((a, b) => b - a);
      const mean = row.reduce((a, b) => a + b, 0) / row.length;
      const std = Math.sqrt(row.reduce((a, b) => a + (b - mean) ** 2, 0) / row.length);
      expect(std).toBeGreaterThan(2);
      expect(std).toBeLessThan(8);
      if ((row[0] as number) - (row[1] as number) < 0.05) small++;
    }
    expect(small).toBeLessThanOrEqual(2);
  });

  it('genai: a right-padded ragged batch gives each row its single-sequence logits', async () => {
    const { b, s } = model('genai', 'fp32');
    const sh = b.shape;
    const a = randomPrompt(31, 7, 2048);
    const c = randomPrompt(32, 3, 2048);
    const singleA = await greedy('genai', 'fp32', a, 2);
    const singleC = await greedy('genai', 'fp32', c, 2);
    // Prefill: [a; c padded right with pad id], mask marks valid tokens.
    const pad = b.tokens.padTokenId;
    let kv = emptyPast(sh.numLayers, 2, sh.numKvHeads, sh.headDim, 'fp32');
    let r = await runStep(
      s,
      'genai',
      2,
      [...a, ...c, pad, pad, pad, pad],
      [...new Array(7).fill(1), 1, 1, 1, 0, 0, 0, 0],
      null,
      kv,
    );
    expect(maxAbsDiff(logitsRow(r, 0, 6), logitsRow(singleA.results[0] as StepResult, 0, 6))).toBeLessThan(
      1e-5,
    );
    expect(maxAbsDiff(logitsRow(r, 1, 2), logitsRow(singleC.results[0] as StepResult, 0, 2))).toBeLessThan(
      1e-5,
    );
    // Decode: row lengths 7+k and 3+k inside a buffer as wide as the longest row.
    let lens = [7, 3];
    for (let step = 1; step <= 2; step++) {
      kv = { past: r.present, length: r.present[0]?.dims[2] as number };
      const ids = [singleA.tokens[7 + step - 1] as number, singleC.tokens[3 + step - 1] as number];
      const width = kv.length + 1;
      const mask = lens.flatMap((n) => [...new Array(n + 1).fill(1), ...new Array(width - n - 1).fill(0)]);
      r = await runStep(s, 'genai', 2, ids, mask, null, kv);
      expect(
        maxAbsDiff(logitsRow(r, 0, 0), logitsRow(singleA.results[step] as StepResult, 0, 0)),
      ).toBeLessThan(1e-5);
      expect(
        maxAbsDiff(logitsRow(r, 1, 0), logitsRow(singleC.results[step] as StepResult, 0, 0)),
      ).toBeLessThan(1e-5);
      lens = lens.map((n) => n + 1);
    }
  });

  it('optimum: a left-padded ragged batch gives each row its single-sequence logits', async () => {
    const { b, s } = model('optimum', 'fp32');
    const sh = b.shape;
    const a = randomPrompt(41, 6, 2048);
    const c = randomPrompt(42, 2, 2048);
    const singleA = await greedy('optimum', 'fp32', a, 2);
    const singleC = await greedy('optimum', 'fp32', c, 2);
    const pad = b.tokens.padTokenId;
    const kv = emptyPast(sh.numLayers, 2, sh.numKvHeads, sh.headDim, 'fp32');
    // transformers.js style: left padding, position_ids = cumsum(mask) - 1 (1 where masked).
    const mask = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1];
    let r = await runStep(
      s,
      'optimum',
      2,
      [...a, pad, pad, pad, pad, ...c],
      mask,
      [0, 1, 2, 3, 4, 5, 1, 1, 1, 1, 0, 1],
      kv,
    );
    expect(maxAbsDiff(logitsRow(r, 0, 5), logitsRow(singleA.results[0] as StepResult, 0, 5))).toBeLessThan(
      1e-5,
    );
    expect(maxAbsDiff(logitsRow(r, 1, 5), logitsRow(singleC.results[0] as StepResult, 0, 1))).toBeLessThan(
      1e-5,
    );
    let fullMask = mask;
    for (let step = 1; step <= 2; step++) {
      const past = { past: r.present, length: r.present[0]?.dims[2] as number };
      const ids = [singleA.tokens[6 + step - 1] as number, singleC.tokens[2 + step - 1] as number];
      fullMask = [...fullMask.slice(0, past.length), 1, ...fullMask.slice(past.length), 1];
      r = await runStep(s, 'optimum', 2, ids, fullMask, [6 + step - 1, 2 + step - 1], past);
      expect(
        maxAbsDiff(logitsRow(r, 0, 0), logitsRow(singleA.results[step] as StepResult, 0, 0)),
      ).toBeLessThan(1e-5);
      expect(
        maxAbsDiff(logitsRow(r, 1, 0), logitsRow(singleC.results[step] as StepResult, 0, 0)),
      ).toBeLessThan(1e-5);
    }
  });

  it('fp16: every float initializer, past/present and logits are float16, inputs int64, and it runs on CPU close to fp32', async () => {
    for (const layout of ['genai', 'optimum'] as const) {
      const { b } = model(layout, 'fp16');
      const m = await loadModel(join(b.dir, 'model.onnx'));
      const inits = m.graph?.initializer ?? [];
      expect(inits.length).toBeGreaterThan(10);
      for (const t of inits) expect([DataType.FLOAT16, DataType.INT64]).toContain(t.dataType);
      expect(inits.filter((t) => t.dataType === DataType.FLOAT).length).toBe(0);
      for (const io of [...(m.graph?.input ?? []), ...(m.graph?.output ?? [])]) {
        const expected =
          io.name === 'input_ids' || io.name === 'attention_mask' || io.name === 'position_ids'
            ? DataType.INT64
            : DataType.FLOAT16;
        expect(io.type?.tensorType?.elemType, io.name ?? '').toBe(expected);
      }
      expect(b.weightBytes).toBe(model(layout, 'fp32').b.weightBytes / 2);
      const prompt = randomPrompt(77, 9, 2048);
      const h = await greedy(layout, 'fp16', prompt, 3);
      const f = await greedy(layout, 'fp32', prompt, 3);
      for (let i = 0; i < h.results.length; i++) {
        expect(
          maxAbsDiff((h.results[i] as StepResult).logits, (f.results[i] as StepResult).logits),
        ).toBeLessThan(0.15);
      }
      expect(h.tokens).toEqual(f.tokens);
    }
  });
});

describe('buildModel options', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsinfer-mb-opt-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is deterministic: same seed, byte-identical files; another seed, other weights', async () => {
    const files = [
      'model.onnx',
      'model.onnx.data',
      'genai_config.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ];
    const a = await buildModel({ preset: 'tiny', outDir: join(dir, 'a'), seed: 3 });
    const b = await buildModel({ preset: 'tiny', outDir: join(dir, 'b'), seed: 3 });
    const c = await buildModel({ preset: 'tiny', outDir: join(dir, 'c'), seed: 4 });
    for (const f of files) {
      const fa = await readFile(join(a.dir, f));
      expect(fa.equals(await readFile(join(b.dir, f))), f).toBe(true);
    }
    const da = await readFile(join(a.dir, 'model.onnx.data'));
    const dc = await readFile(join(c.dir, 'model.onnx.data'));
    expect(dc.length).toBe(da.length);
    expect(dc.equals(da)).toBe(false);
    expect(
      (await readFile(join(c.dir, 'model.onnx'))).equals(await readFile(join(a.dir, 'model.onnx'))),
    ).toBe(true);
  });

  it('generates the same bytes on worker threads as in-thread (multi-chunk tensors, fp32 and fp16)', async () => {
    const shape = { ...PRESETS.tiny, hiddenSize: 256, vocabSize: 5000, numLayers: 1, contextLength: 128 };
    for (const dtype of ['fp32', 'fp16'] as const) {
      const a = await buildModel({
        preset: shape,
        outDir: join(dir, `t0-${dtype}`),
        seed: 2,
        dtype,
        tokenizer: false,
        threads: 0,
      });
      const b = await buildModel({
        preset: shape,
        outDir: join(dir, `t2-${dtype}`),
        seed: 2,
        dtype,
        tokenizer: false,
        threads: 2,
      });
      expect(a.weightBytes).toBeGreaterThan(2 * (1 << 20) * (dtype === 'fp32' ? 4 : 2)); // embedding and LM head span 2 chunks each
      for (const f of ['model.onnx', 'model.onnx.data']) {
        expect((await readFile(join(a.dir, f))).equals(await readFile(join(b.dir, f))), `${dtype} ${f}`).toBe(
          true,
        );
      }
    }
    await expect(buildModel({ preset: 'tiny', outDir: join(dir, 'x'), threads: -1 })).rejects.toThrow(
      /threads/,
    );
  });

  it('builds tiny in well under 5 s and reports monotone progress up to the weight bytes', async () => {
    const calls: [number, number][] = [];
    const t0 = performance.now();
    const r = await buildModel({
      preset: 'tiny',
      outDir: join(dir, 'p'),
      seed: 1,
      onProgress: (d, t) => calls.push([d, t]),
    });
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(calls.length).toBeGreaterThan(5);
    expect(calls[0]).toEqual([0, r.weightBytes]);
    expect(calls[calls.length - 1]).toEqual([r.weightBytes, r.weightBytes]);
    for (let i = 1; i < calls.length; i++)
      expect((calls[i] as [number, number])[0]).toBeGreaterThanOrEqual((calls[i - 1] as [number, number])[0]);
  });

  it('writes the same model inline (externalData: false) as with external data', async () => {
    const ext = await buildModel({ preset: 'tiny', outDir: join(dir, 'ext'), seed: 9, tokenizer: false });
    const inl = await buildModel({
      preset: 'tiny',
      outDir: join(dir, 'inl'),
      seed: 9,
      tokenizer: false,
      externalData: false,
    });
    expect(inl.files).toEqual(['genai_config.json', 'model.onnx']);
    expect(ext.vocabSize).toBe(2048);
    const s1 = await ort.InferenceSession.create(join(ext.dir, 'model.onnx'));
    const s2 = await ort.InferenceSession.create(await readFile(join(inl.dir, 'model.onnx')));
    const kv = emptyPast(2, 1, 2, 32, 'fp32');
    const ids = [5, 6, 7, 8];
    const r1 = await runStep(s1, 'genai', 1, ids, [1, 1, 1, 1], null, kv);
    const r2 = await runStep(s2, 'genai', 1, ids, [1, 1, 1, 1], null, kv);
    expect(maxAbsDiff(r1.logits, r2.logits)).toBe(0);
    await s1.release();
    await s2.release();
  });

  it('rmsNorm "plain" (opset-17 ops) computes the same function as the fused default', async () => {
    for (const [layout, dtype] of [
      ['genai', 'fp32'],
      ['optimum', 'fp16'],
    ] as const) {
      const fused = await buildModel({
        preset: 'tiny',
        outDir: join(dir, `fused-${layout}`),
        seed: 5,
        layout,
        dtype,
        tokenizer: false,
      });
      const plain = await buildModel({
        preset: 'tiny',
        outDir: join(dir, `plain-${layout}`),
        seed: 5,
        layout,
        dtype,
        tokenizer: false,
        rmsNorm: 'plain',
      });
      const m = await loadModel(join(plain.dir, 'model.onnx'));
      expect(m.graph?.node?.some((n) => n.opType === 'SimplifiedLayerNormalization')).toBe(false);
      expect(m.graph?.node?.filter((n) => n.opType === 'ReduceMean').length).toBe(5);
      const ids = [9, 8, 7, 6, 5, 4];
      const run = async (b: BuiltModel): Promise<Float32Array> => {
        const s = await ort.InferenceSession.create(join(b.dir, 'model.onnx'));
        const r = await runStep(
          s,
          layout,
          1,
          ids,
          [1, 1, 1, 1, 1, 1],
          [0, 1, 2, 3, 4, 5],
          emptyPast(2, 1, 2, 32, dtype),
        );
        await s.release();
        return r.logits;
      };
      expect(maxAbsDiff(await run(fused), await run(plain))).toBeLessThan(dtype === 'fp32' ? 1e-4 : 0.05);
    }
    await expect(
      buildModel({ preset: 'tiny', outDir: join(dir, 'x'), rmsNorm: 'layer' as 'plain' }),
    ).rejects.toThrow(/rmsNorm/);
  });

  it('builds a custom shape and rejects invalid options', async () => {
    const shape = {
      ...PRESETS.tiny,
      hiddenSize: 64,
      numHeads: 2,
      numKvHeads: 1,
      headDim: 16,
      intermediateSize: 96,
      numLayers: 1,
      vocabSize: 300,
      contextLength: 64,
    };
    const r = await buildModel({
      preset: shape,
      outDir: join(dir, 'custom'),
      layout: 'optimum',
      tokenizer: false,
    });
    expect(r.vocabSize).toBe(300);
    const s = await ort.InferenceSession.create(join(r.dir, 'model.onnx'));
    const out = await runStep(s, 'optimum', 1, [1, 2], [1, 1], [0, 1], emptyPast(1, 1, 1, 16, 'fp32'));
    expect(out.dims).toEqual([1, 2, 300]);
    await s.release();
    await expect(buildModel({ preset: 'huge' as 'tiny', outDir: join(dir, 'x') })).rejects.toBeInstanceOf(
      InvalidConfigError,
    );
    await expect(buildModel({ preset: { ...shape, numKvHeads: 3 }, outDir: join(dir, 'x') })).rejects.toThrow(
      /numKvHeads/,
    );
    await expect(
      buildModel({ preset: 'tiny', outDir: join(dir, 'x'), dtype: 'bf16' as 'fp16' }),
    ).rejects.toThrow(/--dtype/);
    await expect(
      buildModel({ preset: 'tiny', outDir: join(dir, 'x'), layout: 'gguf' as 'genai' }),
    ).rejects.toThrow(/--layout/);
    await expect(buildModel({ preset: 'tiny', outDir: join(dir, 'x'), seed: 1.5 })).rejects.toThrow(/--seed/);
    // Options are checked before anything is written.
    await expect(readdir(join(dir, 'x'))).rejects.toThrow(/ENOENT/);
  });

  it('presets have the documented sizes', () => {
    expect(parameterCount(PRESETS.tiny, 2048)).toBeLessThan(2e6);
    expect(parameterCount(PRESETS.small, 32000)).toBeGreaterThan(90e6);
    expect(parameterCount(PRESETS.small, 32000)).toBeLessThan(130e6);
    // The 852M-parameter model of specs/gpu-measurements.md.
    expect(parameterCount(PRESETS.medium, 32000)).toBeGreaterThan(850e6);
    expect(parameterCount(PRESETS.medium, 32000)).toBeLessThan(855e6);
  });
});
