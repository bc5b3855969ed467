/**
 * The scheduler's configuration: the resolved config type, its defaults, the
 * flag table a CLI and docs can be generated from, and validation of
 * CLI-style values. Flag names and defaults are SGLang's (kebab-case, the
 * ServerArgs field with `_` → `-`); the few SGLang constants that live in
 * environment variables there (`SGLANG_INIT_NEW_TOKEN_RATIO`, ...) are flags
 * here. Out-of-range values are rejected with an `InvalidConfigError` naming
 * the flag and the accepted range.
 *
 * The prefill delayer's flags (`--enable-prefill-delayer`,
 * `--prefill-delayer-*`, and `--prefill-max-requests`, which the delayer
 * table owns because the delayer reads it too) live in `@tsinfer/delayer`'s
 * `PREFILL_DELAYER_FLAGS`; {@link parseSchedulerFlags} reads both tables.
 */

import { InvalidConfigError } from '@tsinfer/core';
import {
  DEFAULT_PREFILL_DELAYER_CONFIG,
  type PrefillDelayerConfig,
  parsePrefillDelayerFlags,
  validatePrefillDelayerConfig,
} from '@tsinfer/delayer';

/** Waiting-queue orderings (`--schedule-policy`). */
export const SCHEDULE_POLICIES = ['fcfs', 'lpm'] as const;
export type SchedulePolicyName = (typeof SCHEDULE_POLICIES)[number];

/** The scheduler's resolved configuration (every rank of a server uses the same). */
export interface SchedulerConfig {
  /** `--max-prefill-tokens`: prompt tokens one prefill batch may take (a single longer request still runs, chunked). */
  maxPrefillTokens: number;
  /** `--chunked-prefill-size`: most prompt tokens of one request per pass; null (flag -1) disables chunking. */
  chunkedPrefillSize: number | null;
  /** `--max-running-requests`: null = derived from the KV capacity (capacity / 2, as SGLang). Divided by `--dp-size` under DP attention. */
  maxRunningRequests: number | null;
  /** `--prefill-max-requests` (flag owned by the delayer table): most requests admitted in one prefill batch; null = no cap. */
  prefillMaxRequests: number | null;
  /** `--max-total-tokens`: KV tokens the scheduler may use (min with the runner's capacity); null = the runner's capacity. */
  maxTotalTokens: number | null;
  /** `--schedule-policy`: waiting-queue order. */
  schedulePolicy: SchedulePolicyName;
  /** `--schedule-conservativeness`: scales the initial new-token ratio (SGLang: init = min(0.7 × this, 1)). */
  scheduleConservativeness: number;
  /** `--init-new-token-ratio` (SGLang env SGLANG_INIT_NEW_TOKEN_RATIO). */
  initNewTokenRatio: number;
  /** `--min-new-token-ratio`: floor of the decaying estimate; null = init × `--min-new-token-ratio-factor`. */
  minNewTokenRatio: number | null;
  /** `--min-new-token-ratio-factor` (SGLang env SGLANG_MIN_NEW_TOKEN_RATIO_FACTOR). */
  minNewTokenRatioFactor: number;
  /** `--new-token-ratio-decay-steps` (SGLang env SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS). */
  newTokenRatioDecaySteps: number;
  /** `--retract-decode-steps` (SGLang env SGLANG_RETRACT_DECODE_STEPS). */
  retractDecodeSteps: number;
  /** `--clip-max-new-tokens-estimation` (SGLang env SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION). */
  clipMaxNewTokensEstimation: number;
  /** `--enable-dp-attention`: lockstep forward modes across the DP ranks. */
  enableDpAttention: boolean;
  /** `--dp-size`: number of data-parallel ranks. */
  dpSize: number;
  /** The prefill delayer's config (its own flag table). */
  delayer: PrefillDelayerConfig;
}

export type SchedulerFlagType = 'boolean' | 'integer' | 'number' | 'enum';

