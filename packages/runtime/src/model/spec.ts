/**
 * Model directory loading: detects the layout (onnxruntime-genai's
 * `genai_config.json` or Optimum/transformers' `config.json`), reads the
 * dimensions the runtime needs, parses `model.onnx` and checks that its
 * graph inputs/outputs match the layout. Every failure is a ModelLoadError
 * naming the file and what is wrong.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { findValueInfo, loadModel as loadOnnx, valueInfoType } from '../onnx/model-io.js';
import { DataType, type ModelProto } from '../onnx/proto.js';
import { ModelLoadError } from './errors.js';

export type ModelLayout = 'genai' | 'optimum';
export type ModelDtype = 'fp32' | 'fp16';

/** Graph input/output names of the decoder. */
export interface DecoderIo {
  readonly inputIds: string;
  readonly attentionMask: string;
  /** null when the graph takes no position ids (genai models with rotary inside GroupQueryAttention). */
  readonly positionIds: string | null;
  readonly pastKeys: readonly string[];
  readonly pastValues: readonly string[];
  readonly logits: string;
  readonly presentKeys: readonly string[];
  readonly presentValues: readonly string[];
  /** Element type of input_ids / attention_mask / position_ids: 'int64' (usual) or 'int32'. */
  readonly inputIdsType: 'int64' | 'int32';
  readonly attentionMaskType: 'int64' | 'int32';
  readonly positionIdsType: 'int64' | 'int32';
  /** Optimum merged-decoder switch, fed `true` (null when absent). */
  readonly useCacheBranch: string | null;
  /** `num_logits_to_keep` / `logits_to_keep` scalar, fed 0 = all (null when absent). */
  readonly logitsToKeep: string | null;
}

/** What the runtime knows about a loaded model directory. */
export interface ModelSpec {
  readonly dir: string;
  readonly name: string;
  readonly layout: ModelLayout;
  readonly modelPath: string;
  readonly configPath: string;
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly eosTokenIds: readonly number[];
  /** Element type of the KV cache (and of the logits). */
  readonly dtype: ModelDtype;
  readonly io: DecoderIo;
}

type Json = Record<string, unknown>;

