/**
 * Plain helpers for building ONNX graph pieces with onnx-proto: nodes with
 * attributes, value infos, small tensors.
 */
import {
  DataType,
  type IAttributeProto,
  type INodeProto,
  type ITensorProto,
  type IValueInfoProto,
  onnx,
} from './proto.js';

/**
 * An attribute value. A plain number is an INT when it is an integer and a
 * FLOAT otherwise; wrap a float that happens to be integral as `{ float: 1 }`.
 * A string is a STRING, a number array INTS (`{ floats: [...] }` for FLOATS),
 * `{ tensor }` a TENSOR.
 */
export type AttributeValue =
  | number
  | string
  | readonly number[]
  | { readonly float: number }
  | { readonly floats: readonly number[] }
  | { readonly tensor: ITensorProto };

const A = onnx.AttributeProto.AttributeType;

/** One AttributeProto. */
export function makeAttribute(name: string, value: AttributeValue): IAttributeProto {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: A.INT, i: value } : { name, type: A.FLOAT, f: value };
  }
  if (typeof value === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: A.INTS, ints: [...(value as readonly number[])] };
  if ('float' in value) return { name, type: A.FLOAT, f: value.float };
  if ('floats' in value) return { name, type: A.FLOATS, floats: [...value.floats] };
  if ('tensor' in value) return { name, type: A.TENSOR, t: value.tensor };
  throw new TypeError(`unsupported attribute value for ${name}`);
}

/** One NodeProto. Attributes with value `undefined` are left out. */
export function makeNode(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  attributes: Readonly<Record<string, AttributeValue | undefined>> = {},
  options: { name?: string; domain?: string } = {},
): INodeProto {
  const attribute: IAttributeProto[] = [];
  for (const [k, v] of Object.entries(attributes)) if (v !== undefined) attribute.push(makeAttribute(k, v));
  const node: INodeProto = { opType, input: [...inputs], output: [...outputs], attribute };
  if (options.name !== undefined) node.name = options.name;
  if (options.domain !== undefined && options.domain !== '') node.domain = options.domain;
  return node;
}

/** A dimension: a fixed size, a symbolic name, or `null` for unknown. */
export type Dim = number | string | null;

/** A tensor ValueInfoProto; `shape` null leaves the rank unknown. */
export function makeValueInfo(name: string, elemType: number, shape: readonly Dim[] | null): IValueInfoProto {
  const tensorType: { elemType: number; shape?: { dim: { dimValue?: number; dimParam?: string }[] } } = {
    elemType,
  };
  if (shape !== null) {
    tensorType.shape = {
      dim: shape.map((d) =>
        typeof d === 'number' ? { dimValue: d } : typeof d === 'string' ? { dimParam: d } : {},
      ),
    };
  }
  return { name, type: { tensorType } };
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/**
 * A tensor with its data in `raw_data` (little-endian, as ONNX requires; the
 * machines this runs on are little-endian). The bytes are copied.
 */
export function makeTensor(
  name: string,
  dataType: number,
  dims: readonly number[],
  data: Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Float64Array,
): ITensorProto {
  return { name, dataType, dims: [...dims], rawData: bytesOf(data).slice() };
}

/** An int64 tensor from numbers. */
export function makeInt64Tensor(
  name: string,
  dims: readonly number[],
  values: readonly number[],
): ITensorProto {
  return makeTensor(
    name,
    DataType.INT64,
    dims,
    BigInt64Array.from(values, (v) => BigInt(v)),
  );
}

/** A float32 tensor. */
export function makeFloatTensor(
  name: string,
  dims: readonly number[],
  values: ArrayLike<number>,
): ITensorProto {
  return makeTensor(name, DataType.FLOAT, dims, Float32Array.from(values));
}
