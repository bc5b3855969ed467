/**
 * The one flag registry of `tsinfer serve`: the server's own flags, the
 * model/runtime flags, and the tables other packages export (the
 * scheduler's `SCHEDULER_FLAGS`, the DP controller's `LOAD_BALANCE_FLAGS`,
 * the prefill delayer's `PREFILL_DELAYER_FLAGS`), composed, never
 * redefined. Both the commander options and docs/cli.md are generated from
 * {@link SERVE_FLAGS}; `pnpm docs:cli` rewrites the doc and a test fails
 * when it is out of date.
 *
 * Names are SGLang's where SGLang has the flag (`--model-path`, `--port`
 * 30000, `--dp-size`, `--max-running-requests`, ...).
 */
import { InvalidConfigError } from '@tsinfer/core';
import { PREFILL_DELAYER_FLAGS } from '@tsinfer/delayer';
import { LOAD_BALANCE_FLAGS, SCHEDULER_FLAGS } from '@tsinfer/scheduler';
import { type Command, Option } from 'commander';
import {
  ENGINE_FLAGS,
  type EngineOptions,
  engineOptionsFromFlags,
  resolveEngineOptions,
} from '../engine/index.js';

export type FlagType = 'boolean' | 'integer' | 'number' | 'string' | 'enum' | 'number-list';

/** Which part of tsinfer reads the flag (the docs/cli.md section). */
export type FlagGroup = 'server' | 'engine' | 'scheduler' | 'load-balance' | 'delayer';

/** One flag of `tsinfer serve`, in the common shape every package table maps to. */
export interface ServeFlagDef {
  /** Spelling without dashes: `max-queued-requests`. */
  readonly name: string;
  /** CLI spelling: `--max-queued-requests`. */
  readonly flag: string;
  readonly group: FlagGroup;
  readonly type: FlagType;
  /** Default shown in help and docs; null = unset. */
  readonly default: boolean | number | string | readonly number[] | null;
  readonly choices?: readonly string[] | undefined;
  /** Accepted values in words. */
  readonly range: string;
  readonly help: string;
  /** Value placeholder for help (`<n>`, `<path>`). */
  readonly valueName: string;
  /** Environment variable read when the flag is absent (only --api-key). */
  readonly env?: string | undefined;
}

export const GROUP_TITLES: Readonly<Record<FlagGroup, string>> = {
  server: 'HTTP server',
  engine: 'Engine: model, runtime, admission',
  scheduler: 'Scheduler (per data-parallel rank)',
  'load-balance': 'Data-parallel dispatch and load snapshots',
  delayer: 'Prefill delayer',
};

export const GROUP_OWNERS: Readonly<Record<FlagGroup, string>> = {
  server: '`@tsinfer/server` (`packages/server/src/cli/flags.ts`)',
  engine:
    'the engine (`ENGINE_FLAGS` in `packages/server/src/engine/options.ts`), plus `--model-cache-dir` of the CLI',
  scheduler: '`@tsinfer/scheduler` (`SCHEDULER_FLAGS`)',
  'load-balance': '`@tsinfer/scheduler` (`LOAD_BALANCE_FLAGS`)',
  delayer: '`@tsinfer/delayer` (`PREFILL_DELAYER_FLAGS`)',
};

function own(d: Omit<ServeFlagDef, 'flag'>): ServeFlagDef {
  return Object.freeze({ ...d, flag: `--${d.name}` });
}

