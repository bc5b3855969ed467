import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TsinferError } from '@tsinfer/core';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addInitializers,
  addNodes,
  addOutputs,
  DataType,
  externalDataSessionOptions,
  findInitializer,
  findNode,
  findValueInfo,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  InvalidModelError,
  insertNodesBefore,
  isExternal,
  loadModel,
  makeInt64Tensor,
  makeNode,
  makeValueInfo,
  parseModel,
  readFloatTensor,
  removeOutputs,
  serializeModel,
  valueInfoType,
} from '../onnx/index.js';
import { type BuiltModel, buildModel } from './index.js';
import { argmax, emptyPast, logitsRow, runStep } from './run-session.js';

describe('float16 conversion', () => {
  it('rounds to nearest even and handles the edges', () => {
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(-2)).toBe(0xc000);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65519)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // halfway to 65536 rounds to even: overflow
    expect(float32ToFloat16Bits(Number.POSITIVE_INFINITY)).toBe(0x7c00);
    expect(float32ToFloat16Bits(Number.NaN) & 0x7c00).toBe(0x7c00);
    expect(float32ToFloat16Bits(Number.NaN) & 0x3ff).not.toBe(0);
    expect(float32ToFloat16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000); // halfway to 0: even
    expect(float32ToFloat16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(float32ToFloat16Bits(-0)).toBe(0x8000);
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie, even mantissa stays
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, odd mantissa rounds up
    expect(float32ToFloat16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up into the normals
  });

  it('round-trips every finite half exactly', () => {
    for (let h = 0; h < 0x10000; h++) {
      const e = (h >>> 10) & 0x1f;
      if (e === 0x1f) continue;
      expect(float32ToFloat16Bits(float16BitsToFloat32(h))).toBe(h);
    }
  });
});

