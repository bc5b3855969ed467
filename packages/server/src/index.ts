export { DEFAULT_SAMPLING, type SamplingParams } from '@tsinfer/runtime';
export {
  addServeOptions,
  parseServeFlags,
  renderCliDoc,
  SERVE_FLAGS,
  type ServeConfig,
  type ServeFlagDef,
} from './cli/flags.js';
export { type MakeModelFlags, makeModel } from './cli/make-model.js';
export { defaultModelCacheDir, ensureTinyModel, type StartedServe, startServe } from './cli/serve.js';
export { createEngine, type EngineOptions } from './engine/index.js';
export type {
  Engine,
  EngineHealth,
  EngineInfo,
  GenerateEvent,
  GenerateRequest,
} from './engine/types.js';
export { HttpError, toErrorResponse } from './http/errors.js';
export { ServerMetrics } from './http/metrics.js';
export { TsinferHttp, type TsinferPluginOptions } from './http/plugin.js';
export { createServer, type ServerOptions, type TsinferServer } from './http/server.js';
export type { HttpOptions } from './http/state.js';