/** One flag: enough to generate a CLI option and a docs row. Same shape as the delayer's `DelayerFlagDef`. */
export interface SchedulerFlagDef {
  /** Spelling without dashes, as `node:util` parseArgs keys it. */
  readonly name: string;
  /** CLI spelling, e.g. `--max-prefill-tokens`. */
  readonly flag: string;
  readonly key: Exclude<keyof SchedulerConfig, 'delayer' | 'prefillMaxRequests'>;
  readonly type: SchedulerFlagType;
  /** True when the flag may be left unset (null). */
  readonly nullable: boolean;
  readonly default: boolean | number | string | null;
  readonly min?: number;
  readonly max?: number;
  /** For integers: one extra accepted value outside [min, max] that means "off" (null), e.g. -1. */
  readonly offValue?: number;
  readonly choices?: readonly string[];
  /** The accepted range in words (errors and docs). */
  readonly range: string;
  readonly help: string;
}

function def(d: Omit<SchedulerFlagDef, 'flag'>): SchedulerFlagDef {
  return Object.freeze({ ...d, flag: `--${d.name}` });
}

const MAX_INT = Number.MAX_SAFE_INTEGER;

/** Every flag the scheduler owns, in documentation order. */
export const SCHEDULER_FLAGS: readonly SchedulerFlagDef[] = Object.freeze([
  def({
    name: 'max-prefill-tokens',
    key: 'maxPrefillTokens',
    type: 'integer',
    nullable: false,
    default: 16384,
    min: 1,
    max: MAX_INT,
    range: 'an integer >= 1',
    help: 'Prompt-token budget of one prefill batch. Requests are admitted while the batch holds fewer tokens; the first request of a batch is admitted whatever its length (chunked prefill bounds it).',
  }),
  def({
    name: 'chunked-prefill-size',
    key: 'chunkedPrefillSize',
    type: 'integer',
    nullable: true,
    default: 8192,
    min: 1,
    max: MAX_INT,
    offValue: -1,
    range: 'an integer >= 1, or -1 to disable chunking',
    help: 'Most prompt tokens of one pass taken from any one request; a longer prompt is prefilled chunk by chunk over several passes. -1 disables chunked prefill.',
  }),
  def({
    name: 'max-running-requests',
    key: 'maxRunningRequests',
    type: 'integer',
    nullable: true,
    default: null,
    min: 1,
    max: MAX_INT,
    range: 'an integer >= 1, or unset',
    help: 'Most requests in the running (decode) batch. Unset: half the KV capacity in tokens. With --enable-dp-attention the value is for the whole server and each rank gets value / dp-size.',
  }),
  def({
    name: 'max-total-tokens',
    key: 'maxTotalTokens',
    type: 'integer',
    nullable: true,
    default: null,
    min: 2,
    max: MAX_INT,
    range: 'an integer >= 2, or unset',
    help: "KV tokens the scheduler may fill per rank (the smaller of this and the runner's capacity). Mainly for tests and debugging.",
  }),
  def({
    name: 'schedule-policy',
    key: 'schedulePolicy',
    type: 'enum',
    nullable: false,
    default: 'fcfs',
    choices: SCHEDULE_POLICIES,
    range: `one of ${SCHEDULE_POLICIES.join(', ')}`,
    help: 'Order of the waiting queue. fcfs: arrival order (retracted requests first). lpm: longest cached prefix first, given a prefix cache; with none, or with more than 128 waiting requests, it is fcfs (as SGLang).',
  }),
  def({
    name: 'schedule-conservativeness',
    key: 'scheduleConservativeness',
    type: 'number',
    nullable: false,
    default: 1.0,
    min: 0,
    max: Number.MAX_VALUE,
    range: 'a number >= 0',
    help: 'Scales the initial new-token ratio: higher reserves more KV for running requests (fewer admissions, fewer retractions).',
  }),
  def({
    name: 'init-new-token-ratio',
    key: 'initNewTokenRatio',
    type: 'number',
    nullable: false,
    default: 0.7,
    min: 0,
    max: 1,
    range: 'a number in [0, 1]',
    help: 'Initial estimate of the fraction of its remaining max_new_tokens a running request will still generate; admission reserves that much KV for every running request. Reset to this value whenever the rank goes idle.',
  }),
  def({
    name: 'min-new-token-ratio',
    key: 'minNewTokenRatio',
    type: 'number',
    nullable: true,
    default: null,
    min: 0,
    max: 1,
    range: 'a number in [0, 1], or unset',
    help: 'Floor the estimate decays to, one step per decode pass without retraction. Unset: init ratio x --min-new-token-ratio-factor.',
  }),
  def({
    name: 'min-new-token-ratio-factor',
    key: 'minNewTokenRatioFactor',
    type: 'number',
    nullable: false,
    default: 0.14,
    min: 0,
    max: 1,
    range: 'a number in [0, 1]',
    help: 'Floor of the estimate as a fraction of the initial ratio, when --min-new-token-ratio is unset.',
  }),
  def({
    name: 'new-token-ratio-decay-steps',
    key: 'newTokenRatioDecaySteps',
    type: 'number',
    nullable: false,
    default: 600,
    min: Number.MIN_VALUE,
    max: Number.MAX_VALUE,
    range: 'a number > 0',
    help: 'Decode passes the estimate takes to decay from the initial ratio to the floor.',
  }),
  def({
    name: 'retract-decode-steps',
    key: 'retractDecodeSteps',
    type: 'integer',
    nullable: false,
    default: 20,
    min: 0,
    max: MAX_INT,
    range: 'an integer >= 0',
    help: 'After a retraction the estimate is raised to (tokens decoded + this x running requests) / their max_new_tokens, capped at 1.',
  }),
  def({
    name: 'clip-max-new-tokens-estimation',
    key: 'clipMaxNewTokensEstimation',
    type: 'integer',
    nullable: false,
    default: 4096,
    min: 1,
    max: MAX_INT,
    range: 'an integer >= 1',
    help: "A request's remaining max_new_tokens is clipped to this in the KV reservation.",
  }),
  def({
    name: 'enable-dp-attention',
    key: 'enableDpAttention',
    type: 'boolean',
    nullable: false,
    default: false,
    range: 'true or false',
    help: 'Lockstep DP ranks: every pass the ranks agree on the forward mode through an all-gather; while any rank prefills the others run idle passes instead of decoding. The delayer then negotiates across all ranks.',
  }),
  def({
    name: 'dp-size',
    key: 'dpSize',
    type: 'integer',
    nullable: false,
    default: 1,
    min: 1,
    max: 65535,
    range: 'an integer in [1, 65535]',
    help: 'Number of data-parallel ranks, each with its own scheduler, runner and KV cache.',
  }),
]);

