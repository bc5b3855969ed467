export {
  COST_TERMS,
  type CostModel,
  type CostTerm,
  costOfFeatures,
  type StepFeatures,
  stepCostMs,
  stepFeatures,
  ZERO_COST,
} from './cost.js';
export { InvalidBatchError, InvalidProfileError, KvCapacityError } from './errors.js';
export {
  BUILTIN_PROFILE_DIR,
  loadSimProfile,
  type ModelPath,
  parseModelPath,
  SIM_PROFILE_FORMAT,
  type SimGeneration,
  type SimModelFacts,
  type SimProfile,
  serializeSimProfile,
  validateSimProfile,
} from './profile.js';
export {
  createRealTimeWait,
  openSimRunner,
  type RealTimeWaitOptions,
  realTimeWait,
  SimRunner,
  type SimRunnerOptions,
  type WaitFn,
} from './runner.js';
export { flushMicrotasks, VirtualTimeline } from './timeline.js';
