/**
 * Flags of the DP controller and of load snapshots. Same flag-table shape as
 * the scheduler's (`SCHEDULER_FLAGS`), so a CLI and docs can be generated
 * from it; the server wires them.
 */
import { InvalidConfigError } from '@tsinfer/core';
import {
  DEFAULT_LOAD_SNAPSHOT_HEARTBEAT_MS,
  DEFAULT_LOAD_SNAPSHOT_PUBLISH_INTERVAL,
} from '../load-snapshot/cadence.js';

/** `--load-balance-method` choices. SGLang's `follow_bootstrap_room` (PD only) is not offered. */
export const LOAD_BALANCE_METHODS = [
  'auto',
  'round_robin',
  'total_requests',
  'total_tokens',
  'minimum_tokens',
] as const;
export type LoadBalanceMethod = (typeof LOAD_BALANCE_METHODS)[number];
export type ResolvedLoadBalanceMethod = Exclude<LoadBalanceMethod, 'auto'>;

/** Default staleness limit: a rank whose newest snapshot is older is out of dispatch. */
export const DEFAULT_LOAD_SNAPSHOT_STALE_MS = 30_000;
/** SGLang's refresh throttle (`refresh_load_budget`, 0.020 s). */
export const DEFAULT_DP_REFRESH_INTERVAL_MS = 20;

/**
 * Parses a method name case-insensitively (SGLang upper-cases it). Throws
 * InvalidConfigError naming the flag for anything else.
 */
export function parseLoadBalanceMethod(value: string): LoadBalanceMethod {
  const v = String(value).toLowerCase();
  if ((LOAD_BALANCE_METHODS as readonly string[]).includes(v)) return v as LoadBalanceMethod;
  throw new InvalidConfigError(
    '--load-balance-method',
    `invalid load balance method ${JSON.stringify(value)}; expected one of ${LOAD_BALANCE_METHODS.join(', ')}`,
  );
}

/** `auto` → `minimum_tokens` when dpSize > 1, `round_robin` when 1. */
export function resolveLoadBalanceMethod(
  method: LoadBalanceMethod,
  dpSize: number,
): ResolvedLoadBalanceMethod {
  if (method !== 'auto') return method;
  return dpSize > 1 ? 'minimum_tokens' : 'round_robin';
}

export interface LoadBalanceConfig {
  /** `--load-balance-method`. */
  loadBalanceMethod: LoadBalanceMethod;
  /** `--load-snapshot-publish-interval`: decode passes between snapshot publishes (max(1, v)). */
  loadSnapshotPublishInterval: number;
  /** `--load-snapshot-heartbeat-ms`: longest time between two publishes of a live rank. */
  loadSnapshotHeartbeatMs: number;
  /** `--load-snapshot-stale-ms`: a rank whose newest snapshot is older is out of dispatch. */
  loadSnapshotStaleMs: number;
}

export const DEFAULT_LOAD_BALANCE_CONFIG: Readonly<LoadBalanceConfig> = Object.freeze({
  loadBalanceMethod: 'auto',
  loadSnapshotPublishInterval: DEFAULT_LOAD_SNAPSHOT_PUBLISH_INTERVAL,
  loadSnapshotHeartbeatMs: DEFAULT_LOAD_SNAPSHOT_HEARTBEAT_MS,
  loadSnapshotStaleMs: DEFAULT_LOAD_SNAPSHOT_STALE_MS,
});

export interface LoadBalanceFlagDef {
  readonly name: string;
  readonly flag: string;
  readonly key: keyof LoadBalanceConfig;
  readonly type: 'integer' | 'number' | 'enum';
  readonly default: number | string;
  readonly min?: number;
  readonly choices?: readonly string[];
  readonly range: string;
  readonly help: string;
}

export const LOAD_BALANCE_FLAGS: readonly LoadBalanceFlagDef[] = Object.freeze([
  {
    name: 'load-balance-method',
    flag: '--load-balance-method',
    key: 'loadBalanceMethod',
    type: 'enum',
    default: 'auto',
    choices: LOAD_BALANCE_METHODS,
    range: `one of ${LOAD_BALANCE_METHODS.join(', ')} (case-insensitive)`,
    help: 'How the DP controller picks a rank for each request. auto: minimum_tokens when --dp-size > 1, else round_robin. See docs/load-balancing.md.',
  },
  {
    name: 'load-snapshot-publish-interval',
    flag: '--load-snapshot-publish-interval',
    key: 'loadSnapshotPublishInterval',
    type: 'integer',
    default: DEFAULT_LOAD_SNAPSHOT_PUBLISH_INTERVAL,
    range: 'an integer (values below 1 act as 1)',
    help: 'A rank publishes its load snapshot after every prefill pass, on going idle, and every this many decode passes.',
  },
  {
    name: 'load-snapshot-heartbeat-ms',
    flag: '--load-snapshot-heartbeat-ms',
    key: 'loadSnapshotHeartbeatMs',
    type: 'number',
    default: DEFAULT_LOAD_SNAPSHOT_HEARTBEAT_MS,
    min: 1,
    range: 'a number >= 1',
    help: 'A live rank publishes at least this often (idle or slow decode), so that its snapshot never looks stale.',
  },
  {
    name: 'load-snapshot-stale-ms',
    flag: '--load-snapshot-stale-ms',
    key: 'loadSnapshotStaleMs',
    type: 'number',
    default: DEFAULT_LOAD_SNAPSHOT_STALE_MS,
    min: 1,
    range: 'a number >= 1 (Infinity: never)',
    help: 'A rank whose newest load snapshot is older than this (a hung worker, or one forward pass longer than this) is taken out of dispatch until it publishes again.',
  },
]);

/** Fills defaults and validates; throws InvalidConfigError naming the flag. */
export function resolveLoadBalanceConfig(
  partial: Readonly<Partial<LoadBalanceConfig>> = {},
): LoadBalanceConfig {
  const c: LoadBalanceConfig = { ...DEFAULT_LOAD_BALANCE_CONFIG, ...partial };
  c.loadBalanceMethod = parseLoadBalanceMethod(c.loadBalanceMethod);
  if (!Number.isInteger(c.loadSnapshotPublishInterval)) {
    throw new InvalidConfigError(
      '--load-snapshot-publish-interval',
      `must be an integer, got ${c.loadSnapshotPublishInterval}`,
    );
  }
  c.loadSnapshotPublishInterval = Math.max(1, c.loadSnapshotPublishInterval);
  if (!(c.loadSnapshotHeartbeatMs >= 1)) {
    throw new InvalidConfigError(
      '--load-snapshot-heartbeat-ms',
      `must be a number >= 1, got ${c.loadSnapshotHeartbeatMs}`,
    );
  }
  if (!(c.loadSnapshotStaleMs >= 1)) {
    throw new InvalidConfigError(
      '--load-snapshot-stale-ms',
      `must be a number >= 1, got ${c.loadSnapshotStaleMs}`,
    );
  }
  return c;
}