describe('loading, editing and serialising a built model', () => {
  let dir: string;
  let b: BuiltModel;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsinfer-onnx-'));
    b = await buildModel({ preset: 'tiny', outDir: join(dir, 'm'), seed: 11 });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Adds `next_token` = ArgMax over the last position's logits, [B, 1]. */
  function appendArgmax(model: Awaited<ReturnType<typeof loadModel>>): void {
    addInitializers(model, [makeInt64Tensor('last_index', [1], [-1])]);
    addNodes(model, [
      makeNode('Gather', ['logits', 'last_index'], ['last_logits'], { axis: 1 }),
      makeNode('ArgMax', ['last_logits'], ['next_token'], { axis: -1, keepdims: 0 }),
    ]);
    addOutputs(model, [makeValueInfo('next_token', DataType.INT64, ['batch_size', 1])]);
  }

  async function check(session: ort.InferenceSession, withLogits: boolean): Promise<void> {
    const reference = await ort.InferenceSession.create(join(b.dir, 'model.onnx'));
    const ids = [3, 1, 4, 1, 5, 9, 2, 6];
    const mask = new Array(ids.length).fill(1);
    const r = await runStep(reference, 'genai', 1, ids, mask, null, emptyPast(2, 1, 2, 32, 'fp32'));
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(mask, BigInt), [1, ids.length]),
    };
    for (const [k, t] of Object.entries(emptyPast(2, 1, 2, 32, 'fp32').past)) {
      const l = Math.floor(Number(k) / 2);
      feeds[`past_key_values.${l}.${Number(k) % 2 === 0 ? 'key' : 'value'}`] = t;
    }
    const out = await session.run(feeds);
    expect(out.logits !== undefined).toBe(withLogits);
    const next = out.next_token as ort.Tensor;
    expect(next.dims).toEqual([1, 1]);
    expect(Number((next.data as BigInt64Array)[0])).toBe(argmax(logitsRow(r, 0, ids.length - 1)));
    await reference.release();
  }

  it('keeps external data on disk, and a session from the edited bytes resolves it', async () => {
    const path = join(b.dir, 'model.onnx');
    const model = await loadModel(path);
    const embed = findInitializer(model, 'model.embed_tokens.weight');
    expect(embed && isExternal(embed)).toBe(true);
    appendArgmax(model);
    removeOutputs(model, ['logits']);
    expect(() => removeOutputs(model, ['logits'])).toThrow(InvalidModelError);
    const bytes = serializeModel(model);
    expect(bytes.length).toBeLessThan(200_000);
    const session = await ort.InferenceSession.create(bytes, externalDataSessionOptions(path));
    await check(session, false);
    await session.release();
  });

  it('inlines external data so the bytes stand alone', async () => {
    const model = await loadModel(join(b.dir, 'model.onnx'), { externalData: 'inline' });
    for (const t of model.graph?.initializer ?? []) expect(isExternal(t)).toBe(false);
    appendArgmax(model);
    const bytes = serializeModel(model);
    const copy = join(dir, 'standalone.onnx');
    await writeFile(copy, bytes);
    const session = await ort.InferenceSession.create(await readFile(copy));
    await check(session, true);
    await session.release();
    // Same tensor values as the external copy.
    const ext = await loadModel(join(b.dir, 'model.onnx'));
    const name = 'model.layers.1.mlp.down_proj.weight';
    const a = await readFloatTensor(findInitializer(model, name) as never, dir);
    const c = await readFloatTensor(findInitializer(ext, name) as never, b.dir);
    expect(a.length).toBe(128 * 384);
    expect(Buffer.from(a.buffer).equals(Buffer.from(c.buffer))).toBe(true);
  });

  it('rewires the LM head to the last position only (logits [B, 1, V])', async () => {
    const path = join(b.dir, 'model.onnx');
    const model = await loadModel(path);
    const head = findNode(model, '/lm_head/MatMul');
    expect(head?.input).toEqual(['/model/norm/LayerNorm/output_0', 'lm_head.weight']);
    addInitializers(model, [makeInt64Tensor('last_index', [1], [-1])]);
    insertNodesBefore(model, '/lm_head/MatMul', [
      makeNode('Gather', ['/model/norm/LayerNorm/output_0', 'last_index'], ['last_hidden'], { axis: 1 }),
    ]);
    if (!head?.input) throw new Error('no head');
    head.input[0] = 'last_hidden';
    expect(() => insertNodesBefore(model, '/nope', [])).toThrow(InvalidModelError);
    const session = await ort.InferenceSession.create(
      serializeModel(model),
      externalDataSessionOptions(path),
    );
    const reference = await ort.InferenceSession.create(path);
    const ids = [7, 7, 3, 200, 1999];
    const kv = emptyPast(2, 1, 2, 32, 'fp32');
    const last = await runStep(session, 'genai', 1, ids, [1, 1, 1, 1, 1], null, kv);
    const full = await runStep(reference, 'genai', 1, ids, [1, 1, 1, 1, 1], null, kv);
    expect(last.dims).toEqual([1, 1, 2048]);
    const a = logitsRow(last, 0, 0);
    const f = logitsRow(full, 0, 4);
    for (let i = 0; i < a.length; i++)
      expect(Math.abs((a[i] as number) - (f[i] as number))).toBeLessThan(1e-5);
    await session.release();
    await reference.release();
  });

  it('reads value infos and reports malformed models with TSI_ERR_MODEL_LOAD', async () => {
    const model = await loadModel(join(b.dir, 'model.onnx'));
    const past = findValueInfo(model, 'past_key_values.0.key');
    expect(past && valueInfoType(past)).toEqual({
      elemType: DataType.FLOAT,
      shape: ['batch_size', 2, 'past_sequence_length', 32],
    });
    const err = (() => {
      try {
        parseModel(new Uint8Array([0xff, 0xff, 0xff]));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(TsinferError);
    expect((err as TsinferError).code).toBe('TSI_ERR_MODEL_LOAD');
    // External data that escapes the model directory, or is truncated.
    const t = findInitializer(model, 'lm_head.weight');
    if (!t?.externalData) throw new Error('expected external');
    const loc = t.externalData.find((e) => e.key === 'location');
    if (!loc) throw new Error('no location');
    loc.value = '../elsewhere.data';
    await expect(readFloatTensor(t, b.dir)).rejects.toThrow(/escapes/);
    loc.value = 'model.onnx.data';
    const off = t.externalData.find((e) => e.key === 'offset');
    if (!off) throw new Error('no offset');
    off.value = String(10 ** 9);
    await expect(readFloatTensor(t, b.dir)).rejects.toBeInstanceOf(InvalidModelError);
  });
});
