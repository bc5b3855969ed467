export { NewTokenRatio, ratioAfterRetraction, runningReservation } from './budget.js';
export { type GroupGather, InProcessGatherGroup, PrefetchedAllGather } from './collective.js';
export {
  DEFAULT_SCHEDULER_CONFIG,
  type NewTokenRatioParams,
  newTokenRatioParams,
  parseSchedulerFlags,
  rankLimits,
  resolveSchedulerConfig,
  SCHEDULE_POLICIES,
  SCHEDULER_FLAGS,
  type SchedulePolicyName,
  type SchedulerConfig,
  type SchedulerFlagDef,
  type SchedulerFlagType,
} from './config.js';
export * from './dispatch/index.js';
export { InvalidRequestError, SchedulerStateError } from './errors.js';
export * from './load-snapshot/index.js';
export { ADD_CONTINUE, ADD_NO_TOKEN, ADD_OTHER, type AddResult, PrefillAdder } from './prefill-adder.js';
export { LPM_MAX_QUEUE, type PrefixMatcher, WaitingQueue } from './queue.js';
export {
  type FinishReason,
  Request,
  type RequestInput,
  type RequestPhase,
  type StopStringMatcher,
} from './request.js';
export { LOCKSTEP_ROW_WIDTH, type OutputSink, Scheduler, type SchedulerOptions } from './scheduler.js';
export {
  createPassStats,
  type DelayerPassOutcome,
  type ForwardMode,
  type PassStats,
  ThroughputWindow,
} from './stats.js';
export { type RankLoopEnv, runRankLoop, VirtualCluster, type VirtualClusterOptions } from './virtual.js';
export {
  createSharedWakeInit,
  LocalWake,
  SharedWake,
  type SharedWakeInit,
  type WakeSignal,
} from './wake.js';