/** The server's own flags. */
export const SERVER_FLAGS: readonly ServeFlagDef[] = Object.freeze([
  own({
    name: 'host',
    group: 'server',
    type: 'string',
    default: '127.0.0.1',
    range: 'a host name or IP address',
    valueName: 'host',
    help: 'Address to listen on. 0.0.0.0 listens on every interface.',
  }),
  own({
    name: 'port',
    group: 'server',
    type: 'integer',
    default: 30000,
    range: 'an integer in [0, 65535] (0: any free port)',
    valueName: 'port',
    help: 'TCP port to listen on (SGLang default 30000).',
  }),
  own({
    name: 'api-key',
    group: 'server',
    type: 'string',
    default: null,
    range: 'a string, or unset',
    valueName: 'key',
    env: 'TSINFER_API_KEY',
    help: 'If set, every endpoint except /health and /metrics needs `Authorization: Bearer <key>` (or `X-API-Key: <key>`); otherwise 401. Read from the environment when the flag is absent.',
  }),
  own({
    name: 'queue-full-retry-after',
    group: 'server',
    type: 'integer',
    default: 1,
    range: 'an integer >= 0 (seconds)',
    valueName: 's',
    help: 'Value of the Retry-After header (seconds) on 503 responses for a full queue or a draining server.',
  }),
  own({
    name: 'max-n',
    group: 'server',
    type: 'integer',
    default: 16,
    range: 'an integer in [1, 1024]',
    valueName: 'n',
    help: 'Largest `n` (completions per prompt) a request may ask for; more is a 400 naming `n`.',
  }),
  own({
    name: 'shutdown-timeout',
    group: 'server',
    type: 'number',
    default: 30,
    range: 'a number >= 0 (seconds)',
    valueName: 's',
    help: 'On SIGTERM/SIGINT the server stops accepting, lets in-flight requests finish for up to this many seconds, then aborts the rest with TSI_ERR_SHUTTING_DOWN and exits 0.',
  }),
  own({
    name: 'log-level',
    group: 'server',
    type: 'enum',
    default: 'info',
    choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    range: 'fatal, error, warn, info, debug, trace or silent',
    valueName: 'level',
    help: 'pino log level of the server (JSON lines on stdout).',
  }),
  own({
    name: 'log-requests',
    group: 'server',
    type: 'boolean',
    default: false,
    range: 'true or false',
    valueName: '',
    help: 'Log every HTTP request and response (fastify request logging) at info level.',
  }),
  own({
    name: 'body-limit',
    group: 'server',
    type: 'integer',
    default: 32 * 1024 * 1024,
    range: 'an integer >= 1024 (bytes)',
    valueName: 'bytes',
    help: 'Largest accepted request body; a larger one gets 413.',
  }),
]);

/** Server-side model flags (the engine's own are `ENGINE_FLAGS`). */
export const MODEL_FLAGS: readonly ServeFlagDef[] = Object.freeze([
  own({
    name: 'model-cache-dir',
    group: 'engine',
    type: 'string',
    default: null,
    range: 'a directory, or unset',
    valueName: 'dir',
    help: 'Where the built-in tiny model is built (once, no download) when --model-path is unset. Unset: $TSINFER_CACHE_DIR/models, else $XDG_CACHE_HOME/tsinfer/models, else ~/.cache/tsinfer/models.',
  }),
]);

const MODEL_PATH_HELP =
  'Model to serve: a directory written by `tsinfer make-model` (or a genai/optimum ONNX export with tokenizer.json), or `sim:<profile>` for the simulated runner (committed profiles: tiny-cpu, small-h100, medium-h100; or a JSON file; see docs/simulation.md). Unset: the built-in `tiny` model, built on first use into --model-cache-dir.';

function fromEngine(): ServeFlagDef[] {
  return ENGINE_FLAGS.map((d) =>
    Object.freeze({
      name: d.name,
      flag: d.flag,
      group: 'engine' as const,
      type: d.type,
      default: d.default,
      choices: d.choices,
      range: d.name === 'model-path' ? `${d.range}; unset: the built-in tiny model` : d.range,
      help: d.name === 'model-path' ? MODEL_PATH_HELP : d.help,
      valueName:
        d.name === 'model-path' ? 'path' : d.type === 'string' ? 'name' : d.type === 'enum' ? 'value' : 'n',
    }),
  );
}

function fromScheduler(): ServeFlagDef[] {
  return SCHEDULER_FLAGS.map((d) =>
    Object.freeze({
      name: d.name,
      flag: d.flag,
      group: 'scheduler' as const,
      type: d.type,
      default: d.default,
      choices: d.choices,
      range: d.range,
      help: d.help,
      valueName: d.type === 'enum' ? 'name' : 'n',
    }),
  );
}

function fromLoadBalance(): ServeFlagDef[] {
  return LOAD_BALANCE_FLAGS.map((d) =>
    Object.freeze({
      name: d.name,
      flag: d.flag,
      group: 'load-balance' as const,
      type: d.type,
      default: d.default,
      choices: d.choices,
      range: d.range,
      help: d.help,
      valueName: d.type === 'enum' ? 'method' : 'n',
    }),
  );
}

