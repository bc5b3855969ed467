/**
 * `tsinfer gateway`: the command-line face of `createGateway`. Flag names
 * are SGLang router's where it has the flag (note `--retry-max-retries`
 * counts retries, not attempts; docs/gateway.md). Defaults come from
 * `DEFAULTS` only.
 */
import { InvalidConfigError } from '@tsinfer/core';
import { type Command, Option } from 'commander';
import { DEFAULTS, type GatewayConfigInput, LOAD_SOURCES, type LoadSource, POLICIES } from './config.js';
import { createGateway, type GatewayApp } from './gateway.js';

export interface GatewayFlagDef {
  /** Flag without dashes. */
  readonly name: string;
  readonly value: string | null;
  readonly help: string;
  /** The default as shown in help and docs. */
  readonly default: string;
}

const D = DEFAULTS;
const s = (ms: number): string => String(ms / 1000);

/** Every flag of `tsinfer gateway` (docs/gateway.md has the same table; a test checks). */
export const GATEWAY_FLAGS: readonly GatewayFlagDef[] = [
  {
    name: 'worker-urls',
    value: 'url...',
    help: 'Worker base URLs (tsinfer serve or SGLang), space separated.',
    default: '(none)',
  },
  { name: 'host', value: 'host', help: 'Address to listen on.', default: D.host },
  { name: 'port', value: 'port', help: 'Port to listen on.', default: String(D.port) },
  { name: 'policy', value: 'name', help: `Worker selection: ${POLICIES.join(' | ')}.`, default: D.policy },
  {
    name: 'dp-minimum-tokens-scheduler',
    value: null,
    help: 'Pick the DP rank with the least used + in-flight tokens on the chosen worker and inject routed_dp_rank.',
    default: String(D.dpMinimumTokensScheduler),
  },
  {
    name: 'worker-load-check-interval',
    value: 's',
    help: 'Seconds between load polls of each worker.',
    default: s(D.load.intervalMs),
  },
  {
    name: 'worker-load-stale-after',
    value: 's',
    help: "Seconds after which a worker's last polled load is unknown again (the worker then counts as busy).",
    default: s(D.load.staleAfterMs),
  },
  {
    name: 'worker-load-timeout',
    value: 's',
    help: 'Timeout of one load poll.',
    default: s(D.load.timeoutMs),
  },
  {
    name: 'worker-load-source',
    value: 'src',
    help: `Where used tokens per DP rank are read: ${LOAD_SOURCES.join(' | ')} (auto: /metrics, then /v1/loads).`,
    default: D.load.source,
  },
  {
    name: 'tokenizer-path',
    value: 'dir',
    help: 'Model directory whose tokenizer.json gives exact token estimates (else ceil(words × 1.3)).',
    default: '(none)',
  },
  {
    name: 'health-check-interval-secs',
    value: 's',
    help: 'Seconds between health probes.',
    default: s(D.health.intervalMs),
  },
  {
    name: 'health-check-timeout-secs',
    value: 's',
    help: 'Timeout of one health probe.',
    default: s(D.health.timeoutMs),
  },
  {
    name: 'health-check-endpoint',
    value: 'path',
    help: 'Path probed with GET (2xx = healthy).',
    default: D.health.endpoint,
  },
  {
    name: 'health-failure-threshold',
    value: 'n',
    help: 'Consecutive failed probes that mark a worker unhealthy.',
    default: String(D.health.failureThreshold),
  },
  {
    name: 'health-success-threshold',
    value: 'n',
    help: 'Consecutive successful probes that mark it healthy again.',
    default: String(D.health.successThreshold),
  },
  {
    name: 'cb-failure-threshold',
    value: 'n',
    help: "Failures (each within the window of the previous) that open a worker's circuit breaker.",
    default: String(D.circuitBreaker.failureThreshold),
  },
  {
    name: 'cb-success-threshold',
    value: 'n',
    help: 'Successful half-open probes that close it.',
    default: String(D.circuitBreaker.successThreshold),
  },
  {
    name: 'cb-timeout-duration-secs',
    value: 's',
    help: 'Seconds an open breaker waits before admitting one probe.',
    default: s(D.circuitBreaker.timeoutMs),
  },
  {
    name: 'cb-window-duration-secs',
    value: 's',
    help: 'A failure this long after the previous one restarts the failure count.',
    default: s(D.circuitBreaker.windowMs),
  },
  { name: 'disable-circuit-breaker', value: null, help: 'Never open a breaker.', default: 'false' },
  {
    name: 'retry-max-retries',
    value: 'n',
    help: 'Retries after the first attempt (attempts = n + 1).',
    default: String(D.retry.maxRetries),
  },
  {
    name: 'retry-initial-backoff-ms',
    value: 'ms',
    help: 'Delay before the first retry.',
    default: String(D.retry.initialBackoffMs),
  },
  {
    name: 'retry-max-backoff-ms',
    value: 'ms',
    help: 'Largest delay between attempts.',
    default: String(D.retry.maxBackoffMs),
  },
  {
    name: 'retry-backoff-multiplier',
    value: 'x',
    help: 'Delay growth per retry.',
    default: String(D.retry.multiplier),
  },
  {
    name: 'retry-jitter-factor',
    value: 'j',
    help: 'Delay × (1 + uniform[-j, j]), j in [0, 1].',
    default: String(D.retry.jitter),
  },
  { name: 'disable-retries', value: null, help: 'One attempt per request.', default: 'false' },
  {
    name: 'cache-threshold',
    value: 'r',
    help: 'cache_aware: prefix match rate above which the matched worker is used.',
    default: String(D.cacheAware.cacheThreshold),
  },
  {
    name: 'balance-abs-threshold',
    value: 'n',
    help: 'cache_aware: imbalanced when max - min in-flight requests > n ...',
    default: String(D.cacheAware.balanceAbsThreshold),
  },
  {
    name: 'balance-rel-threshold',
    value: 'x',
    help: '... and max > min × x; then the least-loaded worker is used.',
    default: String(D.cacheAware.balanceRelThreshold),
  },
  {
    name: 'eviction-interval-secs',
    value: 's',
    help: 'cache_aware: seconds between LRU evictions of the prefix tree.',
    default: s(D.cacheAware.evictionIntervalMs),
  },
  {
    name: 'max-tree-size',
    value: 'n',
    help: 'cache_aware: characters each worker may hold in the prefix tree.',
    default: String(D.cacheAware.maxTreeSize),
  },
  {
    name: 'request-timeout-secs',
    value: 's',
    help: 'Limit of one attempt at a worker, streaming included.',
    default: s(D.requestTimeoutMs),
  },
  {
    name: 'connect-timeout-secs',
    value: 's',
    help: 'TCP connect limit to a worker.',
    default: s(D.connectTimeoutMs),
  },
  {
    name: 'worker-api-key',
    value: 'key',
    help: "Bearer key for the gateway's own calls to workers (loads, health, models); clients' headers are forwarded as they are.",
    default: '(none)',
  },
  {
    name: 'seed',
    value: 'n',
    help: 'Seed of random, power_of_two and retry jitter.',
    default: String(D.seed),
  },
  { name: 'log-level', value: 'level', help: 'pino level, or silent.', default: D.logLevel },
];

