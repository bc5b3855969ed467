/**
 * `buildModel`: writes a Llama-architecture decoder with seeded random
 * weights, in the onnxruntime-genai layout (GroupQueryAttention) or the
 * Optimum / transformers.js layout (standard ops), plus its config files and
 * tokenizer. Same options ⇒ byte-identical files.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { InvalidConfigError } from '@tsinfer/core';
import { ExternalDataWriter } from '../onnx/external-writer.js';
import { DataType, type IModelProto, type ITensorProto, serializeModel } from '../onnx/index.js';
import { writeTokenizerFiles } from '../tokenizer/train.js';
import { buildGraph, type Layout, type WeightDtype, type WeightSpec } from './llama-graph.js';
import { type ModelShape, type PresetName, parameterCount, resolveShape } from './presets.js';
import { WeightPool } from './weight-pool.js';
import { WEIGHT_CHUNK } from './weights.js';

export type { Layout, WeightDtype } from './llama-graph.js';

export interface BuildModelOptions {
  /** A preset name or a custom shape. */
  preset: PresetName | ModelShape;
  /** Directory to write into (created if missing; files of the same name are overwritten). */
  outDir: string;
  /** Weight seed (any integer; low 32 bits used). Default 0. */
  seed?: number;
  /** `fp32` (CPU) or `fp16` (CUDA: every float initializer, activation, past/present and logits fp16). Default fp32. */
  dtype?: WeightDtype;
  /** `genai` (GroupQueryAttention, genai_config.json) or `optimum` (standard ops, config.json). Default genai. */
  layout?: Layout;
  /**
   * Where weights go: `true` (default) streams them into `model.onnx.data`
   * beside `model.onnx`; `false` keeps them inside `model.onnx` (only for
   * models well under protobuf's 2 GiB limit).
   */
  externalData?: boolean;
  /** Write `tokenizer.json` / `tokenizer_config.json` and size the vocabulary to it. Default true. */
  tokenizer?: boolean;
  /** RMSNorm as the fused `SimplifiedLayerNormalization` (default) or from plain opset-17 ops. */
  rmsNorm?: 'simplified' | 'plain';
  /**
   * Worker threads generating weights (the bytes do not depend on it).
   * Default: min(cores − 1, 8) above 64 MiB of weights on machines with more
   * than 2 cores, else 0 (in-thread).
   */
  threads?: number;
  /** Called as weight bytes are written: `(done, total)` in bytes. */
  onProgress?: (done: number, total: number) => void;
}

export interface TokenIds {
  bosTokenId: number;
  eosTokenId: number;
  /** Every id that ends generation. */
  eosTokenIds: number[];
  padTokenId: number;
}

export interface BuiltModel {
  dir: string;
  /** Files written, relative to `dir`. */
  files: string[];
  layout: Layout;
  dtype: WeightDtype;
  shape: ModelShape;
  vocabSize: number;
  parameters: number;
  /** Bytes of weight data (model.onnx.data without alignment padding, or inline). */
  weightBytes: number;
  tokens: TokenIds;
  /** Wall time of the build. */
  ms: number;
}

/** Weight bytes above which chunks are generated on worker threads by default. */
const PARALLEL_THRESHOLD = 64 * 2 ** 20;
/** protobuf's limit on one message, minus room for the graph. */
const INLINE_LIMIT = 2 ** 31 - 64 * 2 ** 20;

const DEFAULT_TOKENS: TokenIds = { bosTokenId: 1, eosTokenId: 2, eosTokenIds: [2], padTokenId: 0 };

