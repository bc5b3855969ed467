/**
 * Graph augmentation at load time, so that neither the full logits nor the
 * whole `present` KV ever cross into JavaScript on the hot path.
 *
 * Added inputs:
 * - `tsinfer_logit_rows` int64 [R]: flat row indices into logits viewed as
 *   [B*S, V] (row b's last valid position is `b*S + len_b - 1`).
 * - `tsinfer_kv_index` int64 [B, 1, S, 1]: for each row and new token, its
 *   position in `present.*` (genai: past_b + i, where GroupQueryAttention
 *   writes it; optimum: P + i, after the concatenated past).
 *
 * Added outputs:
 * - `tsinfer_last_logits` float32 [R, V] (the last position of each row),
 * - `tsinfer_argmax` int64 [R],
 * - `tsinfer_topk_values` float32 [R, K], `tsinfer_topk_indices` int64 [R, K],
 * - `tsinfer_new.{i}.key/value` [B, kv, S, head_dim]: only the K/V rows this
 *   run wrote ("mode d" of specs/onnxruntime-gqa-notes.md).
 *
 * When the LM head is a plain MatMul (+ constant bias) on the final hidden
 * state, it is re-applied to the gathered last positions only and the full
 * `logits` output is dropped: prefill never computes [B, S, V] logits.
 * Otherwise (e.g. a quantized MatMulNBits head) the rows are gathered from
 * `logits`.
 *
 * The runner fetches only what a batch needs.
 */
import { makeInt64Tensor, makeNode, makeValueInfo } from '../onnx/graph.js';
import { addInitializers, addNodes, addOutputs, removeOutputs } from '../onnx/model-io.js';
import { DataType, type INodeProto, type ModelProto, toNumber } from '../onnx/proto.js';
import { ModelLoadError } from './errors.js';
import type { ModelSpec } from './spec.js';

export const AUG = {
  logitRows: 'tsinfer_logit_rows',
  kvIndex: 'tsinfer_kv_index',
  lastLogits: 'tsinfer_last_logits',
  argmax: 'tsinfer_argmax',
  topkValues: 'tsinfer_topk_values',
  topkIndices: 'tsinfer_topk_indices',
  newKey: (i: number) => `tsinfer_new.${i}.key`,
  newValue: (i: number) => `tsinfer_new.${i}.value`,
} as const;

/** The LM head when it is a plain MatMul (+ constant bias) on the final hidden state. */
interface LmHead {
  readonly hidden: string;
  readonly weight: string;
  readonly bias: string | null;
  readonly hiddenSize: number;
  /** The nodes computing the full logits (dropped). */
  readonly nodes: readonly INodeProto[];
}

function findLmHead(proto: ModelProto, spec: ModelSpec): LmHead | null {
  const graph = proto.graph;
  if (!graph) return null;
  const nodes = graph.node ?? [];
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const producer = (name: string) => nodes.find((n) => (n.output ?? []).includes(name));
  let node = producer(spec.io.logits);
  let bias: string | null = null;
  const drop: INodeProto[] = [];
  if (node?.opType === 'Add' && (node.domain ?? '') === '') {
    drop.push(node);
    const [a, b] = node.input ?? [];
    const biasName = inits.has(b ?? '') ? b : inits.has(a ?? '') ? a : undefined;
    const other = biasName === b ? a : b;
    const t = biasName ? inits.get(biasName) : undefined;
    if (!t || (t.dims ?? []).length !== 1 || toNumber(t.dims?.[0]) !== spec.vocabSize) return null;
    bias = biasName as string;
    node = producer(other ?? '');
  }
  if (node?.opType !== 'MatMul' || (node.domain ?? '') !== '') return null;
  const mmOut = node.output?.[0] ?? '';
  if (bias !== null && nodes.filter((n) => (n.input ?? []).includes(mmOut)).length !== 1) return null;
  drop.push(node);
  const [hidden, weight] = node.input ?? [];
  const w = inits.get(weight ?? '');
  if (!hidden || !weight || !w) return null;
  const dims = (w.dims ?? []).map((d) => toNumber(d));
  if (dims.length !== 2 || dims[1] !== spec.vocabSize) return null;
  // The full logits must feed nothing but the graph output (they are about to be dropped).
  const consumers = nodes.filter((n) => (n.input ?? []).includes(spec.io.logits));
  if (consumers.length > 0) return null;
  return { hidden, weight, bias, hiddenSize: dims[0] as number, nodes: drop };
}

export interface AugmentOptions {
  /** Width of the TopK head. */
  maxTopK: number;
  /**
   * When the LM head is a plain MatMul, apply it only to the gathered last
   * positions and drop the full `logits` output, so prefill never computes
   * [B, S, V] logits (default true). Otherwise the last rows are gathered
   * from `logits`.
   */
  lastPositionLmHead?: boolean;
}

/**
 * Adds the runtime's inputs, nodes and outputs to `proto` (in place).
 * Returns the TopK width used and whether the LM head now runs on the last
 * positions only (then the graph has no full `logits` output any more).
 */
