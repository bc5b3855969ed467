/**
 * The gateway's options and their one set of defaults (SGLang's router has
 * several that disagree, flaw F-19; these are the ones tsinfer documents in
 * docs/gateway.md, and `DEFAULTS` is the only place they are written down in
 * code). Times are seconds in flags and milliseconds in options.
 */
import { InvalidConfigError } from '@tsinfer/core';

export const POLICIES = ['round_robin', 'random', 'power_of_two', 'cache_aware'] as const;
export type PolicyName = (typeof POLICIES)[number];

export const LOAD_SOURCES = ['auto', 'metrics', 'loads'] as const;
export type LoadSource = (typeof LOAD_SOURCES)[number];

export interface HealthCheckConfig {
  /** Probe period (ms). */
  intervalMs: number;
  /** Per-probe timeout (ms). */
  timeoutMs: number;
  /** Path probed with GET; 2xx is a success. */
  endpoint: string;
  /** Consecutive failed probes that mark a healthy worker unhealthy. */
  failureThreshold: number;
  /** Consecutive successful probes that mark an unhealthy worker healthy. */
  successThreshold: number;
}

export interface CircuitBreakerConfig {
  enabled: boolean;
  /** Failures (each within `windowMs` of the previous) that open a closed breaker. */
  failureThreshold: number;
  /** Successful probes in half-open that close it. */
  successThreshold: number;
  /** Time an open breaker waits before it lets one probe through (ms). */
  timeoutMs: number;
  /** A failure more than this long after the previous one starts the count again (ms). */
  windowMs: number;
}

export interface RetryConfig {
  enabled: boolean;
  /** Retries after the first attempt (so attempts = maxRetries + 1). */
  maxRetries: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  multiplier: number;
  /** The delay is multiplied by 1 + uniform[-jitter, +jitter]; in [0, 1]. */
  jitter: number;
}

export interface CacheAwareConfig {
  /** Prefix match rate above which the matched worker is used. */
  cacheThreshold: number;
  /** Imbalance when max - min in-flight requests exceeds this ... */
  balanceAbsThreshold: number;
  /** ... and max > min × this. */
  balanceRelThreshold: number;
  /** Period of the tree's LRU eviction (ms). */
  evictionIntervalMs: number;
  /** Characters each worker may hold in the prefix tree before LRU eviction. */
  maxTreeSize: number;
}

export interface LoadMonitorConfig {
  /** Poll period (ms). */
  intervalMs: number;
  /** A worker's polled load older than this is unknown again (ms). */
  staleAfterMs: number;
  /** Per-poll timeout (ms). */
  timeoutMs: number;
  /** Where per-rank used tokens are read. */
  source: LoadSource;
}

export interface GatewayConfig {
  workerUrls: string[];
  host: string;
  port: number;
  policy: PolicyName;
  dpMinimumTokensScheduler: boolean;
  /** A model directory whose tokenizer.json gives exact token estimates; null: word-count estimate. */
  tokenizerPath: string | null;
  load: LoadMonitorConfig;
  health: HealthCheckConfig;
  circuitBreaker: CircuitBreakerConfig;
  retry: RetryConfig;
  cacheAware: CacheAwareConfig;
  /** Whole-request limit per attempt, streaming included (ms). */
  requestTimeoutMs: number;
  /** TCP connect limit to a worker (ms). */
  connectTimeoutMs: number;
  /** Sent as `Authorization: Bearer` on the gateway's own calls (health, loads, models). */
  workerApiKey: string | null;
  /** Seed of the RNG behind random, power_of_two and retry jitter. */
  seed: number;
  logLevel: string;
}

/** The one set of defaults (docs/gateway.md lists the same values; a test checks). */
export const DEFAULTS: Readonly<GatewayConfig> = Object.freeze({
  workerUrls: [],
  host: '127.0.0.1',
  port: 30080,
  policy: 'cache_aware',
  dpMinimumTokensScheduler: false,
  tokenizerPath: null,
  load: { intervalMs: 1000, staleAfterMs: 5000, timeoutMs: 5000, source: 'auto' },
  health: {
    intervalMs: 10_000,
    timeoutMs: 5000,
    endpoint: '/health',
    failureThreshold: 3,
    successThreshold: 2,
  },
  circuitBreaker: {
    enabled: true,
    failureThreshold: 5,
    successThreshold: 2,
    timeoutMs: 30_000,
    windowMs: 60_000,
  },
  retry: {
    enabled: true,
    maxRetries: 4,
    initialBackoffMs: 50,
    maxBackoffMs: 5000,
    multiplier: 2,
    jitter: 0.1,
  },
  cacheAware: {
    cacheThreshold: 0.3,
    balanceAbsThreshold: 64,
    balanceRelThreshold: 1.5,
    evictionIntervalMs: 120_000,
    maxTreeSize: 2 ** 26,
  },
  requestTimeoutMs: 1_800_000,
  connectTimeoutMs: 5000,
  workerApiKey: null,
  seed: 0,
  logLevel: 'info',
} satisfies GatewayConfig);

/** A partial config: every field optional, nested objects merged over `DEFAULTS`. */
export type GatewayConfigInput = Partial<
  Omit<GatewayConfig, 'load' | 'health' | 'circuitBreaker' | 'retry' | 'cacheAware'>
> & {
  load?: Partial<LoadMonitorConfig>;
  health?: Partial<HealthCheckConfig>;
  circuitBreaker?: Partial<CircuitBreakerConfig>;
  retry?: Partial<RetryConfig>;
  cacheAware?: Partial<CacheAwareConfig>;
};

