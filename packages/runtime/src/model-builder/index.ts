export {
  type BuildModelOptions,
  type BuiltModel,
  buildModel,
  genaiConfig,
  generationConfig,
  hfConfig,
  type Layout,
  type TokenIds,
  type WeightDtype,
} from './build.js';
export {
  isPresetName,
  type ModelShape,
  PRESETS,
  type PresetName,
  parameterCount,
  resolveShape,
} from './presets.js';
