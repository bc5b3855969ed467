/**
 * The delayer's configuration: the resolved config type, its defaults, the
 * flag table a CLI and docs/cli.md can be generated from, and validation of
 * CLI-style values. Unlike SGLang, out-of-range values are rejected with an
 * `InvalidConfigError` naming the flag and the accepted range.
 */
import { InvalidConfigError } from '@tsinfer/core';
import type { DecisionConfig } from './decide.js';

/** The delayer's resolved configuration (one per server; every rank uses the same). */
export interface PrefillDelayerConfig {
  /** `--enable-prefill-delayer`: the server builds a delayer only when true. */
  enabled: boolean;
  /** `--prefill-delayer-max-delay-passes` (P). */
  maxDelayPasses: number;
  /** `--prefill-delayer-token-usage-low-watermark` (W); null = unset. */
  tokenUsageLowWatermark: number | null;
  /** `--prefill-delayer-queue-min-ratio` (R); null = queue trigger off. */
  queueMinRatio: number | null;
  /** `--prefill-delayer-max-delay-ms` (D); null = unset, which means 5000 inside the delayer. */
  maxDelayMs: number | null;
  /** `--prefill-delayer-forward-passes-buckets`; null = the defaults of metrics.ts. */
  forwardPassesBuckets: readonly number[] | null;
  /** `--prefill-delayer-wait-seconds-buckets`; null = the defaults of metrics.ts. */
  waitSecondsBuckets: readonly number[] | null;
  /** `--prefill-delayer-cap-slot-delay` (opt-in fix for SGLang's unbounded slot delay). */
  capSlotDelay: boolean;
  /** `--prefill-delayer-max-prefill-bs-window` (opt-in; 0 = SGLang's lifetime high-water mark). */
  maxPrefillBsWindow: number;
  /** `--prefill-delayer-admission-cap` (opt-in: cap the queue threshold by `--prefill-max-requests`). */
  admissionCap: boolean;
  /** `--prefill-max-requests` (the scheduler's per-batch cap; read by the delayer only with `admissionCap`). */
  prefillMaxRequests: number | null;
}

export const DEFAULT_PREFILL_DELAYER_CONFIG: Readonly<PrefillDelayerConfig> = Object.freeze({
  enabled: false,
  maxDelayPasses: 30,
  tokenUsageLowWatermark: null,
  queueMinRatio: null,
  maxDelayMs: null,
  forwardPassesBuckets: null,
  waitSecondsBuckets: null,
  capSlotDelay: false,
  maxPrefillBsWindow: 0,
  admissionCap: false,
  prefillMaxRequests: null,
});

/** Largest accepted `--prefill-delayer-max-prefill-bs-window`. */
export const MAX_PREFILL_BS_WINDOW_LIMIT = 4096;

export type DelayerFlagType = 'boolean' | 'integer' | 'number' | 'number-list';

/** One flag: enough to generate a CLI option and a docs/cli.md row. */
export interface DelayerFlagDef {
  /** Spelling without dashes, as `node:util` parseArgs keys it: `prefill-delayer-max-delay-passes`. */
  readonly name: string;
  /** CLI spelling: `--prefill-delayer-max-delay-passes`. */
  readonly flag: string;
  /** Field of {@link PrefillDelayerConfig} it sets. */
  readonly key: keyof PrefillDelayerConfig;
  readonly type: DelayerFlagType;
  /** True when the flag may be left unset (its value is then null). */
  readonly nullable: boolean;
  /** Default value (null = unset). */
  readonly default: boolean | number | readonly number[] | null;
  /** Inclusive bounds for numbers (each element of a list). */
  readonly min?: number;
  readonly max?: number;
  /** The accepted range in words, used in error messages and docs. */
  readonly range: string;
  readonly help: string;
}

function def(d: Omit<DelayerFlagDef, 'flag'>): DelayerFlagDef {
  return Object.freeze({ ...d, flag: `--${d.name}` });
}

