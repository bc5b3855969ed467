/**
 * The decoder graph of both layouts, described as nodes plus weight specs
 * (the weight bytes are generated later, streamed by `build.ts`).
 *
 * Weights are shared by name between layouts (MatMul weights stored
 * [in, out], i.e. transposed relative to PyTorch's Linear):
 *   model.embed_tokens.weight               [V, H]
 *   model.layers.{i}.input_layernorm.weight [H]
 *   model.layers.{i}.self_attn.qkv_proj.weight [H, (nq + 2·nkv)·hd]  columns: q | k | v
 *   model.layers.{i}.self_attn.o_proj.weight   [nq·hd, H]
 *   model.layers.{i}.post_attention_layernorm.weight [H]
 *   model.layers.{i}.mlp.gate_up_proj.weight   [H, 2·I]  columns: gate | up
 *   model.layers.{i}.mlp.down_proj.weight      [I, H]
 *   model.norm.weight                       [H]
 *   lm_head.weight                          [H, V]
 *   cos_cache, sin_cache                    [contextLength, hd/2]
 */

import { toFloat16Array } from '../onnx/fp16.js';
import {
  type AttributeValue,
  DataType,
  type Dim,
  type INodeProto,
  type ITensorProto,
  type IValueInfoProto,
  makeInt64Tensor,
  makeNode,
  makeTensor,
  makeValueInfo,
} from '../onnx/index.js';
import type { ModelShape } from './presets.js';
import { rotaryCaches, type WeightInit } from './weights.js';

export type Layout = 'genai' | 'optimum';
export type WeightDtype = 'fp32' | 'fp16';

export interface WeightSpec {
  readonly name: string;
  readonly dims: readonly number[];
  readonly init: WeightInit;
  /** Counted as a model parameter (rotary caches are not). */
  readonly parameter: boolean;
}

export interface GraphDef {
  readonly nodes: INodeProto[];
  readonly inputs: IValueInfoProto[];
  readonly outputs: IValueInfoProto[];
  /** Weights, in the order they are written. */
  readonly weights: WeightSpec[];
  /** Small inline constants. */
  readonly constants: ITensorProto[];
}

export interface GraphOptions {
  readonly shape: ModelShape;
  readonly vocabSize: number;
  readonly layout: Layout;
  readonly dtype: WeightDtype;
  /**
   * RMSNorm as `SimplifiedLayerNormalization` (default: one fused kernel,
   * float32 accumulation also for fp16) or from plain opset-17 ops
   * (Mul/ReduceMean/Add/Sqrt/Div, computed in float32 and cast back for fp16).
   */
  readonly rmsNorm?: 'simplified' | 'plain';
}

class Builder {
  readonly nodes: INodeProto[] = [];
  readonly weights: WeightSpec[] = [];
  readonly constants: ITensorProto[] = [];
  private readonly constNames = new Map<string, string>();
  constructor(readonly floatType: number) {}

  op(
    opType: string,
    name: string,
    inputs: readonly string[],
    attrs: Readonly<Record<string, AttributeValue | undefined>> = {},
    outputs = 1,
    domain?: string,
  ): string[] {
    const outs = Array.from({ length: outputs }, (_, i) => `${name}/output_${i}`);
    this.nodes.push(
      makeNode(opType, inputs, outs, attrs, domain === undefined ? { name } : { name, domain }),
    );
    return outs;
  }

  op1(
    opType: string,
    name: string,
    inputs: readonly string[],
    attrs: Readonly<Record<string, AttributeValue | undefined>> = {},
    domain?: string,
  ): string {
    return this.op(opType, name, inputs, attrs, 1, domain)[0] as string;
  }

  /** Renames the output of the last node (to a graph output name). */
  renameLastOutput(index: number, to: string): void {
    const node = this.nodes[this.nodes.length - 1];
    if (!node?.output) throw new Error('no node');
    node.output[index] = to;
  }