function fromDelayer(): ServeFlagDef[] {
  return PREFILL_DELAYER_FLAGS.map((d) =>
    Object.freeze({
      name: d.name,
      flag: d.flag,
      group: 'delayer' as const,
      type: d.type,
      default: d.default,
      range: d.range,
      help: d.help,
      valueName: d.type === 'number-list' ? 'list' : 'n',
    }),
  );
}

/** Every flag of `tsinfer serve`, in help/docs order. Names are unique (a test checks). */
export const SERVE_FLAGS: readonly ServeFlagDef[] = Object.freeze([
  ...SERVER_FLAGS,
  ...fromEngine(),
  ...MODEL_FLAGS,
  ...fromScheduler(),
  ...fromLoadBalance(),
  ...fromDelayer(),
]);

/** The HTTP server's resolved options. */
export interface ServerFlags {
  host: string;
  port: number;
  apiKey: string | null;
  queueFullRetryAfter: number;
  maxN: number;
  shutdownTimeoutMs: number;
  logLevel: string;
  logRequests: boolean;
  bodyLimit: number;
}

/** Everything `tsinfer serve` resolved from its flags. */
export interface ServeConfig {
  server: ServerFlags;
  /** `createEngine` options; `modelPath` is '' when --model-path is unset (the built-in tiny model). */
  engine: EngineOptions;
  modelCacheDir: string | null;
}

function fail(d: ServeFlagDef, raw: unknown): never {
  const shown = typeof raw === 'string' ? JSON.stringify(raw) : String(raw);
  throw new InvalidConfigError(d.flag, `must be ${d.range}; got ${shown}`);
}

function flagDef(name: string): ServeFlagDef {
  const d = SERVE_FLAGS.find((f) => f.name === name);
  if (d === undefined) throw new Error(`unknown flag ${name}`);
  return d;
}

function str(values: Readonly<Record<string, unknown>>, name: string): string | null {
  const d = flagDef(name);
  const raw = values[name] ?? (d.env !== undefined ? process.env[d.env] : undefined);
  if (raw === undefined || raw === null) return d.default as string | null;
  if (typeof raw !== 'string' || raw === '') return fail(d, raw);
  if (d.choices !== undefined && !d.choices.includes(raw)) return fail(d, raw);
  return raw;
}

function num(
  values: Readonly<Record<string, unknown>>,
  name: string,
  opts: { integer: boolean; min: number; max?: number },
): number {
  const d = flagDef(name);
  const raw = values[name];
  if (raw === undefined || raw === null) return d.default as number;
  let v: number;
  if (typeof raw === 'number') v = raw;
  else if (typeof raw === 'string' && raw.trim() !== '') v = Number(raw.trim());
  else return fail(d, raw);
  if (!Number.isFinite(v)) return fail(d, raw);
  if (opts.integer && !Number.isInteger(v)) return fail(d, raw);
  if (v < opts.min) return fail(d, raw);
  if (opts.max !== undefined && v > opts.max) return fail(d, raw);
  return v;
}

function bool(values: Readonly<Record<string, unknown>>, name: string): boolean {
  const d = flagDef(name);
  const raw = values[name];
  if (raw === undefined || raw === null) return d.default as boolean;
  if (typeof raw === 'boolean') return raw;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  return fail(d, raw);
}

/**
 * Resolves every flag from CLI-style values keyed by flag name without the
 * dashes (strings or typed values; absent = default). The engine's,
 * scheduler's, delayer's and load-balance flags are validated by their own
 * parsers (`engineOptionsFromFlags`, `resolveEngineOptions`).
 * @throws InvalidConfigError naming the flag and its accepted range.
 */
export function parseServeFlags(values: Readonly<Record<string, unknown>>): ServeConfig {
  const server: ServerFlags = {
    host: str(values, 'host') as string,
    port: num(values, 'port', { integer: true, min: 0, max: 65535 }),
    apiKey: str(values, 'api-key'),
    queueFullRetryAfter: num(values, 'queue-full-retry-after', { integer: true, min: 0 }),
    maxN: num(values, 'max-n', { integer: true, min: 1, max: 1024 }),
    shutdownTimeoutMs: num(values, 'shutdown-timeout', { integer: false, min: 0 }) * 1000,
    logLevel: str(values, 'log-level') as string,
    logRequests: bool(values, 'log-requests'),
    bodyLimit: num(values, 'body-limit', { integer: true, min: 1024 }),
  };
  const engine = engineOptionsFromFlags(values);
  // Validate every engine flag now (before building a model or starting a
  // thread); a missing --model-path is filled in by `tsinfer serve`.
  resolveEngineOptions({ ...engine, modelPath: engine.modelPath === '' ? 'builtin:tiny' : engine.modelPath });
  return { server, engine, modelCacheDir: str(values, 'model-cache-dir') };
}

