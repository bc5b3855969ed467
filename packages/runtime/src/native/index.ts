export {
  type CreatedRunner,
  createRunner,
  parseRuntimeBackend,
  RUNTIME_BACKENDS,
  type RuntimeBackend,
} from './backend.js';
export { stripNewKvOutputs } from './graph.js';
export {
  loadNativeBackend,
  NATIVE_ORT_VERSION,
  type NativeBinding,
  type NativeEngine,
  type NativeEngineOptions,
  type NativeLoadResult,
  type NativeRunResult,
  type NativeRunSpec,
  NativeUnavailableError,
  nativeAddonPath,
  requireNativeBackend,
} from './loader.js';
export { NativeRunner, type NativeRunnerOptions } from './runner.js';
export { SlotKvStore, type SlotKvStoreOptions } from './slot-store.js';