export const DEFAULT_SCHEDULER_CONFIG: Readonly<SchedulerConfig> = Object.freeze(
  resolve(() => undefined, {}),
);

function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function fail(d: SchedulerFlagDef, raw: unknown): never {
  throw new InvalidConfigError(d.flag, `must be ${d.range}; got ${show(raw)}`);
}

function coerce(d: SchedulerFlagDef, raw: unknown): boolean | number | string | null {
  if (raw === undefined) return d.default;
  if (raw === null) return d.nullable ? null : fail(d, raw);
  switch (d.type) {
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      return fail(d, raw);
    case 'enum':
      if (typeof raw === 'string' && d.choices?.includes(raw)) return raw;
      return fail(d, raw);
    case 'integer':
    case 'number': {
      let v: number;
      if (typeof raw === 'number') v = raw;
      else if (typeof raw === 'string' && raw.trim() !== '') v = Number(raw.trim());
      else return fail(d, raw);
      if (!Number.isFinite(v)) return fail(d, raw);
      if (d.type === 'integer' && !Number.isInteger(v)) return fail(d, raw);
      if (d.offValue !== undefined && v === d.offValue) return null;
      if ((d.min !== undefined && v < d.min) || (d.max !== undefined && v > d.max)) return fail(d, raw);
      return v === 0 ? 0 : v;
    }
  }
}

