/**
 * Reading, editing and writing ONNX models, including external data
 * (`model.onnx` + `model.onnx.data`, ONNX's `external_data` location /
 * offset / length entries, resolved relative to the model's directory).
 *
 * Typical edit before creating a session (e.g. append an ArgMax over the
 * last position's logits):
 *
 * ```ts
 * const model = await loadModel(path);                 // external data stays on disk
 * addNodes(model, [makeNode('ArgMax', ['logits'], ['next'], { axis: -1 })]);
 * addOutputs(model, [makeValueInfo('next', DataType.INT64, null)]);
 * const bytes = serializeModel(model);
 * const session = await ort.InferenceSession.create(bytes, externalDataSessionOptions(path));
 * ```
 *
 * Small models can instead be loaded with `{ externalData: 'inline' }`, which
 * reads the data into the proto so the bytes stand alone (protobuf caps one
 * message at 2 GiB, so only for models well under that).
 */
import { open, readFile, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { InvalidModelError } from './errors.js';
import { fromFloat16Array } from './fp16.js';
import {
  DataType,
  elementSize,
  type IModelProto,
  type INodeProto,
  type ITensorProto,
  type IValueInfoProto,
  type ModelProto,
  onnx,
  toNumber,
} from './proto.js';

export interface LoadModelOptions {
  /**
   * `reference` (default): keep external data on disk, references intact.
   * `inline`: read every external tensor into `raw_data` so the model stands alone.
   */
  externalData?: 'reference' | 'inline';
}

/** Parses a ModelProto from bytes. */
export function parseModel(bytes: Uint8Array): ModelProto {
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new InvalidModelError(`not an ONNX model: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads and parses `path`. With `externalData: 'inline'` external tensors are loaded from beside the model. */
export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<ModelProto> {
  const model = parseModel(await readFile(path));
  if (options.externalData === 'inline') await inlineExternalData(model, dirname(path));
  return model;
}

/** Encodes a model to bytes. */
export function serializeModel(model: IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Writes a model's proto to `path` (external data files are not touched). */
export async function saveModel(model: IModelProto, path: string): Promise<void> {
  await writeFile(path, serializeModel(model));
}

/** Where one external tensor's bytes are. */
export interface ExternalLocation {
  location: string;
  offset: number;
  length: number;
}

/** True when a tensor keeps its data in an external file. */
export function isExternal(tensor: ITensorProto): boolean {
  return tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL;
}

/** The external location of a tensor (throws when the entries are malformed). */
export function externalLocation(tensor: ITensorProto): ExternalLocation {
  let location: string | undefined;
  let offset = 0;
  let length = -1;
  for (const e of tensor.externalData ?? []) {
    if (e.key === 'location') location = e.value ?? undefined;
    else if (e.key === 'offset') offset = Number(e.value);
    else if (e.key === 'length') length = Number(e.value);
  }
  if (location === undefined)
    throw new InvalidModelError(`tensor ${tensor.name}: external data has no location`);
  if (length < 0) length = tensorByteLength(tensor);
  return { location, offset, length };
}

/** Resolves an external location against the model directory, refusing paths that leave it. */
export function resolveExternalPath(baseDir: string, location: string): string {
  const rel = normalize(location);
  if (isAbsolute(rel) || rel === '..' || rel.startsWith(`..${sep}`)) {
    throw new InvalidModelError(`external data location escapes the model directory: ${location}`);
  }
  return join(baseDir, rel);
}

/** Bytes a tensor's data occupies, from its dims and type. */
export function tensorByteLength(tensor: ITensorProto): number {
  const size = elementSize(tensor.dataType ?? 0);
  if (size === undefined)
    throw new InvalidModelError(`tensor ${tensor.name}: unsupported data type ${tensor.dataType}`);
  let n = 1;
  for (const d of tensor.dims ?? []) n *= toNumber(d);
  return n * size;
}

/** Reads every external tensor of `model` into raw_data (files resolved against `baseDir`). */
export async function inlineExternalData(model: IModelProto, baseDir: string): Promise<void> {
  const tensors = initializersOf(model).filter(isExternal);
  const handles = new Map<string, Awaited<ReturnType<typeof open>>>();
  try {
    for (const t of tensors) {
      const loc = externalLocation(t);
      const file = resolveExternalPath(baseDir, loc.location);
      let fh = handles.get(file);
      if (fh === undefined) {
        fh = await open(file, 'r');
        handles.set(file, fh);
      }
      const buf = new Uint8Array(loc.length);
      const { bytesRead } = await fh.read(buf, 0, loc.length, loc.offset);
      if (bytesRead !== loc.length) {
        throw new InvalidModelError(
          `tensor ${t.name}: external data ${loc.location} ends before offset ${loc.offset}+${loc.length}`,
        );
      }
      t.rawData = buf;
      t.externalData = [];
      t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
    }
  } finally {
    for (const fh of handles.values()) await fh.close();
  }
}

function initializersOf(model: IModelProto): ITensorProto[] {
  return model.graph?.initializer ?? [];
}

/** The raw little-endian bytes of a tensor, wherever they are stored. */
export async function readTensorBytes(tensor: ITensorProto, baseDir: string): Promise<Uint8Array> {
  if (isExternal(tensor)) {
    const loc = externalLocation(tensor);
    const fh = await open(resolveExternalPath(baseDir, loc.location), 'r');
    try {
      const buf = new Uint8Array(loc.length);
      const { bytesRead } = await fh.read(buf, 0, loc.length, loc.offset);
      if (bytesRead !== loc.length)
        throw new InvalidModelError(`tensor ${tensor.name}: external data truncated`);
      return buf;
    } finally {
      await fh.close();
    }
  }
  if (tensor.rawData && tensor.rawData.length > 0) return tensor.rawData;
  const dt = tensor.dataType;
  if (dt === DataType.FLOAT && tensor.floatData)
    return new Uint8Array(Float32Array.from(tensor.floatData).buffer);
  if (dt === DataType.INT64 && tensor.int64Data) {
    return new Uint8Array(BigInt64Array.from(tensor.int64Data, (v) => BigInt(toNumber(v))).buffer);
  }
  if (dt === DataType.INT32 && tensor.int32Data)
    return new Uint8Array(Int32Array.from(tensor.int32Data).buffer);
  if (dt === DataType.FLOAT16 && tensor.int32Data)
    return new Uint8Array(Uint16Array.from(tensor.int32Data).buffer);
  if (tensorByteLength(tensor) === 0) return new Uint8Array(0);
  throw new InvalidModelError(`tensor ${tensor.name}: no data`);
}

/** A float tensor's values as float32 (float16 and float64 converted). */
export async function readFloatTensor(tensor: ITensorProto, baseDir: string): Promise<Float32Array> {
  const bytes = await readTensorBytes(tensor, baseDir);
  const copy = bytes.slice();
  switch (tensor.dataType) {
    case DataType.FLOAT:
      return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
    case DataType.FLOAT16:
      return fromFloat16Array(new Uint16Array(copy.buffer, 0, copy.byteLength / 2));
    case DataType.DOUBLE:
      return Float32Array.from(new Float64Array(copy.buffer, 0, copy.byteLength / 8));
    default:
      throw new InvalidModelError(`tensor ${tensor.name}: not a float tensor (type ${tensor.dataType})`);
  }
}

/** The initializer called `name`, or undefined. */
export function findInitializer(model: IModelProto, name: string): ITensorProto | undefined {
  return initializersOf(model).find((t) => t.name === name);
}

/** The node called `name` (node names of built models are documented in docs/models.md), or undefined. */
export function findNode(model: IModelProto, name: string): INodeProto | undefined {
  return model.graph?.node?.find((n) => n.name === name);
}

/**
 * Inserts nodes before the node called `before` (so they may feed it), e.g.
 * a Gather of the last position in front of the LM head.
 */
export function insertNodesBefore(model: IModelProto, before: string, nodes: readonly INodeProto[]): void {
  const graph = requireGraph(model);
  const list = graph.node ?? [];
  const at = list.findIndex((n) => n.name === before);
  if (at < 0) throw new InvalidModelError(`graph has no node ${before}`);
  graph.node = [...list.slice(0, at), ...nodes, ...list.slice(at)];
}

/** Appends nodes to the graph (after the existing ones, which keeps a valid topological order when they read existing values). */
export function addNodes(model: IModelProto, nodes: readonly INodeProto[]): void {
  const graph = requireGraph(model);
  graph.node = [...(graph.node ?? []), ...nodes];
}

/** Appends initializers (e.g. constants for added nodes). */
export function addInitializers(model: IModelProto, tensors: readonly ITensorProto[]): void {
  const graph = requireGraph(model);
  graph.initializer = [...(graph.initializer ?? []), ...tensors];
}

/** Adds graph outputs. */
export function addOutputs(model: IModelProto, outputs: readonly IValueInfoProto[]): void {
  const graph = requireGraph(model);
  graph.output = [...(graph.output ?? []), ...outputs];
}

/** Removes graph outputs by name (e.g. full `logits` once a reduced output replaces it); unknown names are an error. */
export function removeOutputs(model: IModelProto, names: readonly string[]): void {
  const graph = requireGraph(model);
  const have = new Set((graph.output ?? []).map((o) => o.name));
  for (const n of names) if (!have.has(n)) throw new InvalidModelError(`graph has no output ${n}`);
  const drop = new Set(names);
  graph.output = (graph.output ?? []).filter((o) => !drop.has(o.name ?? ''));
}

/** The graph input or output called `name`. */
export function findValueInfo(model: IModelProto, name: string): IValueInfoProto | undefined {
  const g = model.graph;
  return (
    g?.input?.find((v) => v.name === name) ??
    g?.output?.find((v) => v.name === name) ??
    g?.valueInfo?.find((v) => v.name === name)
  );
}

/** Element type and shape (numbers, symbolic names, or null) of a value info. */
export function valueInfoType(info: IValueInfoProto): {
  elemType: number;
  shape: (number | string | null)[] | null;
} {
  const tt = info.type?.tensorType;
  if (!tt) throw new InvalidModelError(`${info.name}: not a tensor`);
  const dims = tt.shape?.dim;
  return {
    elemType: tt.elemType ?? 0,
    shape: dims
      ? dims.map((d) =>
          d.dimValue !== undefined && d.dimValue !== null && toNumber(d.dimValue) !== 0
            ? toNumber(d.dimValue)
            : d.dimParam
              ? d.dimParam
              : null,
        )
      : null,
  };
}

function requireGraph(model: IModelProto) {
  if (!model.graph) throw new InvalidModelError('model has no graph');
  return model.graph;
}

/**
 * Session options that let onnxruntime resolve a model's external data when
 * the session is created from bytes (`InferenceSession.create(bytes, opts)`):
 * the folder the `location` entries are relative to (the original model's
 * directory). Merge with your other options.
 */
export function externalDataSessionOptions(modelPath: string): {
  extra: { session: { model_external_initializers_file_folder_path: string } };
} {
  return { extra: { session: { model_external_initializers_file_folder_path: dirname(modelPath) } } };
}
