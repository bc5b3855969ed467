/**
 * The engine's options: the server's flags as one typed object, resolved and
 * validated up front. The scheduler's flags (and the prefill delayer's, which
 * the scheduler config carries) and the DP controller's load-balance flags
 * are the tables `@tsinfer/scheduler` exports (`SCHEDULER_FLAGS`,
 * `PREFILL_DELAYER_FLAGS` through `parseSchedulerFlags`, `LOAD_BALANCE_FLAGS`);
 * only the flags the engine itself owns are defined here (`ENGINE_FLAGS`).
 * Every invalid value is an `InvalidConfigError` naming the flag.
 */
import { InvalidConfigError } from '@tsinfer/core';
import { parseModelPath, parseRuntimeBackend, type RuntimeBackend } from '@tsinfer/runtime';
import {
  type LoadBalanceConfig,
  parseSchedulerFlags,
  resolveLoadBalanceConfig,
  resolveSchedulerConfig,
  type SchedulerConfig,
} from '@tsinfer/scheduler';

export type EngineDevice = 'cpu' | 'cuda';

export interface FaultInjection {
  readonly rank: number;
  readonly afterPasses: number;
  readonly how?: 'throw' | 'exit' | undefined;
}

/** What `createEngine` takes. Only `modelPath` is required. */
export interface EngineOptions {
  /** `--model-path`: a model directory (model.onnx + tokenizer.json + config) or `sim:<profile>`. */
  modelPath: string;
  /** `--served-model-name` (default: the model's name). */
  servedModelName?: string | undefined;
  /** `--device`: cpu (default) or cuda; ignored by `sim:` models. */
  device?: EngineDevice | undefined;
  /** `--runtime-backend`: js (default), native (the addon; fails when it cannot be used) or auto (native when built). */
  runtimeBackend?: RuntimeBackend | undefined;
  /** `--dp-size` (same as `scheduler.dpSize`; give one or make them agree). */
  dpSize?: number | undefined;
  /** The scheduler's flags (`SCHEDULER_FLAGS`) and the delayer's (`scheduler.delayer`). */
  scheduler?: Partial<SchedulerConfig> | undefined;
  /** The DP controller's flags (`LOAD_BALANCE_FLAGS`): method, snapshot cadence, staleness. */
  loadBalance?: Partial<LoadBalanceConfig> | undefined;
  /** `--max-queued-requests`: requests dispatched and not started (no first token yet) across ranks; null = no limit. */
  maxQueuedRequests?: number | null | undefined;
  /** `--mem-fraction-static`: share of free host memory for each rank's KV cache when `--max-total-tokens` is unset (ONNX models). */
  memFractionStatic?: number | undefined;
  /** `--random-seed`: seeds each rank's runner (rank r gets seed + r). */
  seed?: number | undefined;
  /** `--intra-op-threads`: onnxruntime threads per rank (default: cores / dp-size, at least 1). */
  intraOpThreads?: number | undefined;
  /** `--collective-timeout-ms`: longest wait in a cross-rank all-gather (DP attention) before the round fails. */
  collectiveTimeoutMs?: number | undefined;
  /**
   * Tests and chaos drills only: rank `rank`'s worker dies after `afterPasses`
   * forward passes, by an uncaught error (`how: 'throw'`, the default) or by
   * exiting its thread (`how: 'exit'`, exit code 3).
   */
  faultInjection?: FaultInjection | undefined;
}

/** The resolved options (every default filled in, validated). */
export interface EngineConfig {
  readonly modelPath: string;
  readonly model:
    | { readonly kind: 'sim'; readonly profilePath: string }
    | { readonly kind: 'dir'; readonly dir: string };
  readonly servedModelName: string | null;
  readonly device: EngineDevice;
  readonly runtimeBackend: RuntimeBackend;
  readonly dpSize: number;
  readonly scheduler: Readonly<SchedulerConfig>;
  readonly loadBalance: Readonly<LoadBalanceConfig>;
  readonly maxQueuedRequests: number | null;
  readonly memFractionStatic: number | null;
  readonly seed: number;
  readonly intraOpThreads: number | null;
  readonly collectiveTimeoutMs: number;
  readonly faultInjection: FaultInjection | null;
}

export const DEFAULT_COLLECTIVE_TIMEOUT_MS = 30_000;

/** One engine-owned flag (same shape as the scheduler's and delayer's tables, for the CLI and docs). */
export interface EngineFlagDef {
  readonly name: string;
  readonly flag: string;
  readonly key: keyof EngineOptions;
  readonly type: 'string' | 'integer' | 'number' | 'enum';
  readonly default: string | number | null;
  readonly choices?: readonly string[];
  readonly range: string;
  readonly help: string;
}

