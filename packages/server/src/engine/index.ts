export { createEngine, ENGINE_VERSION, LocalEngine } from './engine.js';
export {
  DEFAULT_COLLECTIVE_TIMEOUT_MS,
  ENGINE_FLAGS,
  type EngineConfig,
  type EngineDevice,
  type EngineFlagDef,
  type EngineOptions,
  engineOptionsFromFlags,
  type FaultInjection,
  resolveEngineOptions,
} from './options.js';
export { ByteEngineTokenizer, type EngineTokenizer } from './tokenizer.js';
export type {
  Engine,
  EngineHealth,
  EngineInfo,
  EngineRequestCounts,
  GenerateEvent,
  GenerateRequest,
  RankStats,
} from './types.js';
