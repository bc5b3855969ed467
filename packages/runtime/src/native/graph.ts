/**
 * The native backend loads the same augmented graph as the JS backend
 * (../model/augment.ts: last-position LM head, ArgMax, TopK), minus the
 * "new K/V rows" outputs: its cache is bound in place as past and present,
 * so the rows a run wrote never need to come back. Removing those outputs
 * (their GatherElements nodes, the index input and its Expand) keeps
 * onnxruntime from computing them.
 */
import { AUG } from '../model/augment.js';
import type { ModelSpec } from '../model/spec.js';
import type { ModelProto } from '../onnx/proto.js';

export function stripNewKvOutputs(proto: ModelProto, spec: ModelSpec): void {
  const graph = proto.graph;
  if (!graph) return;
  const drop = new Set<string>();
  for (let i = 0; i < spec.numLayers; i++) drop.add(AUG.newKey(i)).add(AUG.newValue(i));
  graph.output = (graph.output ?? []).filter((o) => !drop.has(o.name ?? ''));
  // The GatherElements nodes writing those outputs, then the Expand feeding only them.
  graph.node = (graph.node ?? []).filter((n) => !(n.output ?? []).some((o) => drop.has(o)));
  const used = new Set<string>();
  for (const n of graph.node) for (const i of n.input ?? []) used.add(i);
  graph.node = graph.node.filter((n) => n.name !== 'tsinfer_kv_expand' || used.has(n.output?.[0] ?? ''));
  used.clear();
  for (const n of graph.node) for (const i of n.input ?? []) used.add(i);
  graph.input = (graph.input ?? []).filter((i) => i.name !== AUG.kvIndex || used.has(AUG.kvIndex));
  graph.initializer = (graph.initializer ?? []).filter(
    (t) => t.name !== 'tsinfer_c_kv_expand' || used.has('tsinfer_c_kv_expand'),
  );
}
