export * from './collective/all-gather.js';
export { LocalAllGather, type LocalAllGatherOptions } from './collective/local.js';
export {
  abandonSharedAllGather,
  createSharedAllGatherInit,
  MAX_SHARED_WORLD_SIZE,
  type SharedAllGatherInit,
  SharedMemoryAllGather,
} from './collective/shared-memory.js';
export {
  DEFAULT_PREFILL_DELAYER_CONFIG,
  type DelayerFlagDef,
  type DelayerFlagType,
  type DelayerParallelConfig,
  MAX_PREFILL_BS_WINDOW_LIMIT,
  PREFILL_DELAYER_FLAGS,
  type PrefillDelayerConfig,
  parsePrefillDelayerFlags,
  toDecisionConfig,
  validatePrefillDelayerConfig,
} from './config.js';
export {
  createDecisionRecord,
  DEFAULT_MAX_DELAY_MS,
  type DecisionConfig,
  type DecisionRecord,
  type DelayEpisode,
  type DelayerReason,
  type DelayerState,
  decidePrefill,
  decidePrefillInto,
  type InputEstimation,
  type PrefillDecision,
} from './decide.js';
export { MaxPrefillBsTracker } from './max-prefill-bs.js';
export {
  BucketHistogram,
  DEFAULT_FORWARD_PASSES_BUCKETS,
  DEFAULT_WAIT_SECONDS_BUCKETS,
  formatPrometheusText,
  forwardPassesBuckets,
  type HistogramSnapshot,
  METRIC_OUTCOMES_TOTAL,
  METRIC_WAIT_FORWARD_PASSES,
  METRIC_WAIT_SECONDS,
  type OutcomeLabels,
  PrefillDelayerMetrics,
  type PrefillDelayerMetricsOptions,
  type PrefillDelayerMetricsSnapshot,
  waitSecondsBuckets,
} from './metrics.js';
export {
  type DeadlineClock,
  DelayerProtocolError,
  type LastNegotiation,
  type NegotiateInput,
  PrefillDelayer,
  type PrefillDelayerOptions,
  type PrefillDelayerPass,
} from './prefill-delayer.js';
export {
  COL_MAX_PREFILL_BS,
  COL_PREFILLABLE,
  COL_RUNNING_BATCH,
  COL_TOKEN_WATERMARK_FORCE_ALLOW,
  COL_WAITING_QUEUE_LEN,
  DELAYER_ROW_WIDTH,
  type DelayerRowInput,
  encodeDelayerRow,
  encodeDelayerRowInto,
  tokenWatermarkBit,
} from './row.js';
