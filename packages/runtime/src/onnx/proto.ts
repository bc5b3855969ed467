/**
 * The ONNX protobuf classes (onnx-proto 8.0.1, protobufjs 6, ONNX IR 8) and
 * a few shared names. onnx-proto is CommonJS: its module object holds the
 * `onnx` namespace.
 */

import type { onnx as OnnxTypes } from 'onnx-proto';
import onnxProto from 'onnx-proto';

/** The generated classes: `onnx.ModelProto`, `onnx.TensorProto`, ... */
export const onnx = onnxProto.onnx;

export type ModelProto = OnnxTypes.ModelProto;
export type IModelProto = OnnxTypes.IModelProto;
export type IGraphProto = OnnxTypes.IGraphProto;
export type INodeProto = OnnxTypes.INodeProto;
export type ITensorProto = OnnxTypes.ITensorProto;
export type IValueInfoProto = OnnxTypes.IValueInfoProto;
export type IAttributeProto = OnnxTypes.IAttributeProto;

/** `TensorProto.DataType` values used here. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  BFLOAT16: 16,
} as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

/** Bytes per element of the fixed-size element types (`undefined` for strings and unknown codes). */
export function elementSize(dataType: number): number | undefined {
  switch (dataType) {
    case 1:
    case 6:
    case 12:
      return 4;
    case 2:
    case 3:
    case 9:
      return 1;
    case 4:
    case 5:
    case 10:
    case 16:
      return 2;
    case 7:
    case 11:
    case 13:
      return 8;
    default:
      return undefined;
  }
}

/** protobufjs decodes int64 fields as `Long` objects (or numbers); this makes them numbers. */
export function toNumber(v: number | { toNumber(): number } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}