  weight(name: string, dims: readonly number[], init: WeightInit, parameter = true): string {
    this.weights.push({ name, dims, init, parameter });
    return name;
  }

  i64(values: readonly number[], scalar = false): string {
    const key = `i64:${scalar ? 's' : 'v'}:${values.join(',')}`;
    let name = this.constNames.get(key);
    if (name === undefined) {
      name = `/model/constants/INT64/${scalar ? '0D' : `1D`}/${values.join('_')}`;
      this.constants.push(makeInt64Tensor(name, scalar ? [] : [values.length], values));
      this.constNames.set(key, name);
    }
    return name;
  }

  /** A float32 scalar. */
  float32(value: number): string {
    const key = `f32:${value}`;
    let name = this.constNames.get(key);
    if (name === undefined) {
      name = `/model/constants/FLOAT32/0D/${value}`;
      this.constants.push(makeTensor(name, DataType.FLOAT, [], Float32Array.of(value)));
      this.constNames.set(key, name);
    }
    return name;
  }

  /** A scalar of the model's float type. */
  float(value: number): string {
    const key = `f:${value}`;
    let name = this.constNames.get(key);
    if (name === undefined) {
      name = `/model/constants/FLOAT/0D/${value}`;
      const data = this.floatType === DataType.FLOAT16 ? toFloat16Array([value]) : Float32Array.of(value);
      this.constants.push(makeTensor(name, this.floatType, [], data));
      this.constNames.set(key, name);
    }
    return name;
  }
}

