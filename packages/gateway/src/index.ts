/**
 * @tsinfer/gateway: `tsinfer gateway`, one endpoint in front of several
 * tsinfer (or SGLang) servers. See docs/gateway.md.
 */
export {
  BREAKER_STATE_CODE,
  type BreakerPermit,
  type BreakerState,
  CircuitBreaker,
} from './circuit-breaker.js';
export {
  addGatewayOptions,
  configFromFlags,
  GATEWAY_FLAGS,
  type GatewayFlagDef,
  registerGateway,
  startGateway,
} from './cli.js';
export {
  type CacheAwareConfig,
  type CircuitBreakerConfig,
  DEFAULTS,
  type GatewayConfig,
  type GatewayConfigInput,
  type HealthCheckConfig,
  LOAD_SOURCES,
  type LoadMonitorConfig,
  type LoadSource,
  normalizeWorkerUrl,
  POLICIES,
  type PolicyName,
  type RetryConfig,
  resolveConfig,
} from './config.js';
export { GatewayError, toErrorResponse } from './errors.js';
export {
  estimateRequestTokens,
  loadTokenCounter,
  requestText,
  type TokenCounter,
  wordCountEstimate,
} from './estimate.js';
export {
  createGateway,
  type GatewayApp,
  type GatewayOptions,
  type GatewayRuntime,
  PROXY_ROUTES,
} from './gateway.js';
export { type PolledLoad, parseLoadsJson, parseMetricsLoad, USED_TOKENS_METRICS } from './load-parse.js';
export { GatewayMetrics } from './metrics.js';
export { HealthChecker, LoadMonitor } from './monitor.js';
export {
  CacheAwarePolicy,
  createPolicy,
  type Policy,
  PowerOfTwoPolicy,
  RandomPolicy,
  RoundRobinPolicy,
} from './policies/index.js';
export { PrefixTree } from './policies/prefix-tree.js';
export { backoffMs, isRetryableStatus, RETRYABLE_STATUSES, realSleep, type SleepFn } from './retry.js';
export { type Pick, Router } from './router.js';
export { type InflightTicket, type KnownLoad, selectDpRank, Worker } from './worker.js';
