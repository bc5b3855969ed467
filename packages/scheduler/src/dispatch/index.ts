export {
  DEFAULT_DP_REFRESH_INTERVAL_MS,
  DEFAULT_LOAD_BALANCE_CONFIG,
  DEFAULT_LOAD_SNAPSHOT_STALE_MS,
  LOAD_BALANCE_FLAGS,
  LOAD_BALANCE_METHODS,
  type LoadBalanceConfig,
  type LoadBalanceFlagDef,
  type LoadBalanceMethod,
  parseLoadBalanceMethod,
  type ResolvedLoadBalanceMethod,
  resolveLoadBalanceConfig,
  resolveLoadBalanceMethod,
} from './config.js';
export { DpDispatcher, type DpDispatcherOptions, type LoadSource } from './dispatcher.js';
export { InvalidDpRankError, NoLiveRankError, RankFailedError } from './errors.js';