/** Builds the graph description of one layout. */
export function buildGraph(opts: GraphOptions): GraphDef {
  const { shape: s, vocabSize: V, layout, dtype } = opts;
  const FT = dtype === 'fp16' ? DataType.FLOAT16 : DataType.FLOAT;
  const H = s.hiddenSize;
  const I = s.intermediateSize;
  const nq = s.numHeads;
  const nkv = s.numKvHeads;
  const hd = s.headDim;
  const g = new Builder(FT);

  const inputs: IValueInfoProto[] = [
    makeValueInfo('input_ids', DataType.INT64, ['batch_size', 'sequence_length']),
    makeValueInfo('attention_mask', DataType.INT64, ['batch_size', 'total_sequence_length']),
  ];
  if (layout === 'optimum')
    inputs.push(makeValueInfo('position_ids', DataType.INT64, ['batch_size', 'sequence_length']));
  const pastShape: Dim[] = ['batch_size', nkv, 'past_sequence_length', hd];
  const presentShape: Dim[] = ['batch_size', nkv, 'total_sequence_length', hd];
  const outputs: IValueInfoProto[] = [makeValueInfo('logits', FT, ['batch_size', 'sequence_length', V])];
  for (let l = 0; l < s.numLayers; l++) {
    inputs.push(makeValueInfo(`past_key_values.${l}.key`, FT, pastShape));
    inputs.push(makeValueInfo(`past_key_values.${l}.value`, FT, pastShape));
    outputs.push(makeValueInfo(`present.${l}.key`, FT, presentShape));
    outputs.push(makeValueInfo(`present.${l}.value`, FT, presentShape));
  }

  const embed = g.weight('model.embed_tokens.weight', [V, H], { kind: 'uniform', mean: 0, std: 1 });
  const caches = rotaryCaches(s.contextLength, hd, s.ropeTheta);
  const cosCache = g.weight(
    'cos_cache',
    [s.contextLength, hd / 2],
    { kind: 'values', values: caches.cos },
    false,
  );
  const sinCache = g.weight(
    'sin_cache',
    [s.contextLength, hd / 2],
    { kind: 'values', values: caches.sin },
    false,
  );

  const norm = (name: string, x: string, weight: string): string => {
    if ((opts.rmsNorm ?? 'simplified') === 'simplified') {
      return g.op1('SimplifiedLayerNormalization', name, [x, weight], {
        axis: -1,
        epsilon: { float: s.rmsNormEps },
        stash_type: 1,
      });
    }
    const x32 = FT === DataType.FLOAT ? x : g.op1('Cast', `${name}/Cast`, [x], { to: DataType.FLOAT });
    const sq = g.op1('Mul', `${name}/Square`, [x32, x32]);
    const mean = g.op1('ReduceMean', `${name}/ReduceMean`, [sq], { axes: [-1], keepdims: 1 });
    const rms = g.op1('Sqrt', `${name}/Sqrt`, [
      g.op1('Add', `${name}/AddEps`, [mean, g.float32(s.rmsNormEps)]),
    ]);
    const n32 = g.op1('Div', `${name}/Div`, [x32, rms]);
    const n = FT === DataType.FLOAT ? n32 : g.op1('Cast', `${name}/CastBack`, [n32], { to: FT });
    return g.op1('Mul', `${name}/Scale`, [n, weight]);
  };

  let h = g.op1('Gather', '/model/embed_tokens/Gather', [embed, 'input_ids'], { axis: 0 });

  // Per-layout attention context computed once.
  let seqlensK = '';
  let totalLen = '';
  let cos = '';
  let sin = '';
  let mask = '';
  let minValue = '';
  let scale = '';
  if (layout === 'genai') {
    // seqlens_k = row sum of attention_mask - 1 (int32 [B]); total_sequence_length = mask width (int32 scalar).
    const sum = g.op1('ReduceSum', '/model/attn_mask_reformat/ReduceSum', ['attention_mask', g.i64([1])], {
      keepdims: 0,
    });
    const sub = g.op1('Sub', '/model/attn_mask_reformat/Sub', [sum, g.i64([1], true)]);
    seqlensK = g.op1('Cast', '/model/attn_mask_reformat/seqlens_k', [sub], { to: DataType.INT32 });
    const shp = g.op1('Shape', '/model/attn_mask_reformat/Shape', ['attention_mask']);
    const width = g.op1('Gather', '/model/attn_mask_reformat/Gather', [shp, g.i64([1], true)], { axis: 0 });
    totalLen = g.op1('Cast', '/model/attn_mask_reformat/total_seq_len', [width], { to: DataType.INT32 });
  } else {
    // cos/sin for the given positions: [B, 1, S, hd/2].
    const cosG = g.op1('Gather', '/model/rotary/cos/Gather', [cosCache, 'position_ids'], { axis: 0 });
    cos = g.op1('Unsqueeze', '/model/rotary/cos/Unsqueeze', [cosG, g.i64([1])]);
    const sinG = g.op1('Gather', '/model/rotary/sin/Gather', [sinCache, 'position_ids'], { axis: 0 });
    sin = g.op1('Unsqueeze', '/model/rotary/sin/Unsqueeze', [sinG, g.i64([1])]);
    // Allowed[b, 1, 1, s, t] = (t <= P + s) && attention_mask[b, t], P = T - S.
    const idsShape = g.op1('Shape', '/model/mask/ids_shape', ['input_ids']);
    const S = g.op1('Gather', '/model/mask/S', [idsShape, g.i64([1], true)], { axis: 0 });
    const maskShape = g.op1('Shape', '/model/mask/mask_shape', ['attention_mask']);
    const T = g.op1('Gather', '/model/mask/T', [maskShape, g.i64([1], true)], { axis: 0 });
    const P = g.op1('Sub', '/model/mask/P', [T, S]);
    const qpos = g.op1('Range', '/model/mask/qpos', [P, T, g.i64([1], true)]);
    const kpos = g.op1('Range', '/model/mask/kpos', [g.i64([0], true), T, g.i64([1], true)]);
    const q2 = g.op1('Unsqueeze', '/model/mask/qpos_col', [qpos, g.i64([1])]);
    const k2 = g.op1('Unsqueeze', '/model/mask/kpos_row', [kpos, g.i64([0])]);
    const causal = g.op1('LessOrEqual', '/model/mask/causal', [k2, q2]);
    const padB = g.op1('Cast', '/model/mask/pad_bool', ['attention_mask'], { to: DataType.BOOL });
    const pad5 = g.op1('Unsqueeze', '/model/mask/pad_5d', [padB, g.i64([1, 2, 3])]);
    mask = g.op1('And', '/model/mask/allowed', [causal, pad5]);
    minValue = g.float(dtype === 'fp16' ? -65504 : -3.4028234663852886e38);
    scale = g.float(1 / Math.sqrt(hd));
  }

  const uni = (std: number, mean = 0): WeightInit => ({ kind: 'uniform', mean, std });
  const normInit = uni(0.1, 1);

  for (let l = 0; l < s.numLayers; l++) {
    const p = `/model/layers.${l}`;
    const w = `model.layers.${l}`;
    const lnW = g.weight(`${w}.input_layernorm.weight`, [H], normInit);
    const qkvW = g.weight(`${w}.self_attn.qkv_proj.weight`, [H, (nq + 2 * nkv) * hd], uni(1 / Math.sqrt(H)));
    const oW = g.weight(`${w}.self_attn.o_proj.weight`, [nq * hd, H], uni(1 / Math.sqrt(nq * hd)));
    const postW = g.weight(`${w}.post_attention_layernorm.weight`, [H], normInit);
    const guW = g.weight(`${w}.mlp.gate_up_proj.weight`, [H, 2 * I], uni(1 / Math.sqrt(H)));
    const downW = g.weight(`${w}.mlp.down_proj.weight`, [I, H], uni(1 / Math.sqrt(I)));

    const x = norm(`${p}/input_layernorm/LayerNorm`, h, lnW);
    const qkv = g.op1('MatMul', `${p}/attn/qkv_proj/MatMul`, [x, qkvW]);
    let attn: string;
    if (layout === 'genai') {
      const outs = g.op(
        'GroupQueryAttention',
        `${p}/attn/GroupQueryAttention`,
        [
          qkv,
          '',
          '',
          `past_key_values.${l}.key`,
          `past_key_values.${l}.value`,
          seqlensK,
          totalLen,
          cosCache,
          sinCache,
        ],
        {
          num_heads: nq,
          kv_num_heads: nkv,
          do_rotary: 1,
          rotary_interleaved: 0,
          scale: { float: 1 / Math.sqrt(hd) },
        },
        3,
        'com.microsoft',
      );
      g.renameLastOutput(1, `present.${l}.key`);
      g.renameLastOutput(2, `present.${l}.value`);
      attn = outs[0] as string;
    } else {
      const [q, k, v] = g.op(
        'Split',
        `${p}/attn/qkv_split`,
        [qkv, g.i64([nq * hd, nkv * hd, nkv * hd])],
        { axis: -1 },
        3,
      ) as [string, string, string];
      const heads = (t: string, n: number, name: string): string => {
        const r = g.op1('Reshape', `${p}/attn/${name}/Reshape`, [t, g.i64([0, 0, n, hd])]);
        return g.op1('Transpose', `${p}/attn/${name}/Transpose`, [r], { perm: [0, 2, 1, 3] });
      };
      const rope = (t: string, name: string): string => {
        const [x1, x2] = g.op(
          'Split',
          `${p}/attn/${name}/rope/Split`,
          [t, g.i64([hd / 2, hd / 2])],
          { axis: -1 },
          2,
        ) as [string, string];
        const a = g.op1('Mul', `${p}/attn/${name}/rope/x1cos`, [x1, cos]);
        const b = g.op1('Mul', `${p}/attn/${name}/rope/x2sin`, [x2, sin]);
        const c = g.op1('Mul', `${p}/attn/${name}/rope/x2cos`, [x2, cos]);
        const d = g.op1('Mul', `${p}/attn/${name}/rope/x1sin`, [x1, sin]);
        const lo = g.op1('Sub', `${p}/attn/${name}/rope/lo`, [a, b]);
        const hi = g.op1('Add', `${p}/attn/${name}/rope/hi`, [c, d]);
        return g.op1('Concat', `${p}/attn/${name}/rope/Concat`, [lo, hi], { axis: -1 });
      };
      const qh = rope(heads(q, nq, 'q'), 'q');
      const kh = rope(heads(k, nkv, 'k'), 'k');
      const vh = heads(v, nkv, 'v');
      g.op1('Concat', `${p}/attn/present_key`, [`past_key_values.${l}.key`, kh], { axis: 2 });
      g.renameLastOutput(0, `present.${l}.key`);
      g.op1('Concat', `${p}/attn/present_value`, [`past_key_values.${l}.value`, vh], { axis: 2 });
      g.renameLastOutput(0, `present.${l}.value`);
      // Query heads grouped by their KV head: [B, nkv, G, S, hd] against [B, nkv, 1, T, hd].
      const q5 = g.op1('Reshape', `${p}/attn/q_grouped`, [qh, g.i64([0, nkv, nq / nkv, -1, hd])]);
      const kT = g.op1('Transpose', `${p}/attn/k_T`, [`present.${l}.key`], { perm: [0, 1, 3, 2] });
      const k5 = g.op1('Unsqueeze', `${p}/attn/k_5d`, [kT, g.i64([2])]);
      const v5 = g.op1('Unsqueeze', `${p}/attn/v_5d`, [`present.${l}.value`, g.i64([2])]);
      const scores = g.op1('MatMul', `${p}/attn/qk/MatMul`, [q5, k5]);
      const scaled = g.op1('Mul', `${p}/attn/qk/scale`, [scores, scale]);
      const masked = g.op1('Where', `${p}/attn/qk/mask`, [mask, scaled, minValue]);
      const probs = g.op1('Softmax', `${p}/attn/Softmax`, [masked], { axis: -1 });
      const ctx5 = g.op1('MatMul', `${p}/attn/pv/MatMul`, [probs, v5]);
      const ctx4 = g.op1('Reshape', `${p}/attn/ctx/Reshape`, [ctx5, g.i64([0, nq, -1, hd])]);
      const ctxT = g.op1('Transpose', `${p}/attn/ctx/Transpose`, [ctx4], { perm: [0, 2, 1, 3] });
      attn = g.op1('Reshape', `${p}/attn/ctx/Merge`, [ctxT, g.i64([0, 0, nq * hd])]);
    }
    const o = g.op1('MatMul', `${p}/attn/o_proj/MatMul`, [attn, oW]);
    h = g.op1('Add', `${p}/attn/residual/Add`, [h, o]);
    const y = norm(`${p}/post_attention_layernorm/LayerNorm`, h, postW);
    const gu = g.op1('MatMul', `${p}/mlp/gate_up_proj/MatMul`, [y, guW]);
    const [gate, up] = g.op('Split', `${p}/mlp/Split`, [gu, g.i64([I, I])], { axis: -1 }, 2) as [
      string,
      string,
    ];
    const sig = g.op1('Sigmoid', `${p}/mlp/act/Sigmoid`, [gate]);
    const act = g.op1('Mul', `${p}/mlp/act/Mul`, [gate, sig]);
    const prod = g.op1('Mul', `${p}/mlp/Mul`, [act, up]);
    const down = g.op1('MatMul', `${p}/mlp/down_proj/MatMul`, [prod, downW]);
    h = g.op1('Add', `${p}/mlp/residual/Add`, [h, down]);
  }
  const normW = g.weight('model.norm.weight', [H], normInit);
  const lmW = g.weight('lm_head.weight', [H, V], uni(s.logitStd / Math.sqrt(H)));
  const hn = norm('/model/norm/LayerNorm', h, normW);
  g.op1('MatMul', '/lm_head/MatMul', [hn, lmW]);
  g.renameLastOutput(0, 'logits');

  return { nodes: g.nodes, inputs, outputs, weights: g.weights, constants: g.constants };
}