export async function buildModel(options: BuildModelOptions): Promise<BuiltModel> {
  const t0 = performance.now();
  const shape = resolveShape(options.preset);
  const seed = options.seed ?? 0;
  if (!Number.isFinite(seed) || !Number.isInteger(seed))
    throw new InvalidConfigError('--seed', `must be an integer, got ${seed}`);
  const dtype = options.dtype ?? 'fp32';
  if (dtype !== 'fp32' && dtype !== 'fp16')
    throw new InvalidConfigError('--dtype', `must be fp32 or fp16, got ${String(dtype)}`);
  const layout = options.layout ?? 'genai';
  if (layout !== 'genai' && layout !== 'optimum')
    throw new InvalidConfigError('--layout', `must be genai or optimum, got ${String(layout)}`);
  const external = options.externalData ?? true;

  const rmsNorm = options.rmsNorm ?? 'simplified';
  if (rmsNorm !== 'simplified' && rmsNorm !== 'plain')
    throw new InvalidConfigError('rmsNorm', `must be simplified or plain, got ${String(rmsNorm)}`);
  if (options.threads !== undefined && (!Number.isInteger(options.threads) || options.threads < 0)) {
    throw new InvalidConfigError('threads', `must be a non-negative integer, got ${options.threads}`);
  }

  await mkdir(options.outDir, { recursive: true });
  const files: string[] = [];
  let vocabSize = shape.vocabSize;
  let tokens = DEFAULT_TOKENS;
  if (options.tokenizer ?? true) {
    const info = await writeTokenizerFiles(
      options.outDir,
      shape.tokenizerVocabSize === undefined ? {} : { vocabSize: shape.tokenizerVocabSize },
    );
    vocabSize = Math.max(vocabSize, info.vocabSize);
    tokens = {
      bosTokenId: info.bosTokenId,
      eosTokenId: info.eosTokenId,
      eosTokenIds: [...info.eosTokenIds],
      padTokenId: info.padTokenId,
    };
    files.push('tokenizer.json', 'tokenizer_config.json');
  }

  const graph = buildGraph({ shape, vocabSize, layout, dtype, rmsNorm });
  const elemBytes = dtype === 'fp16' ? 2 : 4;
  const FT = dtype === 'fp16' ? DataType.FLOAT16 : DataType.FLOAT;
  const total = graph.weights.reduce((a, w) => a + numel(w) * elemBytes, 0);
  if (!external && total > INLINE_LIMIT) {
    throw new InvalidConfigError(
      'externalData',
      `weights are ${total} bytes, over protobuf's 2 GiB limit for an inline model; use external data`,
    );
  }

  const initializers: ITensorProto[] = graph.weights.map((w) => ({
    name: w.name,
    dataType: FT,
    dims: [...w.dims],
  }));
  const threads = options.threads ?? defaultThreads(total);
  // Every chunk of every tensor, in file order.
  const jobs: { w: number; chunk: number; count: number }[] = [];
  graph.weights.forEach((w, i) => {
    const n = numel(w);
    for (let c = 0; c * WEIGHT_CHUNK < n; c++)
      jobs.push({ w: i, chunk: c, count: Math.min(WEIGHT_CHUNK, n - c * WEIGHT_CHUNK) });
  });
  let done = 0;
  options.onProgress?.(0, total);
  const writer = external ? new ExternalDataWriter(join(options.outDir, 'model.onnx.data')) : null;
  const pool = new WeightPool(threads, dtype === 'fp16', WEIGHT_CHUNK);
  const window: Promise<Uint8Array>[] = [];
  const maxInFlight = Math.max(1, 2 * threads);
  let next = 0;
  const request = (): void => {
    const job = jobs[next++];
    if (!job) return;
    const w = graph.weights[job.w] as WeightSpec;
    const p = pool.generate(w.init, seed, w.name, job.chunk, job.count);
    p.catch(() => undefined); // awaited in order below; avoid unhandled-rejection noise meanwhile
    window.push(p);
  };
  await writer?.open();
  try {
    let inline: Uint8Array | null = null;
    for (const job of jobs) {
      while (window.length < maxInFlight && next < jobs.length) request();
      const bytes = await (window.shift() as Promise<Uint8Array>);
      const w = graph.weights[job.w] as WeightSpec;
      const tensor = initializers[job.w] as ITensorProto;
      if (job.chunk === 0) {
        if (writer) await writer.begin();
        else inline = new Uint8Array(numel(w) * elemBytes);
      }
      if (writer) await writer.write(bytes);
      else inline?.set(bytes, job.chunk * WEIGHT_CHUNK * elemBytes);
      done += bytes.byteLength;
      options.onProgress?.(done, total);
      if ((job.chunk + 1) * WEIGHT_CHUNK >= numel(w)) {
        if (writer) writer.end(tensor);
        else tensor.rawData = inline;
      }
    }
  } finally {
    await pool.close();
    await writer?.close();
  }
  if (writer) files.push('model.onnx.data');

  const model: IModelProto = {
    irVersion: 8,
    opsetImport: [
      { domain: '', version: 17 },
      { domain: 'com.microsoft', version: 1 },
    ],
    producerName: 'tsinfer-model-builder',
    producerVersion: '1',
    graph: {
      name: 'main_graph',
      node: graph.nodes,
      input: graph.inputs,
      output: graph.outputs,
      initializer: [...initializers, ...graph.constants],
    },
  };
  await writeFile(join(options.outDir, 'model.onnx'), serializeModel(model));
  files.push('model.onnx');

  const cfg = { shape, vocabSize, dtype, tokens };
  if (layout === 'genai') {
    await writeJson(join(options.outDir, 'genai_config.json'), genaiConfig(cfg));
    files.push('genai_config.json');
  } else {
    await writeJson(join(options.outDir, 'config.json'), hfConfig(cfg));
    await writeJson(join(options.outDir, 'generation_config.json'), generationConfig(cfg));
    files.push('config.json', 'generation_config.json');
  }

  return {
    dir: options.outDir,
    files: files.sort(),
    layout,
    dtype,
    shape,
    vocabSize,
    parameters: parameterCount(shape, vocabSize),
    weightBytes: total,
    tokens,
    ms: performance.now() - t0,
  };
}