export function augmentGraph(
  proto: ModelProto,
  spec: ModelSpec,
  options: AugmentOptions,
): { topK: number; lastPositionLmHead: boolean } {
  const opset = (proto.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  const version = opset ? toNumber(opset.version) : 0;
  if (version < 11) {
    throw new ModelLoadError(
      spec.modelPath,
      `default-domain opset ${version} is too old; opset 11 or newer is required`,
    );
  }
  const graph = proto.graph;
  if (!graph) throw new ModelLoadError(spec.modelPath, 'model has no graph');
  const V = spec.vocabSize;
  const topK = Math.max(1, Math.min(options.maxTopK, V));
  const fp16 = spec.dtype === 'fp16';
  const raw = fp16 ? 'tsinfer_last_logits_raw' : AUG.lastLogits;

  graph.input = [
    ...(graph.input ?? []),
    makeValueInfo(AUG.logitRows, DataType.INT64, ['tsinfer_rows']),
    makeValueInfo(AUG.kvIndex, DataType.INT64, ['tsinfer_batch', 1, 'tsinfer_new', 1]),
  ];
  addInitializers(proto, [
    makeInt64Tensor('tsinfer_c_topk', [1], [topK]),
    makeInt64Tensor('tsinfer_c_kv_expand', [4], [1, spec.numKvHeads, 1, spec.headDim]),
  ]);
  const head = options.lastPositionLmHead === false ? null : findLmHead(proto, spec);
  const nodes: INodeProto[] = [];
  if (head) {
    addInitializers(proto, [makeInt64Tensor('tsinfer_c_hidden_shape', [2], [-1, head.hiddenSize])]);
    const mm = head.bias ? 'tsinfer_last_logits_nobias' : raw;
    nodes.push(
      makeNode(
        'Reshape',
        [head.hidden, 'tsinfer_c_hidden_shape'],
        ['tsinfer_hidden_flat'],
        {},
        { name: 'tsinfer_reshape' },
      ),
      makeNode(
        'Gather',
        ['tsinfer_hidden_flat', AUG.logitRows],
        ['tsinfer_hidden_last'],
        { axis: 0 },
        { name: 'tsinfer_gather_rows' },
      ),
      makeNode('MatMul', ['tsinfer_hidden_last', head.weight], [mm], {}, { name: 'tsinfer_lm_head' }),
    );
    if (head.bias) nodes.push(makeNode('Add', [mm, head.bias], [raw], {}, { name: 'tsinfer_lm_head_bias' }));
  } else {
    addInitializers(proto, [makeInt64Tensor('tsinfer_c_flat_shape', [2], [-1, V])]);
    nodes.push(
      makeNode(
        'Reshape',
        [spec.io.logits, 'tsinfer_c_flat_shape'],
        ['tsinfer_logits_flat'],
        {},
        { name: 'tsinfer_reshape' },
      ),
      makeNode(
        'Gather',
        ['tsinfer_logits_flat', AUG.logitRows],
        [raw],
        { axis: 0 },
        { name: 'tsinfer_gather_rows' },
      ),
    );
  }
  if (fp16)
    nodes.push(makeNode('Cast', [raw], [AUG.lastLogits], { to: DataType.FLOAT }, { name: 'tsinfer_cast' }));
  nodes.push(
    makeNode('ArgMax', [AUG.lastLogits], [AUG.argmax], { axis: 1, keepdims: 0 }, { name: 'tsinfer_argmax' }),
    makeNode(
      'TopK',
      [AUG.lastLogits, 'tsinfer_c_topk'],
      [AUG.topkValues, AUG.topkIndices],
      { axis: 1 },
      { name: 'tsinfer_topk' },
    ),
    makeNode(
      'Expand',
      [AUG.kvIndex, 'tsinfer_c_kv_expand'],
      ['tsinfer_kv_index_full'],
      {},
      { name: 'tsinfer_kv_expand' },
    ),
  );
  const kvType = fp16 ? DataType.FLOAT16 : DataType.FLOAT;
  const outs = [
    makeValueInfo(AUG.lastLogits, DataType.FLOAT, null),
    makeValueInfo(AUG.argmax, DataType.INT64, null),
    makeValueInfo(AUG.topkValues, DataType.FLOAT, null),
    makeValueInfo(AUG.topkIndices, DataType.INT64, null),
  ];
  for (let i = 0; i < spec.numLayers; i++) {
    for (const [src, dst] of [
      [spec.io.presentKeys[i] as string, AUG.newKey(i)],
      [spec.io.presentValues[i] as string, AUG.newValue(i)],
    ] as const) {
      nodes.push(
        makeNode(
          'GatherElements',
          [src, 'tsinfer_kv_index_full'],
          [dst],
          { axis: 2 },
          { name: `tsinfer_${dst}` },
        ),
      );
      outs.push(makeValueInfo(dst, kvType, null));
    }
  }
  addNodes(proto, nodes);
  addOutputs(proto, outs);
  if (head) {
    // Nothing reads the full logits any more: drop the output and the original LM head node.
    removeOutputs(proto, [spec.io.logits]);
    const dropped = new Set(head.nodes);
    graph.node = (graph.node ?? []).filter((n) => !dropped.has(n));
  }
  return { topK, lastPositionLmHead: head !== null };
}
