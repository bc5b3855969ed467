export { InvalidModelError } from './errors.js';
export { ExternalDataWriter } from './external-writer.js';
export { float16BitsToFloat32, float32ToFloat16Bits, fromFloat16Array, toFloat16Array } from './fp16.js';
export {
  type AttributeValue,
  type Dim,
  makeAttribute,
  makeFloatTensor,
  makeInt64Tensor,
  makeNode,
  makeTensor,
  makeValueInfo,
} from './graph.js';
export {
  addInitializers,
  addNodes,
  addOutputs,
  type ExternalLocation,
  externalDataSessionOptions,
  externalLocation,
  findInitializer,
  findNode,
  findValueInfo,
  inlineExternalData,
  insertNodesBefore,
  isExternal,
  type LoadModelOptions,
  loadModel,
  parseModel,
  readFloatTensor,
  readTensorBytes,
  removeOutputs,
  resolveExternalPath,
  saveModel,
  serializeModel,
  tensorByteLength,
  valueInfoType,
} from './model-io.js';
export type {
  IAttributeProto,
  IGraphProto,
  IModelProto,
  INodeProto,
  ITensorProto,
  IValueInfoProto,
  ModelProto,
} from './proto.js';
export { DataType, type DataTypeCode, elementSize, onnx, toNumber } from './proto.js';