/** Commander's attribute name of a flag (`max-queued-requests` → `maxQueuedRequests`). */
export function attributeName(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function showDefault(d: ServeFlagDef): string {
  if (d.default === null) return 'unset';
  if (Array.isArray(d.default)) return d.default.join(',');
  return String(d.default);
}

/**
 * Adds every flag of {@link SERVE_FLAGS} to a commander command. Values stay
 * strings (booleans: switches, also accepting `--flag=false`), so the
 * packages' own parsers see exactly what the user typed; read them back with
 * {@link collectFlagValues}.
 */
export function addServeOptions(command: Command): Command {
  for (const d of SERVE_FLAGS) {
    const help = `${d.help} [${d.range}; default: ${showDefault(d)}]`;
    const opt =
      d.type === 'boolean'
        ? new Option(`${d.flag} [bool]`, help).preset('true')
        : new Option(`${d.flag} <${d.valueName}>`, help);
    if (d.env !== undefined) opt.env(d.env);
    if (d.choices !== undefined && d.type === 'enum' && d.group !== 'load-balance')
      opt.choices([...d.choices]);
    command.addOption(opt);
  }
  return command;
}

/** Flag values keyed by flag name (no dashes) from commander's parsed options. */
export function collectFlagValues(opts: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const d of SERVE_FLAGS) {
    const v = opts[attributeName(d.name)];
    if (v !== undefined) out[d.name] = v;
  }
  return out;
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, '\\|');
}

/** docs/cli.md, generated from {@link SERVE_FLAGS} (`pnpm docs:cli`). */
export function renderCliDoc(): string {
  const lines: string[] = [
    '# CLI',
    '',
    '<!-- Generated from packages/server/src/cli/flags.ts by `pnpm docs:cli`; do not edit by hand. A test fails when this file is out of date. -->',
    '',
    '`tsinfer serve` starts the HTTP server (docs/server.md). Every flag of every package the server',
    'reaches is listed here, generated from the same flag tables the command line is built from. Flag',
    "names are SGLang's where SGLang has the flag. Values are validated by the package that owns the",
    'flag; an invalid value exits with `error TSI_ERR_INVALID_CONFIG: --flag: must be ...` and status 2.',
    '',
    '```sh',
    'pnpm tsinfer serve                                   # built-in tiny model on http://127.0.0.1:30000',
    'pnpm tsinfer serve --model-path sim:tiny-cpu --dp-size 2 --enable-dp-attention --enable-prefill-delayer',
    'pnpm tsinfer serve --model-path ./models/tiny --port 8000 --api-key secret',
    '```',
    '',
    'Boolean flags are switches (`--enable-prefill-delayer`) and also take a value',
    '(`--enable-prefill-delayer=false`). List flags take comma-separated numbers.',
    '',
  ];
  const groups: FlagGroup[] = ['server', 'engine', 'scheduler', 'load-balance', 'delayer'];
  for (const g of groups) {
    lines.push(`## ${GROUP_TITLES[g]}`, '', `Defined by ${GROUP_OWNERS[g]}.`, '');
    lines.push('| flag | default | accepted | meaning |', '|---|---|---|---|');
    for (const d of SERVE_FLAGS.filter((f) => f.group === g)) {
      const name = d.type === 'boolean' ? `\`${d.flag}\`` : `\`${d.flag} <${d.valueName}>\``;
      const env = d.env !== undefined ? ` Env: \`${d.env}\`.` : '';
      lines.push(`| ${name} | \`${showDefault(d)}\` | ${mdEscape(d.range)} | ${mdEscape(d.help)}${env} |`);
    }
    lines.push('');
  }
  lines.push(
    '## Other commands',
    '',
    '- `tsinfer make-model --preset <name> --out <dir> [--seed n] [--dtype fp32|fp16] [--layout genai|optimum]`:',
    '  builds a Llama-architecture ONNX model with seeded random weights (docs/models.md).',
    '',
  );
  return lines.join('\n');
}
