import { cp, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTiny, type TinyModel } from '../../test/fixtures/tiny-models.js';
import { makeValueInfo } from '../onnx/graph.js';
import { externalDataSessionOptions, saveModel, serializeModel } from '../onnx/model-io.js';
import { DataType } from '../onnx/proto.js';
import { AUG, augmentGraph } from './augment.js';
import { loadModelDir } from './spec.js';

let genai: TinyModel;
let optimum: TinyModel;
let scratch: string;

beforeAll(async () => {
  genai = await buildTiny('genai');
  optimum = await buildTiny('optimum');
  scratch = await mkdtemp(join(tmpdir(), 'tsinfer-spec-'));
}, 120_000);
afterAll(async () => {
  await genai.cleanup();
  await optimum.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

let n = 0;
async function copyOf(m: TinyModel): Promise<string> {
  const dir = join(scratch, `m${n++}`);
  await cp(m.dir, dir, { recursive: true });
  return dir;
}

describe('loadModelDir', () => {
  it('reads the genai layout from genai_config.json', async () => {
    const { spec } = await loadModelDir(genai.dir);
    const cfg = JSON.parse(await readFile(join(genai.dir, 'genai_config.json'), 'utf8'));
    expect(spec).toMatchObject({
      layout: 'genai',
      numLayers: 2,
      numKvHeads: 2,
      headDim: 32,
      vocabSize: genai.vocabSize,
      contextLength: 2048,
      dtype: 'fp32',
    });
    const eos = cfg.model.eos_token_id;
    expect(spec.eosTokenIds).toEqual(Array.isArray(eos) ? eos : [eos]);
    expect(spec.io.positionIds).toBeNull();
    expect(spec.io.pastKeys).toEqual(['past_key_values.0.key', 'past_key_values.1.key']);
  });

  it('reads the optimum layout from config.json, with position_ids and generation_config eos ids', async () => {
    const { spec } = await loadModelDir(optimum.dir);
    expect(spec.layout).toBe('optimum');
    expect(spec.io.positionIds).toBe('position_ids');
    const gen = JSON.parse(await readFile(join(optimum.dir, 'generation_config.json'), 'utf8'));
    const eos = Array.isArray(gen.eos_token_id) ? gen.eos_token_id : [gen.eos_token_id];
    for (const id of eos) expect(spec.eosTokenIds).toContain(id);
  });

  it('names the directory when it has no config', async () => {
    const dir = join(scratch, 'empty');
    await cp(genai.dir, dir, { recursive: true });
    await unlink(join(dir, 'genai_config.json'));
    await expect(loadModelDir(dir)).rejects.toMatchObject({
      code: 'TSI_ERR_MODEL_LOAD',
      message: expect.stringMatching(/empty: neither genai_config\.json.*nor config\.json/),
    });
    await expect(loadModelDir(join(scratch, 'does-not-exist'))).rejects.toMatchObject({
      code: 'TSI_ERR_MODEL_LOAD',
    });
  });

  it('names the file on unparsable JSON and on a missing field', async () => {
    const dir = await copyOf(genai);
    const file = join(dir, 'genai_config.json');
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.slice(0, 40));
    await expect(loadModelDir(dir)).rejects.toMatchObject({
      code: 'TSI_ERR_MODEL_LOAD',
      message: expect.stringMatching(/genai_config\.json: not valid JSON/),
    });
    const cfg = JSON.parse(text);
    delete cfg.model.decoder.num_hidden_layers;
    await writeFile(file, JSON.stringify(cfg));
    await expect(loadModelDir(dir)).rejects.toMatchObject({
      message: expect.stringMatching(/genai_config\.json: model\.decoder\.num_hidden_layers: missing/),
    });
  });

  it('names model.onnx when it is missing or not a model', async () => {
    const dir = await copyOf(optimum);
    await writeFile(join(dir, 'model.onnx'), 'not a protobuf at all \u0000\u0001');
    await expect(loadModelDir(dir)).rejects.toMatchObject({
      code: 'TSI_ERR_MODEL_LOAD',
      message: expect.stringContaining('model.onnx: cannot parse ONNX model'),
    });
    await unlink(join(dir, 'model.onnx'));
    await expect(loadModelDir(dir)).rejects.toMatchObject({
      message: expect.stringContaining('model.onnx: model file missing'),
    });
  });

  it('names a graph input the layout needs when the graph lacks it', async () => {
    const dir = await copyOf(genai);
    const { proto } = await loadModelDir(dir);
    const graph = proto.graph as NonNullable<typeof proto.graph>;
    graph.input = (graph.input ?? []).filter((v) => v.name !== 'past_key_values.1.value');
    await saveModel(proto, join(dir, 'model.onnx'));
    await expect(loadModelDir(dir)).rejects.toMatchObject({
      code: 'TSI_ERR_MODEL_LOAD',
      message: expect.stringMatching(
        /model\.onnx: graph input missing for the genai layout: past_key_values\.1\.value/,
      ),
    });
  });

  it('accepts the optional inputs of real exports and rejects ones it cannot feed', async () => {
    const dir = await copyOf(optimum);
    const { proto } = await loadModelDir(dir);
    const graph = proto.graph as NonNullable<typeof proto.graph>;
    graph.input = [
      ...(graph.input ?? []),
      makeValueInfo('use_cache_branch', DataType.BOOL, [1]),
      makeValueInfo('num_logits_to_keep', DataType.INT64, []),
    ];
    await saveModel(proto, join(dir, 'model.onnx'));
    const { spec } = await loadModelDir(dir);
    expect(spec.io.useCacheBranch).toBe('use_cache_branch');
    expect(spec.io.logitsToKeep).toBe('num_logits_to_keep');
    graph.input = [...(graph.input ?? []), makeValueInfo('pixel_values', DataType.FLOAT, null)];
    await saveModel(proto, join(dir, 'model.onnx'));
    await expect(loadModelDir(dir)).rejects.toMatchObject({
      message: expect.stringMatching(/model\.onnx: graph has inputs this runtime cannot feed: pixel_values/),
    });
  });

  it('rejects a config whose dimensions disagree with the graph', async () => {
    const dir = await copyOf(optimum);
    const file = join(dir, 'config.json');
    const cfg = JSON.parse(await readFile(file, 'utf8'));
    cfg.num_key_value_heads = 4;
    await writeFile(file, JSON.stringify(cfg));
    await expect(loadModelDir(dir)).rejects.toMatchObject({
      message: expect.stringMatching(/2 kv heads, but config\.json says 4/),
    });
  });
});

describe('augmentGraph', () => {
  it('gathers each row’s last valid position and reduces it in the graph (ArgMax, TopK), and returns only new K/V rows', async () => {
    const { spec, proto } = await loadModelDir(genai.dir);
    const { topK, lastPositionLmHead } = augmentGraph(proto, spec, { maxTopK: 8, lastPositionLmHead: false });
    expect(topK).toBe(8);
    expect(lastPositionLmHead).toBe(false);
    const session = await ort.InferenceSession.create(
      serializeModel(proto),
      externalDataSessionOptions(spec.modelPath),
    );
    try {
      const B = 2;
      const S = 5;
      const lens = [5, 3];
      const ids = BigInt64Array.from({ length: B * S }, (_, i) => BigInt(10 + i));
      const mask = BigInt64Array.from({ length: B * S }, (_, i) =>
        i % S < (lens[Math.floor(i / S)] as number) ? 1n : 0n,
      );
      const feeds: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor('int64', ids, [B, S]),
        attention_mask: new ort.Tensor('int64', mask, [B, S]),
        [AUG.logitRows]: new ort.Tensor(
          'int64',
          BigInt64Array.of(BigInt(lens[0]! - 1), BigInt(S + lens[1]! - 1)),
          [B],
        ),
        [AUG.kvIndex]: new ort.Tensor(
          'int64',
          BigInt64Array.from({ length: B * S }, (_, i) => BigInt(i % S)),
          [B, 1, S, 1],
        ),
      };
      for (let l = 0; l < spec.numLayers; l++) {
        feeds[`past_key_values.${l}.key`] = new ort.Tensor('float32', new Float32Array(0), [B, 2, 0, 32]);
        feeds[`past_key_values.${l}.value`] = new ort.Tensor('float32', new Float32Array(0), [B, 2, 0, 32]);
      }
      const res = await session.run(feeds, [
        'logits',
        'present.0.key',
        AUG.lastLogits,
        AUG.argmax,
        AUG.topkValues,
        AUG.topkIndices,
        AUG.newKey(0),
      ]);
      const V = spec.vocabSize;
      const logits = res.logits?.data as Float32Array;
      const last = res[AUG.lastLogits]?.data as Float32Array;
      const am = res[AUG.argmax]?.data as BigInt64Array;
      const tv = res[AUG.topkValues]?.data as Float32Array;
      const ti = res[AUG.topkIndices]?.data as BigInt64Array;
      for (let b = 0; b < B; b++) {
        const pos = lens[b]! - 1;
        const row = logits.subarray((b * S + pos) * V, (b * S + pos + 1) * V);
        expect(last.subarray(b * V, (b + 1) * V)).toEqual(row);
        const order = [...row.keys()].sort((x, y) => (row[y] as number) - (row[x] as number) || x - y);
        expect(Number(am[b])).toBe(order[0]);
        expect([...ti.subarray(b * 8, (b + 1) * 8)].map(Number)).toEqual(order.slice(0, 8));
        expect([...tv.subarray(b * 8, (b + 1) * 8)]).toEqual(order.slice(0, 8).map((i) => row[i]));
      }
      expect(res[AUG.newKey(0)]?.dims).toEqual([B, 2, S, 32]);
      expect(res[AUG.newKey(0)]?.data).toEqual(res['present.0.key']?.data);

      // With the LM head moved after the gather: no full logits output, same last rows.
      const again = await loadModelDir(genai.dir);
      expect(augmentGraph(again.proto, again.spec, { maxTopK: 8 }).lastPositionLmHead).toBe(true);
      const slim = await ort.InferenceSession.create(
        serializeModel(again.proto),
        externalDataSessionOptions(spec.modelPath),
      );
      try {
        expect(slim.outputNames).not.toContain('logits');
        const res2 = await slim.run(feeds, [AUG.lastLogits, AUG.argmax]);
        const last2 = res2[AUG.lastLogits]?.data as Float32Array;
        let worst = 0;
        for (let i = 0; i < last.length; i++)
          worst = Math.max(worst, Math.abs((last2[i] as number) - (last[i] as number)));
        expect(worst).toBeLessThan(1e-5);
        expect(res2[AUG.argmax]?.data).toEqual(am);
      } finally {
        await slim.release();
      }
    } finally {
      await session.release();
    }
  });
});