async function readJson(path: string): Promise<Json> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ModelLoadError(path, `cannot read: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ModelLoadError(path, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ModelLoadError(path, 'expected a JSON object at the top level');
  }
  return value as Json;
}

function obj(file: string, v: unknown, field: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ModelLoadError(file, `${field}: missing or not an object`);
  return v as Json;
}

function int(file: string, v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new ModelLoadError(file, `${field}: missing or not a positive integer (got ${JSON.stringify(v)})`);
  }
  return v;
}

function optInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
}

function eosIds(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return [v];
  if (Array.isArray(v))
    return v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0);
  return [];
}

function nameList(pattern: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => pattern.replace('%d', String(i)));
}

interface ConfigFacts {
  layout: ModelLayout;
  configPath: string;
  modelFile: string;
  name: string;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  contextLength: number;
  eosTokenIds: number[];
  names: {
    inputIds: string;
    attentionMask: string;
    positionIds: string;
    pastKey: string;
    pastValue: string;
    logits: string;
    presentKey: string;
    presentValue: string;
  };
}

async function readGenaiConfig(dir: string): Promise<ConfigFacts> {
  const file = join(dir, 'genai_config.json');
  const cfg = await readJson(file);
  const model = obj(file, cfg.model, 'model');
  const dec = obj(file, model.decoder, 'model.decoder');
  const numHeads = optInt(dec.num_attention_heads);
  const hidden = optInt(dec.hidden_size);
  const headDim = optInt(dec.head_size) ?? (numHeads && hidden ? hidden / numHeads : undefined);
  const inputs = (typeof dec.inputs === 'object' && dec.inputs !== null ? dec.inputs : {}) as Record<
    string,
    unknown
  >;
  const outputs = (typeof dec.outputs === 'object' && dec.outputs !== null ? dec.outputs : {}) as Record<
    string,
    unknown
  >;
  const s = (v: unknown, d: string) => (typeof v === 'string' && v !== '' ? v : d);
  const search = (typeof cfg.search === 'object' && cfg.search !== null ? cfg.search : {}) as Json;
  const contextLength = optInt(model.context_length) ?? optInt(search.max_length);
  if (contextLength === undefined)
    throw new ModelLoadError(file, 'model.context_length: missing or not a positive integer');
  return {
    layout: 'genai',
    configPath: file,
    modelFile: s(dec.filename, 'model.onnx'),
    name: typeof model.type === 'string' ? model.type : basename(dir),
    numLayers: int(file, dec.num_hidden_layers, 'model.decoder.num_hidden_layers'),
    numKvHeads: int(file, dec.num_key_value_heads ?? numHeads, 'model.decoder.num_key_value_heads'),
    headDim: int(file, headDim, 'model.decoder.head_size'),
    vocabSize: int(file, model.vocab_size, 'model.vocab_size'),
    contextLength,
    eosTokenIds: eosIds(model.eos_token_id),
    names: {
      inputIds: s(inputs.input_ids, 'input_ids'),
      attentionMask: s(inputs.attention_mask, 'attention_mask'),
      positionIds: s(inputs.position_ids, 'position_ids'),
      pastKey: s(inputs.past_key_names, 'past_key_values.%d.key'),
      pastValue: s(inputs.past_value_names, 'past_key_values.%d.value'),
      logits: s(outputs.logits, 'logits'),
      presentKey: s(outputs.present_key_names, 'present.%d.key'),
      presentValue: s(outputs.present_value_names, 'present.%d.value'),
    },
  };
}

async function readOptimumConfig(dir: string): Promise<ConfigFacts> {
  const file = join(dir, 'config.json');
  const cfg = await readJson(file);
  // Some configs (multimodal wrappers) nest the decoder's facts under text_config.
  const c = (
    typeof cfg.text_config === 'object' && cfg.text_config !== null ? { ...cfg, ...cfg.text_config } : cfg
  ) as Json;
  const numHeads = int(file, c.num_attention_heads ?? c.n_head, 'num_attention_heads');
  const hidden = optInt(c.hidden_size ?? c.n_embd);
  const headDim = optInt(c.head_dim) ?? (hidden ? hidden / numHeads : undefined);
  let eos = eosIds(c.eos_token_id);
  const genCfgPath = join(dir, 'generation_config.json');
  if (existsSync(genCfgPath)) {
    const gen = await readJson(genCfgPath);
    for (const id of eosIds(gen.eos_token_id)) if (!eos.includes(id)) eos = [...eos, id];
  }
  const modelFile = existsSync(join(dir, 'model.onnx'))
    ? 'model.onnx'
    : existsSync(join(dir, 'onnx', 'model.onnx'))
      ? join('onnx', 'model.onnx')
      : 'model.onnx';
  return {
    layout: 'optimum',
    configPath: file,
    modelFile,
    name: typeof c.model_type === 'string' ? c.model_type : basename(dir),
    numLayers: int(file, c.num_hidden_layers ?? c.n_layer, 'num_hidden_layers'),
    numKvHeads: int(file, c.num_key_value_heads ?? numHeads, 'num_key_value_heads'),
    headDim: int(file, headDim, 'head_dim'),
    vocabSize: int(file, c.vocab_size, 'vocab_size'),
    contextLength: int(file, c.max_position_embeddings ?? c.n_positions, 'max_position_embeddings'),
    eosTokenIds: eos,
    names: {
      inputIds: 'input_ids',
      attentionMask: 'attention_mask',
      positionIds: 'position_ids',
      pastKey: 'past_key_values.%d.key',
      pastValue: 'past_key_values.%d.value',
      logits: 'logits',
      presentKey: 'present.%d.key',
      presentValue: 'present.%d.value',
    },
  };
}

function intType(file: string, model: ModelProto, name: string): 'int64' | 'int32' {
  const info = findValueInfo(model, name);
  const t = info ? valueInfoType(info).elemType : DataType.INT64;
  if (t === DataType.INT64) return 'int64';
  if (t === DataType.INT32) return 'int32';
  throw new ModelLoadError(file, `input ${name} has element type ${t}; expected int64 or int32`);
}

/** A model directory, parsed: its facts and its graph (ready for augmentation). */
export interface LoadedModel {
  readonly spec: ModelSpec;
  readonly proto: ModelProto;
}

/**
 * Loads a model directory: `genai_config.json` (onnxruntime-genai layout,
 * GroupQueryAttention) wins over `config.json` (Optimum layout).
 */
export async function loadModelDir(dirArg: string): Promise<LoadedModel> {
  const dir = resolve(dirArg);
  if (!existsSync(dir)) throw new ModelLoadError(dir, 'model directory does not exist');
  let facts: ConfigFacts;
  if (existsSync(join(dir, 'genai_config.json'))) facts = await readGenaiConfig(dir);
  else if (existsSync(join(dir, 'config.json'))) facts = await readOptimumConfig(dir);
  else {
    throw new ModelLoadError(
      dir,
      'neither genai_config.json (onnxruntime-genai layout) nor config.json (Optimum layout) found',
    );
  }
  const modelPath = join(dir, facts.modelFile);
  if (!existsSync(modelPath))
    throw new ModelLoadError(modelPath, `model file missing (named by ${basename(facts.configPath)})`);
  let proto: ModelProto;
  try {
    proto = await loadOnnx(modelPath);
  } catch (err) {
    throw new ModelLoadError(modelPath, `cannot parse ONNX model: ${(err as Error).message}`, { cause: err });
  }
  const graph = proto.graph;
  if (!graph) throw new ModelLoadError(modelPath, 'model has no graph');
  const initNames = new Set((graph.initializer ?? []).map((t) => t.name));
  const inputs = new Set((graph.input ?? []).map((v) => v.name ?? '').filter((n) => !initNames.has(n)));
  const outputs = new Set((graph.output ?? []).map((v) => v.name ?? ''));
  const n = facts.names;
  const L = facts.numLayers;
  const pastKeys = nameList(n.pastKey, L);
  const pastValues = nameList(n.pastValue, L);
  const presentKeys = nameList(n.presentKey, L);
  const presentValues = nameList(n.presentValue, L);
  const required = [n.inputIds, n.attentionMask, ...pastKeys, ...pastValues];
  const missingIn = required.filter((x) => !inputs.has(x));
  if (missingIn.length > 0) {
    throw new ModelLoadError(
      modelPath,
      `graph input${missingIn.length > 1 ? 's' : ''} missing for the ${facts.layout} layout: ${missingIn.slice(0, 6).join(', ')}${missingIn.length > 6 ? ', ...' : ''} (graph has: ${[...inputs].slice(0, 8).join(', ')})`,
    );
  }
  const missingOut = [n.logits, ...presentKeys, ...presentValues].filter((x) => !outputs.has(x));
  if (missingOut.length > 0) {
    throw new ModelLoadError(
      modelPath,
      `graph output${missingOut.length > 1 ? 's' : ''} missing for the ${facts.layout} layout: ${missingOut.slice(0, 6).join(', ')}`,
    );
  }
  const hasPositionIds = inputs.has(n.positionIds);
  // Optimum's merged decoders take `use_cache_branch` (fed true: the with-past branch also handles an
  // empty past); newer exports take `num_logits_to_keep` / `logits_to_keep` (fed 0: keep all).
  const useCacheBranch = inputs.has('use_cache_branch') ? 'use_cache_branch' : null;
  const logitsToKeep = ['num_logits_to_keep', 'logits_to_keep'].find((x) => inputs.has(x)) ?? null;
  const known = new Set([...required, n.positionIds, useCacheBranch, logitsToKeep]);
  const unknown = [...inputs].filter((x) => !known.has(x));
  if (unknown.length > 0) {
    throw new ModelLoadError(modelPath, `graph has inputs this runtime cannot feed: ${unknown.join(', ')}`);
  }
  // Shapes of the past inputs: [batch, kv_heads, past_seq, head_dim] where static.
  const first = findValueInfo(proto, pastKeys[0] as string);
  let kvElem: number = DataType.FLOAT;
  if (first) {
    const { elemType, shape } = valueInfoType(first);
    kvElem = elemType;
    if (shape !== null) {
      if (shape.length !== 4)
        throw new ModelLoadError(
          modelPath,
          `${pastKeys[0]}: expected rank 4 [batch, kv_heads, seq, head_dim], got rank ${shape.length}`,
        );
      const [, h, , d] = shape;
      if (typeof h === 'number' && h !== facts.numKvHeads) {
        throw new ModelLoadError(
          modelPath,
          `${pastKeys[0]}: ${h} kv heads, but ${basename(facts.configPath)} says ${facts.numKvHeads}`,
        );
      }
      if (typeof d === 'number' && d !== facts.headDim) {
        throw new ModelLoadError(
          modelPath,
          `${pastKeys[0]}: head dim ${d}, but ${basename(facts.configPath)} says ${facts.headDim}`,
        );
      }
    }
  }
  if (kvElem !== DataType.FLOAT && kvElem !== DataType.FLOAT16) {
    throw new ModelLoadError(
      modelPath,
      `${pastKeys[0]}: KV element type ${kvElem} is not supported (float32 or float16)`,
    );
  }
  const logitsInfo = findValueInfo(proto, n.logits);
  if (logitsInfo) {
    const { shape } = valueInfoType(logitsInfo);
    const v = shape?.[shape.length - 1];
    if (typeof v === 'number' && v !== facts.vocabSize) {
      throw new ModelLoadError(
        modelPath,
        `${n.logits}: vocab ${v}, but ${basename(facts.configPath)} says ${facts.vocabSize}`,
      );
    }
  }
  const spec: ModelSpec = {
    dir,
    name: facts.name,
    layout: facts.layout,
    modelPath,
    configPath: facts.configPath,
    numLayers: L,
    numKvHeads: facts.numKvHeads,
    headDim: facts.headDim,
    vocabSize: facts.vocabSize,
    contextLength: facts.contextLength,
    eosTokenIds: facts.eosTokenIds,
    dtype: kvElem === DataType.FLOAT16 ? 'fp16' : 'fp32',
    io: {
      inputIds: n.inputIds,
      attentionMask: n.attentionMask,
      positionIds: hasPositionIds ? n.positionIds : null,
      pastKeys,
      pastValues,
      logits: n.logits,
      presentKeys,
      presentValues,
      inputIdsType: intType(modelPath, proto, n.inputIds),
      attentionMaskType: intType(modelPath, proto, n.attentionMask),
      positionIdsType: hasPositionIds ? intType(modelPath, proto, n.positionIds) : 'int64',
      useCacheBranch,
      logitsToKeep,
    },
  };
  return { spec, proto };
}