/** The flags the engine owns (the scheduler, delayer and load-balance flags are their packages' tables). */
export const ENGINE_FLAGS: readonly EngineFlagDef[] = Object.freeze([
  {
    name: 'model-path',
    flag: '--model-path',
    key: 'modelPath',
    type: 'string',
    default: null,
    range:
      'a model directory, or sim:<profile> (a profile name under packages/runtime/profiles or a JSON file)',
    help: 'The model to serve.',
  },
  {
    name: 'served-model-name',
    flag: '--served-model-name',
    key: 'servedModelName',
    type: 'string',
    default: null,
    range: 'a non-empty string',
    help: "The model name of /v1/models and of responses. Default: the model's own name.",
  },
  {
    name: 'device',
    flag: '--device',
    key: 'device',
    type: 'enum',
    default: 'cpu',
    choices: ['cpu', 'cuda'],
    range: 'cpu or cuda',
    help: 'onnxruntime execution provider of every rank (ignored by sim: models).',
  },
  {
    name: 'runtime-backend',
    flag: '--runtime-backend',
    key: 'runtimeBackend',
    type: 'enum',
    default: 'js',
    choices: ['js', 'native', 'auto'],
    range: 'js, native or auto',
    help: "Which runner executes ONNX models: js (onnxruntime-node's JS API, host KV cache), native (the C++ addon with an IoBinding KV cache that stays on the device; fails with TSI_ERR_NATIVE_UNAVAILABLE when not built), or auto (native when the addon is built and the model is in the genai layout, else js). The rank logs which one it uses and why (/server_info).",
  },
  {
    name: 'max-queued-requests',
    flag: '--max-queued-requests',
    key: 'maxQueuedRequests',
    type: 'integer',
    default: null,
    range: 'an integer >= 0, or unset (no limit)',
    help: 'Most requests dispatched to a rank that have not produced their first token, across all ranks; one more is refused with TSI_ERR_QUEUE_FULL (503).',
  },
  {
    name: 'mem-fraction-static',
    flag: '--mem-fraction-static',
    key: 'memFractionStatic',
    type: 'number',
    default: null,
    range: 'a number in (0, 1]',
    help: "Share of free host memory each rank's KV cache takes when --max-total-tokens is unset (ONNX models; runtime default 0.2).",
  },
  {
    name: 'random-seed',
    flag: '--random-seed',
    key: 'seed',
    type: 'integer',
    default: 0,
    range: 'an integer >= 0',
    help: 'Seed of the runners (rank r uses seed + r) for requests without their own seed.',
  },
  {
    name: 'intra-op-threads',
    flag: '--intra-op-threads',
    key: 'intraOpThreads',
    type: 'integer',
    default: null,
    range: 'an integer >= 1, or unset',
    help: 'onnxruntime intra-op threads per rank. Unset: available cores / dp-size (at least 1).',
  },
  {
    name: 'collective-timeout-ms',
    flag: '--collective-timeout-ms',
    key: 'collectiveTimeoutMs',
    type: 'number',
    default: DEFAULT_COLLECTIVE_TIMEOUT_MS,
    range: 'a number > 0',
    help: 'With --enable-dp-attention: longest time a rank waits for the others in one lockstep or delayer all-gather; past it the round fails on every rank (a rank died or hangs).',
  },
]);

function isInt(v: unknown, min: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
}

/**
 * Fills defaults and validates everything that can be checked without
 * loading the model (the KV capacity and context checks happen when the
 * ranks report their model facts).
 * @throws InvalidConfigError naming the flag.
 */