function attr(name: string): string {
  return name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

function num(values: Record<string, unknown>, name: string): number | undefined {
  const v = values[attr(name)];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n)) {
    throw new InvalidConfigError(`--${name}`, `must be a number; got ${JSON.stringify(v)}`);
  }
  return n;
}

function bool(values: Record<string, unknown>, name: string): boolean | undefined {
  const v = values[attr(name)];
  if (v === undefined) return undefined;
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  throw new InvalidConfigError(`--${name}`, `must be true or false; got ${JSON.stringify(v)}`);
}

const secs = (v: number | undefined): number | undefined => (v === undefined ? undefined : v * 1000);

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Commander's parsed options → a config input (validated later by resolveConfig). */
export function configFromFlags(values: Record<string, unknown>): GatewayConfigInput {
  const str = (name: string): string | undefined => {
    const v = values[attr(name)];
    return typeof v === 'string' ? v : undefined;
  };
  const urls = values['workerUrls'];
  const intervalMs = secs(num(values, 'worker-load-check-interval'));
  let staleAfterMs = secs(num(values, 'worker-load-stale-after'));
  // A longer poll interval than the default stale limit would make every load unknown.
  if (staleAfterMs === undefined && intervalMs !== undefined && intervalMs > DEFAULTS.load.staleAfterMs) {
    staleAfterMs = intervalMs * 3;
  }
  const cbDisabled = bool(values, 'disable-circuit-breaker');
  const retryDisabled = bool(values, 'disable-retries');
  return defined({
    workerUrls: Array.isArray(urls)
      ? urls.flatMap((u) => String(u).split(',')).filter((u) => u !== '')
      : undefined,
    host: str('host'),
    port: num(values, 'port'),
    policy: str('policy') as GatewayConfigInput['policy'],
    dpMinimumTokensScheduler: bool(values, 'dp-minimum-tokens-scheduler'),
    tokenizerPath: str('tokenizer-path'),
    load: defined({
      intervalMs,
      staleAfterMs,
      timeoutMs: secs(num(values, 'worker-load-timeout')),
      source: str('worker-load-source') as LoadSource | undefined,
    }),
    health: defined({
      intervalMs: secs(num(values, 'health-check-interval-secs')),
      timeoutMs: secs(num(values, 'health-check-timeout-secs')),
      endpoint: str('health-check-endpoint'),
      failureThreshold: num(values, 'health-failure-threshold'),
      successThreshold: num(values, 'health-success-threshold'),
    }),
    circuitBreaker: defined({
      enabled: cbDisabled === undefined ? undefined : !cbDisabled,
      failureThreshold: num(values, 'cb-failure-threshold'),
      successThreshold: num(values, 'cb-success-threshold'),
      timeoutMs: secs(num(values, 'cb-timeout-duration-secs')),
      windowMs: secs(num(values, 'cb-window-duration-secs')),
    }),
    retry: defined({
      enabled: retryDisabled === undefined ? undefined : !retryDisabled,
      maxRetries: num(values, 'retry-max-retries'),
      initialBackoffMs: num(values, 'retry-initial-backoff-ms'),
      maxBackoffMs: num(values, 'retry-max-backoff-ms'),
      multiplier: num(values, 'retry-backoff-multiplier'),
      jitter: num(values, 'retry-jitter-factor'),
    }),
    cacheAware: defined({
      cacheThreshold: num(values, 'cache-threshold'),
      balanceAbsThreshold: num(values, 'balance-abs-threshold'),
      balanceRelThreshold: num(values, 'balance-rel-threshold'),
      evictionIntervalMs: secs(num(values, 'eviction-interval-secs')),
      maxTreeSize: num(values, 'max-tree-size'),
    }),
    requestTimeoutMs: secs(num(values, 'request-timeout-secs')),
    connectTimeoutMs: secs(num(values, 'connect-timeout-secs')),
    workerApiKey: str('worker-api-key'),
    seed: num(values, 'seed'),
    logLevel: str('log-level'),
  }) as GatewayConfigInput;
}