/** Every flag the delayer reads, in documentation order. */
export const PREFILL_DELAYER_FLAGS: readonly DelayerFlagDef[] = Object.freeze([
  def({
    name: 'enable-prefill-delayer',
    key: 'enabled',
    type: 'boolean',
    nullable: false,
    default: false,
    range: 'true or false',
    help: 'Negotiate across DP ranks, every scheduling pass, whether new prefill may be admitted, so that prefills line up across ranks and are batched into fewer, larger admissions.',
  }),
  def({
    name: 'prefill-delayer-max-delay-passes',
    key: 'maxDelayPasses',
    type: 'integer',
    nullable: false,
    default: 30,
    min: 1,
    max: Number.MAX_SAFE_INTEGER,
    range: 'an integer >= 1',
    help: 'Pass budget P. When only some DP ranks want to prefill ("mixed"), prefill is delayed at most P-1 consecutive passes; the P-th releases (wait_timeout). Also bounds slot-condition delays with --prefill-delayer-cap-slot-delay, and shapes the forward-pass histogram buckets.',
  }),
  def({
    name: 'prefill-delayer-token-usage-low-watermark',
    key: 'tokenUsageLowWatermark',
    type: 'number',
    nullable: true,
    default: null,
    min: 0,
    max: 1,
    range: 'a number in [0, 1], or unset',
    help: 'If set, a rank that wants to prefill while its KV usage fraction is strictly below this value forces an immediate allow for every rank (token_watermark).',
  }),
  def({
    name: 'prefill-delayer-queue-min-ratio',
    key: 'queueMinRatio',
    type: 'number',
    nullable: true,
    default: null,
    min: 0,
    max: 1,
    range: 'a number in [0, 1], or unset',
    help: 'Turns the queue trigger on (any value, 0 included). While every rank wants to prefill, prefill waits until the longest waiting queue reaches min(trunc(running batch x ratio), max_prefill_bs) or the wait reaches --prefill-delayer-max-delay-ms. Typical 0.1-0.5.',
  }),
  def({
    name: 'prefill-delayer-max-delay-ms',
    key: 'maxDelayMs',
    type: 'number',
    nullable: true,
    default: null,
    min: 0,
    max: Number.MAX_VALUE,
    range: 'a finite number >= 0, or unset (5000)',
    help: 'Wall-clock cap, in milliseconds, of a queue-trigger delay, measured from the start of the delay episode. Unset means 5000. Only read when --prefill-delayer-queue-min-ratio is set. Typical 1000-5000.',
  }),
  def({
    name: 'prefill-delayer-forward-passes-buckets',
    key: 'forwardPassesBuckets',
    type: 'number-list',
    nullable: true,
    default: null,
    min: 0,
    max: Number.MAX_VALUE,
    range: 'a non-empty list of finite numbers >= 0, or unset',
    help: 'Buckets of tsinfer_prefill_delayer_wait_forward_passes. Values >= max-delay-passes are dropped; 0 and max-delay-passes - 1 are always added. Unset: 5,20,50,100,200.',
  }),
  def({
    name: 'prefill-delayer-wait-seconds-buckets',
    key: 'waitSecondsBuckets',
    type: 'number-list',
    nullable: true,
    default: null,
    min: 0,
    max: Number.MAX_VALUE,
    range: 'a non-empty list of finite numbers >= 0, or unset',
    help: 'Buckets of tsinfer_prefill_delayer_wait_seconds; 0 is always added. Unset: 1,2,5,10,20,50,100,200,500.',
  }),
  def({
    name: 'prefill-delayer-cap-slot-delay',
    key: 'capSlotDelay',
    type: 'boolean',
    nullable: false,
    default: false,
    range: 'true or false',
    help: 'Opt-in fix (SGLang delays forever while the slot condition holds): once a delay episode has max-delay-passes - 1 delays, the slot condition stops delaying and the release is labelled wait_timeout.',
  }),
  def({
    name: 'prefill-delayer-max-prefill-bs-window',
    key: 'maxPrefillBsWindow',
    type: 'integer',
    nullable: false,
    default: 0,
    min: 0,
    max: MAX_PREFILL_BS_WINDOW_LIMIT,
    range: `an integer in [0, ${MAX_PREFILL_BS_WINDOW_LIMIT}]`,
    help: 'Opt-in fix (SGLang never lets max_prefill_bs decay): when > 0, max_prefill_bs is the largest admission among the last N passes that admitted at least one request (16 is a good value). 0 keeps the lifetime high-water mark.',
  }),
  def({
    name: 'prefill-delayer-admission-cap',
    key: 'admissionCap',
    type: 'boolean',
    nullable: false,
    default: false,
    range: 'true or false',
    help: 'Opt-in fix (under trickle traffic max_prefill_bs stays near 1 and the queue trigger never holds): cap the queue threshold by --prefill-max-requests instead of the observed max_prefill_bs. No effect while --prefill-max-requests is unset.',
  }),
  def({
    name: 'prefill-max-requests',
    key: 'prefillMaxRequests',
    type: 'integer',
    nullable: true,
    default: null,
    min: 1,
    max: Number.MAX_SAFE_INTEGER,
    range: 'an integer >= 1, or unset',
    help: "The scheduler's hard cap on requests per prefill batch. The delayer reads it only with --prefill-delayer-admission-cap.",
  }),
]);

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`;
  return String(value);
}

function fail(d: DelayerFlagDef, raw: unknown): never {
  throw new InvalidConfigError(d.flag, `must be ${d.range}; got ${show(raw)}`);
}

function toNumber(d: DelayerFlagDef, raw: unknown, whole: unknown): number {
  let v: number;
  if (typeof raw === 'number') v = raw;
  else if (typeof raw === 'string' && raw.trim() !== '') v = Number(raw.trim());
  else return fail(d, whole);
  if (!Number.isFinite(v)) return fail(d, whole);
  if (d.type === 'integer' && !Number.isInteger(v)) return fail(d, whole);
  if (d.min !== undefined && v < d.min) return fail(d, whole);
  if (d.max !== undefined && v > d.max) return fail(d, whole);
  return v === 0 ? 0 : v; // normalise -0
}

/** Checks and converts one flag value (a typed value or its CLI string). `undefined`/`null` give the default. */
function coerce(d: DelayerFlagDef, raw: unknown): boolean | number | readonly number[] | null {
  if (raw === undefined || raw === null) {
    if (raw === null && !d.nullable) return fail(d, raw);
    return d.default;
  }
  switch (d.type) {
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      return fail(d, raw);
    case 'integer':
    case 'number':
      return toNumber(d, raw, raw);
    case 'number-list': {
      let items: readonly unknown[];
      if (Array.isArray(raw)) items = raw;
      else if (typeof raw === 'string') items = raw.split(/[\s,]+/).filter((s) => s !== '');
      else return fail(d, raw);
      if (items.length === 0) return fail(d, raw);
      return Object.freeze(items.map((item) => toNumber(d, item, raw)));
    }
  }
}

function resolve(get: (d: DelayerFlagDef) => unknown): PrefillDelayerConfig {
  const out: Record<string, unknown> = {};
  for (const d of PREFILL_DELAYER_FLAGS) out[d.key] = coerce(d, get(d));
  return out as unknown as PrefillDelayerConfig;
}

/**
 * Builds the config from CLI-style values keyed by flag name without the
 * leading dashes (what `node:util` parseArgs returns), e.g.
 * `{ 'prefill-delayer-queue-min-ratio': '0.25' }`. Values may be strings or
 * already typed; lists may be arrays or comma/space-separated strings.
 * Missing flags take their defaults; keys that are not delayer flags are
 * ignored (the record may hold the whole server's flags).
 * @throws InvalidConfigError naming the flag and its accepted range.
 */
export function parsePrefillDelayerFlags(values: Readonly<Record<string, unknown>>): PrefillDelayerConfig {
  return resolve((d) => values[d.name]);
}

/**
 * Validates a programmatic config: absent fields take their defaults and
 * every present field is checked as its flag would be.
 * @throws InvalidConfigError naming the flag and its accepted range.
 */
export function validatePrefillDelayerConfig(
  config: Readonly<Partial<PrefillDelayerConfig>>,
): PrefillDelayerConfig {
  return resolve((d) => config[d.key]);
}

/** The parallel layout the delayer runs in (server flags `--dp-size`, `--enable-dp-attention`). */
export interface DelayerParallelConfig {
  dpSize: number;
  enableDpAttention: boolean;
}

/**
 * The decision's config from the delayer config and the parallel layout.
 * Turns `admissionCap` + `prefillMaxRequests` into the decision's
 * `admissionCap` number (null when off or when `--prefill-max-requests` is unset).
 */
export function toDecisionConfig(
  config: PrefillDelayerConfig,
  parallel: DelayerParallelConfig,
): DecisionConfig {
  if (!Number.isInteger(parallel.dpSize) || parallel.dpSize < 1) {
    throw new InvalidConfigError('--dp-size', `must be an integer >= 1; got ${show(parallel.dpSize)}`);
  }
  return {
    maxDelayPasses: config.maxDelayPasses,
    tokenUsageLowWatermark: config.tokenUsageLowWatermark,
    queueMinRatio: config.queueMinRatio,
    maxDelayMs: config.maxDelayMs,
    dpSize: parallel.dpSize,
    enableDpAttention: parallel.enableDpAttention,
    capSlotDelay: config.capSlotDelay,
    admissionCap: config.admissionCap ? config.prefillMaxRequests : null,
  };
}