export function resolveEngineOptions(options: EngineOptions): EngineConfig {
  if (typeof options?.modelPath !== 'string' || options.modelPath.trim() === '') {
    throw new InvalidConfigError('--model-path', 'is required: a model directory or sim:<profile>');
  }
  const parsed = parseModelPath(options.modelPath);
  const model =
    parsed.kind === 'sim'
      ? ({ kind: 'sim', profilePath: parsed.profilePath } as const)
      : ({ kind: 'dir', dir: parsed.dir } as const);
  const served = options.servedModelName;
  if (served !== undefined && (typeof served !== 'string' || served.trim() === '')) {
    throw new InvalidConfigError(
      '--served-model-name',
      `must be a non-empty string; got ${JSON.stringify(served)}`,
    );
  }
  const device = options.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda') {
    throw new InvalidConfigError('--device', `must be cpu or cuda; got ${JSON.stringify(device)}`);
  }
  const runtimeBackend = parseRuntimeBackend(options.runtimeBackend ?? 'js');
  const sched = { ...(options.scheduler ?? {}) };
  if (options.dpSize !== undefined) {
    if (sched.dpSize !== undefined && sched.dpSize !== options.dpSize) {
      throw new InvalidConfigError(
        '--dp-size',
        `given twice with different values (${options.dpSize} and scheduler.dpSize ${sched.dpSize})`,
      );
    }
    sched.dpSize = options.dpSize;
  }
  const scheduler = resolveSchedulerConfig(sched);
  const loadBalance = resolveLoadBalanceConfig(options.loadBalance ?? {});
  const mq = options.maxQueuedRequests ?? null;
  if (mq !== null && !isInt(mq, 0)) {
    throw new InvalidConfigError(
      '--max-queued-requests',
      `must be an integer >= 0, or unset; got ${String(mq)}`,
    );
  }
  const mf = options.memFractionStatic ?? null;
  if (mf !== null && !(typeof mf === 'number' && mf > 0 && mf <= 1)) {
    throw new InvalidConfigError('--mem-fraction-static', `must be a number in (0, 1]; got ${String(mf)}`);
  }
  const seed = options.seed ?? 0;
  if (!isInt(seed, 0))
    throw new InvalidConfigError('--random-seed', `must be an integer >= 0; got ${String(seed)}`);
  const threads = options.intraOpThreads ?? null;
  if (threads !== null && !isInt(threads, 1)) {
    throw new InvalidConfigError(
      '--intra-op-threads',
      `must be an integer >= 1, or unset; got ${String(threads)}`,
    );
  }
  const ct = options.collectiveTimeoutMs ?? DEFAULT_COLLECTIVE_TIMEOUT_MS;
  if (!(typeof ct === 'number' && Number.isFinite(ct) && ct > 0)) {
    throw new InvalidConfigError('--collective-timeout-ms', `must be a finite number > 0; got ${String(ct)}`);
  }
  const fi = options.faultInjection ?? null;
  if (
    fi !== null &&
    !(
      isInt(fi.rank, 0) &&
      fi.rank < scheduler.dpSize &&
      isInt(fi.afterPasses, 0) &&
      (fi.how === undefined || fi.how === 'throw' || fi.how === 'exit')
    )
  ) {
    throw new InvalidConfigError(
      'faultInjection',
      "needs an existing rank, an integer afterPasses >= 0 and how 'throw' or 'exit'",
    );
  }
  return Object.freeze({
    modelPath: options.modelPath,
    model,
    servedModelName: served ?? null,
    device,
    runtimeBackend,
    dpSize: scheduler.dpSize,
    scheduler,
    loadBalance,
    maxQueuedRequests: mq,
    memFractionStatic: mf,
    seed,
    intraOpThreads: threads,
    collectiveTimeoutMs: ct,
    faultInjection: fi,
  });
}

function numberFlag(flag: string, raw: unknown, integer: boolean): number | null | undefined {
  if (raw === undefined) return undefined;
  if (raw === null || raw === '') return null;
  const v = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw.trim()) : Number.NaN;
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new InvalidConfigError(
      flag,
      `must be ${integer ? 'an integer' : 'a number'}; got ${JSON.stringify(raw)}`,
    );
  }
  return v;
}

/**
 * Builds `EngineOptions` from CLI-style values keyed by flag name without
 * the dashes (what commander / `node:util` parseArgs give): the engine's own
 * flags, the scheduler's and delayer's (`parseSchedulerFlags`) and the
 * load-balance flags. Unknown keys are ignored.
 */
export function engineOptionsFromFlags(values: Readonly<Record<string, unknown>>): EngineOptions {
  const str = (k: string): string | undefined => {
    const v = values[k];
    return v === undefined || v === null ? undefined : String(v);
  };
  const lb: Partial<LoadBalanceConfig> = {};
  const method = str('load-balance-method');
  if (method !== undefined) lb.loadBalanceMethod = method as LoadBalanceConfig['loadBalanceMethod'];
  const pi = numberFlag('--load-snapshot-publish-interval', values['load-snapshot-publish-interval'], true);
  if (pi != null) lb.loadSnapshotPublishInterval = pi;
  const hb = numberFlag('--load-snapshot-heartbeat-ms', values['load-snapshot-heartbeat-ms'], false);
  if (hb != null) lb.loadSnapshotHeartbeatMs = hb;
  const st = numberFlag('--load-snapshot-stale-ms', values['load-snapshot-stale-ms'], false);
  if (st != null) lb.loadSnapshotStaleMs = st;
  const out: EngineOptions = {
    modelPath: str('model-path') ?? '',
    scheduler: parseSchedulerFlags(values),
    loadBalance: lb,
  };
  const served = str('served-model-name');
  if (served !== undefined) out.servedModelName = served;
  const device = str('device');
  if (device !== undefined) out.device = device as EngineDevice;
  const mq = numberFlag('--max-queued-requests', values['max-queued-requests'], true);
  if (mq !== undefined) out.maxQueuedRequests = mq;
  const mf = numberFlag('--mem-fraction-static', values['mem-fraction-static'], false);
  if (mf != null) out.memFractionStatic = mf;
  const seed = numberFlag('--random-seed', values['random-seed'], true);
  if (seed != null) out.seed = seed;
  const th = numberFlag('--intra-op-threads', values['intra-op-threads'], true);
  if (th != null) out.intraOpThreads = th;
  const ct = numberFlag('--collective-timeout-ms', values['collective-timeout-ms'], false);
  if (ct != null) out.collectiveTimeoutMs = ct;
  return out;
}