function check(ok: boolean, flag: string, message: string): void {
  if (!ok) throw new InvalidConfigError(flag, message);
}

const isInt = (v: number, min: number): boolean => Number.isInteger(v) && v >= min;
const isNum = (v: number, min: number): boolean => Number.isFinite(v) && v >= min;

/** Normalises a worker URL: http(s) only, no trailing slash, no path/query. */
export function normalizeWorkerUrl(raw: string, flag = '--worker-urls'): string {
  let u: URL;
  try {
    u = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new InvalidConfigError(flag, `not a URL: ${JSON.stringify(raw)}`);
  }
  check(u.protocol === 'http:' || u.protocol === 'https:', flag, `must be http:// or https://; got ${raw}`);
  check(u.search === '' && u.hash === '', flag, `must not have a query or fragment; got ${raw}`);
  const path = u.pathname.replace(/\/+$/, '');
  return `${u.protocol}//${u.host}${path}`;
}

/** Merges `input` over `DEFAULTS` and validates every value. */
export function resolveConfig(input: GatewayConfigInput = {}): GatewayConfig {
  const d = DEFAULTS;
  const c: GatewayConfig = {
    ...d,
    ...input,
    workerUrls: [...(input.workerUrls ?? d.workerUrls)],
    load: { ...d.load, ...input.load },
    health: { ...d.health, ...input.health },
    circuitBreaker: { ...d.circuitBreaker, ...input.circuitBreaker },
    retry: { ...d.retry, ...input.retry },
    cacheAware: { ...d.cacheAware, ...input.cacheAware },
  };
  c.workerUrls = [...new Set(c.workerUrls.map((u) => normalizeWorkerUrl(u)))];
  check(isInt(c.port, 0) && c.port <= 65535, '--port', `must be an integer in [0, 65535]; got ${c.port}`);
  check(
    (POLICIES as readonly string[]).includes(c.policy),
    '--policy',
    `must be one of ${POLICIES.join(', ')}; got ${c.policy}`,
  );
  check(
    (LOAD_SOURCES as readonly string[]).includes(c.load.source),
    '--worker-load-source',
    `must be one of ${LOAD_SOURCES.join(', ')}; got ${c.load.source}`,
  );
  check(
    isNum(c.load.intervalMs, 1),
    '--worker-load-check-interval',
    `must be > 0 s; got ${c.load.intervalMs / 1000}`,
  );
  check(
    isNum(c.load.staleAfterMs, c.load.intervalMs),
    '--worker-load-stale-after',
    `must be >= --worker-load-check-interval (${c.load.intervalMs / 1000} s); got ${c.load.staleAfterMs / 1000}`,
  );
  check(isNum(c.load.timeoutMs, 1), '--worker-load-timeout', `must be > 0 s; got ${c.load.timeoutMs / 1000}`);
  check(isNum(c.health.intervalMs, 1), '--health-check-interval-secs', 'must be > 0');
  check(isNum(c.health.timeoutMs, 1), '--health-check-timeout-secs', 'must be > 0');
  check(
    c.health.endpoint.startsWith('/'),
    '--health-check-endpoint',
    `must start with /; got ${c.health.endpoint}`,
  );
  check(isInt(c.health.failureThreshold, 1), '--health-failure-threshold', 'must be an integer >= 1');
  check(isInt(c.health.successThreshold, 1), '--health-success-threshold', 'must be an integer >= 1');
  check(isInt(c.circuitBreaker.failureThreshold, 1), '--cb-failure-threshold', 'must be an integer >= 1');
  check(isInt(c.circuitBreaker.successThreshold, 1), '--cb-success-threshold', 'must be an integer >= 1');
  check(isNum(c.circuitBreaker.timeoutMs, 0), '--cb-timeout-duration-secs', 'must be >= 0');
  check(isNum(c.circuitBreaker.windowMs, 1), '--cb-window-duration-secs', 'must be > 0');
  check(
    isInt(c.retry.maxRetries, 0),
    '--retry-max-retries',
    `must be an integer >= 0; got ${c.retry.maxRetries}`,
  );
  check(isNum(c.retry.initialBackoffMs, 0), '--retry-initial-backoff-ms', 'must be >= 0');
  check(
    isNum(c.retry.maxBackoffMs, c.retry.initialBackoffMs),
    '--retry-max-backoff-ms',
    'must be >= --retry-initial-backoff-ms',
  );
  check(isNum(c.retry.multiplier, 1), '--retry-backoff-multiplier', 'must be >= 1');
  check(isNum(c.retry.jitter, 0) && c.retry.jitter <= 1, '--retry-jitter-factor', 'must be in [0, 1]');
  const ca = c.cacheAware;
  check(isNum(ca.cacheThreshold, 0) && ca.cacheThreshold <= 1, '--cache-threshold', 'must be in [0, 1]');
  check(isNum(ca.balanceAbsThreshold, 0), '--balance-abs-threshold', 'must be >= 0');
  check(isNum(ca.balanceRelThreshold, 1), '--balance-rel-threshold', 'must be >= 1');
  check(isNum(ca.evictionIntervalMs, 1), '--eviction-interval-secs', 'must be > 0');
  check(isInt(ca.maxTreeSize, 1), '--max-tree-size', 'must be an integer >= 1');
  check(isNum(c.requestTimeoutMs, 1), '--request-timeout-secs', 'must be > 0');
  check(isNum(c.connectTimeoutMs, 1), '--connect-timeout-secs', 'must be > 0');
  check(Number.isFinite(c.seed), '--seed', 'must be a number');
  return c;
}