function resolve(
  get: (d: SchedulerFlagDef) => unknown,
  delayer: Partial<PrefillDelayerConfig>,
): SchedulerConfig {
  const out: Record<string, unknown> = {};
  for (const d of SCHEDULER_FLAGS) out[d.key] = coerce(d, get(d));
  const delayerConfig = validatePrefillDelayerConfig({ ...DEFAULT_PREFILL_DELAYER_CONFIG, ...delayer });
  out['delayer'] = delayerConfig;
  out['prefillMaxRequests'] = delayerConfig.prefillMaxRequests;
  const config = out as unknown as SchedulerConfig;
  crossCheck(config);
  return config;
}

function crossCheck(c: SchedulerConfig): void {
  const init = Math.min(c.initNewTokenRatio * c.scheduleConservativeness, 1);
  if (c.minNewTokenRatio !== null && c.minNewTokenRatio > init) {
    throw new InvalidConfigError(
      '--min-new-token-ratio',
      `must be <= the initial ratio min(--init-new-token-ratio x --schedule-conservativeness, 1) = ${init}; got ${c.minNewTokenRatio}`,
    );
  }
}

/**
 * Builds the config from CLI-style values keyed by flag name without the
 * leading dashes (what `node:util` parseArgs returns), both the scheduler's
 * flags and the delayer's. Values may be strings or typed. Missing flags take
 * their defaults; keys of neither table are ignored.
 * @throws InvalidConfigError naming the flag and its accepted range.
 */
export function parseSchedulerFlags(values: Readonly<Record<string, unknown>>): SchedulerConfig {
  return resolve((d) => values[d.name], parsePrefillDelayerFlags(values));
}

/**
 * Validates a programmatic config: absent fields take their defaults, every
 * present field is checked as its flag would be. `prefillMaxRequests` given
 * at the top level wins over `delayer.prefillMaxRequests`.
 * @throws InvalidConfigError naming the flag and its accepted range.
 */
export function resolveSchedulerConfig(config: Readonly<Partial<SchedulerConfig>> = {}): SchedulerConfig {
  const delayer: Partial<PrefillDelayerConfig> = { ...(config.delayer ?? {}) };
  if (config.prefillMaxRequests !== undefined) delayer.prefillMaxRequests = config.prefillMaxRequests;
  return resolve((d) => config[d.key], delayer);
}

/** The new-token-ratio constants SGLang derives at scheduler init. */
export interface NewTokenRatioParams {
  readonly init: number;
  readonly min: number;
  readonly decayPerPass: number;
}

export function newTokenRatioParams(c: SchedulerConfig): NewTokenRatioParams {
  const init = Math.min(c.initNewTokenRatio * c.scheduleConservativeness, 1);
  const min = c.minNewTokenRatio ?? Math.min(init * c.minNewTokenRatioFactor, 1);
  return { init, min, decayPerPass: (init - min) / c.newTokenRatioDecaySteps };
}

/**
 * Per-rank limits from the config and the runner: KV tokens the scheduler
 * may fill, and the running-batch cap (SGLang: `--max-running-requests`
 * divided by dp-size under DP attention; unset → capacity / 2), clamped by
 * the runner's row limit when it has one.
 */
export function rankLimits(
  c: SchedulerConfig,
  runnerKvCapacity: number,
  runnerMaxBatch?: number,
): { kvCapacity: number; maxRunningRequests: number } {
  const kvCapacity = Math.min(runnerKvCapacity, c.maxTotalTokens ?? Number.POSITIVE_INFINITY);
  if (!(kvCapacity >= 2)) {
    throw new InvalidConfigError(
      '--max-total-tokens',
      `the KV capacity must be >= 2 tokens; got ${kvCapacity}`,
    );
  }
  let mrr =
    c.maxRunningRequests === null
      ? Math.floor(kvCapacity / 2)
      : Math.floor(c.maxRunningRequests / (c.enableDpAttention ? c.dpSize : 1));
  if (runnerMaxBatch !== undefined) mrr = Math.min(mrr, runnerMaxBatch);
  if (mrr < 1) {
    throw new InvalidConfigError(
      '--max-running-requests',
      `each rank needs at least 1 running request; got ${c.maxRunningRequests} over dp-size ${c.dpSize}`,
    );
  }
  return { kvCapacity, maxRunningRequests: mrr };
}
