export * from './calibrate/index.js';
export * from './contract.js';
export * from './execution/index.js';
export * from './kv/index.js';
export * from './model/index.js';
export {
  type BuildModelOptions,
  type BuiltModel,
  buildModel,
  isPresetName,
  type ModelShape,
  PRESETS,
  type PresetName,
  parameterCount,
} from './model-builder/index.js';
export * from './native/index.js';
export * from './sampling/index.js';
export * from './sim/index.js';
export * from './tokenizer/index.js';
export * from './worker/index.js';
