export { AUG, type AugmentOptions, augmentGraph } from './augment.js';
export { ModelLoadError } from './errors.js';
export {
  type DecoderIo,
  type LoadedModel,
  loadModelDir,
  type ModelDtype,
  type ModelLayout,
  type ModelSpec,
} from './spec.js';