/** Worker threads by default: none for small models or on machines with 2 cores or fewer (measured slower there). */
function defaultThreads(totalBytes: number): number {
  const cores = availableParallelism();
  return totalBytes > PARALLEL_THRESHOLD && cores > 2 ? Math.min(cores - 1, 8) : 0;
}

function numel(w: WeightSpec): number {
  return w.dims.reduce((a, b) => a * b, 1);
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 4)}\n`);
}

interface ConfigInput {
  shape: ModelShape;
  vocabSize: number;
  dtype: WeightDtype;
  tokens: TokenIds;
}

function eosValue(tokens: TokenIds): number | number[] {
  return tokens.eosTokenIds.length === 1 ? (tokens.eosTokenIds[0] as number) : tokens.eosTokenIds;
}

/** genai_config.json in onnxruntime-genai's format (what its model builder writes for a Llama decoder). */
export function genaiConfig({ shape: s, vocabSize, dtype, tokens }: ConfigInput): unknown {
  return {
    model: {
      bos_token_id: tokens.bosTokenId,
      context_length: s.contextLength,
      decoder: {
        session_options: {
          log_id: 'onnxruntime-genai',
          provider_options: dtype === 'fp16' ? [{ cuda: {} }] : [],
        },
        filename: 'model.onnx',
        head_size: s.headDim,
        hidden_size: s.hiddenSize,
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
        num_attention_heads: s.numHeads,
        num_hidden_layers: s.numLayers,
        num_key_value_heads: s.numKvHeads,
      },
      eos_token_id: eosValue(tokens),
      pad_token_id: tokens.padTokenId,
      type: 'llama',
      vocab_size: vocabSize,
    },
    search: {
      diversity_penalty: 0.0,
      do_sample: false,
      early_stopping: true,
      length_penalty: 1.0,
      max_length: s.contextLength,
      min_length: 0,
      no_repeat_ngram_size: 0,
      num_beams: 1,
      num_return_sequences: 1,
      past_present_share_buffer: true,
      repetition_penalty: 1.0,
      temperature: 1.0,
      top_k: 1,
      top_p: 1.0,
    },
  };
}

/** Hugging Face config.json for the optimum layout. */
export function hfConfig({ shape: s, vocabSize, dtype, tokens }: ConfigInput): unknown {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: tokens.bosTokenId,
    eos_token_id: eosValue(tokens),
    pad_token_id: tokens.padTokenId,
    head_dim: s.headDim,
    hidden_act: 'silu',
    hidden_size: s.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: s.intermediateSize,
    max_position_embeddings: s.contextLength,
    mlp_bias: false,
    num_attention_heads: s.numHeads,
    num_hidden_layers: s.numLayers,
    num_key_value_heads: s.numKvHeads,
    rms_norm_eps: s.rmsNormEps,
    rope_scaling: null,
    rope_theta: s.ropeTheta,
    tie_word_embeddings: false,
    torch_dtype: dtype === 'fp16' ? 'float16' : 'float32',
    use_cache: true,
    vocab_size: vocabSize,
  };
}

/** Hugging Face generation_config.json. */
export function generationConfig({ tokens }: ConfigInput): unknown {
  return {
    bos_token_id: tokens.bosTokenId,
    eos_token_id: eosValue(tokens),
    pad_token_id: tokens.padTokenId,
    do_sample: false,
  };
}