/** Adds every gateway flag to `cmd`. */
export function addGatewayOptions(cmd: Command): Command {
  for (const f of GATEWAY_FLAGS) {
    const help = `${f.help} (default: ${f.default})`;
    let opt: Option;
    if (f.value === null) opt = new Option(`--${f.name} [bool]`, help).preset('true');
    else if (f.value.endsWith('...')) opt = new Option(`--${f.name} <${f.value}>`, help);
    else opt = new Option(`--${f.name} <${f.value}>`, help);
    if (f.name === 'policy') opt = opt.choices([...POLICIES]);
    cmd.addOption(opt);
  }
  return cmd;
}

/** Starts a gateway from commander's option values; resolves with the app and its URL. */
export async function startGateway(
  values: Record<string, unknown>,
): Promise<{ app: GatewayApp; url: string }> {
  const input = configFromFlags(values);
  const app = await createGateway(input);
  const { host, port } = app.gateway.config;
  const url = await app.listen({ host, port });
  return { app, url };
}

/** Adds `tsinfer gateway` to a commander program. */
export function registerGateway(program: Command): Command {
  const cmd = program
    .command('gateway')
    .description(
      'One endpoint in front of several tsinfer (or SGLang) servers: load-aware worker policies, DP-rank minimum-tokens selection, health checks, retries, circuit breakers',
    );
  addGatewayOptions(cmd);
  cmd.action(async (opts: Record<string, unknown>) => {
    const { app, url } = await startGateway(opts);
    const c = app.gateway.config;
    console.error(
      `tsinfer gateway on ${url}: ${c.workerUrls.length} worker(s), policy ${c.policy}` +
        `${c.dpMinimumTokensScheduler ? ', DP-rank minimum tokens' : ''}`,
    );
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) process.exit(1);
      stopping = true;
      console.error(`${signal}: closing`);
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  return cmd;
}
