/**
 * `/v1/loads` and the legacy `/get_load`, as pure functions from snapshots to
 * what the server sends (spec §3). The server mounts them:
 *
 *   const q = parseLoadsQuery(request.query);            // throws 400 first
 *   const loads = collectLoads(board, records, q.dpRank); // reads the slots
 *   if (q.format === 'prometheus') reply.type(LOADS_PROMETHEUS_CONTENT_TYPE).send(renderLoadsPrometheus(loads, q));
 *   else reply.send(buildLoadsPayload(loads, q, { version, nowMs: Date.now() }));
 *
 * Differences from SGLang, on purpose: an invalid `include` (or a non-integer
 * `dp_rank`) is a 400 raised before anything is read (flaw F-12); Prometheus
 * names are `tsinfer_*` (F-13: no clash with `/metrics`), carry `# HELP`
 * lines, and the two cumulative counters are typed `counter`; the core keys
 * are SGLang's newest set, so the per-rank snapshot `timestamp` (seconds) is
 * always there (F-13b).
 */
import { TsinferError } from '@tsinfer/core';
import type { LoadSnapshotBoard } from './board.js';
import { DISAGG_MODE_NAMES, type LoadSnapshot, SNAPSHOT_FIELDS, type SnapshotFieldDef } from './snapshot.js';

/** Accepted `include` tokens, in SGLang's (sorted) order. */
export const LOADS_INCLUDE_OPTIONS = ['all', 'core', 'disagg', 'lora', 'memory', 'queues', 'spec'] as const;
export type LoadsIncludeOption = (typeof LOADS_INCLUDE_OPTIONS)[number];

export const LOADS_PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type LoadsSectionName = 'memory' | 'speculative' | 'lora' | 'disaggregation' | 'queues';
const SECTION_OF_TOKEN: Record<string, LoadsSectionName> = {
  memory: 'memory',
  spec: 'speculative',
  lora: 'lora',
  disagg: 'disaggregation',
  queues: 'queues',
};
const SECTION_ORDER: readonly LoadsSectionName[] = [
  'memory',
  'speculative',
  'lora',
  'disaggregation',
  'queues',
];
const PROM_PREFIX: Record<LoadsSectionName, string> = {
  memory: 'memory',
  speculative: 'spec',
  lora: 'lora',
  disaggregation: 'disagg',
  queues: 'queues',
};

export interface LoadsQuery {
  /** `dp_rank`, or null for every rank. */
  dpRank: number | null;
  /** Sections to emit besides core (resolved from `include`). */
  sections: ReadonlySet<LoadsSectionName>;
  format: 'json' | 'prometheus';
}

/** The raw query as an HTTP framework hands it over (strings, or absent). */
export interface RawLoadsQuery {
  dp_rank?: unknown;
  include?: unknown;
  format?: unknown;
}

function queryError(message: string): TsinferError {
  return new TsinferError('TSI_ERR_INVALID_QUERY', message);
}

/**
 * Validates and resolves the query. `include` is checked first: any token
 * outside LOADS_INCLUDE_OPTIONS throws TSI_ERR_INVALID_QUERY (400) with
 * SGLang's message. Then `dp_rank` must be an integer (any integer: an
 * out-of-range rank gives `loads: []`, as in SGLang). `format=prometheus`
 * selects text; anything else JSON.
 */
export function parseLoadsQuery(raw: RawLoadsQuery): LoadsQuery {
  let sections: Set<LoadsSectionName>;
  const include = raw.include;
  if (include === undefined || include === null || include === '') {
    sections = new Set(SECTION_ORDER);
  } else {
    if (typeof include !== 'string') throw queryError('include: must be a comma-separated string');
    const tokens = new Set(include.split(',').map((s) => s.trim()));
    const bad = [...tokens].filter((t) => !(LOADS_INCLUDE_OPTIONS as readonly string[]).includes(t)).sort();
    if (bad.length > 0) {
      throw queryError(
        `Invalid include sections: {${bad.map((b) => `'${b}'`).join(', ')}}. ` +
          `Valid options: [${LOADS_INCLUDE_OPTIONS.map((o) => `'${o}'`).join(', ')}]`,
      );
    }
    if (tokens.has('all')) sections = new Set(SECTION_ORDER);
    else {
      sections = new Set();
      for (const t of tokens) {
        const s = SECTION_OF_TOKEN[t];
        if (s !== undefined) sections.add(s);
      }
    }
  }
  let dpRank: number | null = null;
  const r = raw.dp_rank;
  if (r !== undefined && r !== null && r !== '') {
    const n =
      typeof r === 'number'
        ? r
        : typeof r === 'string' && /^\s*[-+]?\d+\s*$/.test(r)
          ? Number(r)
          : Number.NaN;
    if (!Number.isSafeInteger(n)) throw queryError(`dp_rank: must be an integer, got ${JSON.stringify(r)}`);
    dpRank = n;
  }
  return { dpRank, sections, format: raw.format === 'prometheus' ? 'prometheus' : 'json' };
}

/**
 * Reads the snapshots a query wants from the board into `records` (one
 * preallocated record per rank) and returns the present ones in rank order.
 * `dpRank` outside [0, dpSize) gives [] (SGLang); empty slots are skipped.
 */
export function collectLoads(
  board: LoadSnapshotBoard,
  records: readonly LoadSnapshot[],
  dpRank: number | null,
): LoadSnapshot[] {
  const out: LoadSnapshot[] = [];
  if (dpRank !== null) {
    if (dpRank < 0 || dpRank >= board.dpSize) return out;
    const rec = records[dpRank]!;
    if (board.read(dpRank, rec)) out.push(rec);
    return out;
  }
  for (let r = 0; r < board.dpSize; r++) {
    const rec = records[r]!;
    if (board.read(r, rec)) out.push(rec);
  }
  return out;
}

function sectionPresent(s: LoadSnapshot, name: LoadsSectionName): boolean {
  switch (name) {
    case 'memory':
      return s.hasMemory !== 0;
    case 'speculative':
      return s.hasSpeculative !== 0;
    case 'lora':
      return s.hasLora !== 0;
    default:
      return true; // disaggregation and queues are always produced
  }
}

/** `timestamp` is kept in ms on the Clock timeline; SGLang reports seconds. */
function wireValue(def: SnapshotFieldDef, s: LoadSnapshot): number {
  const v = s[def.key];
  return def.key === 'timestamp' ? v / 1000 : v;
}

const CORE_FIELDS = SNAPSHOT_FIELDS.filter((d) => d.section === 'core');
// SGLang's key order: timestamp, dp_rank, then the rest.
CORE_FIELDS.sort((a, b) => coreRank(a) - coreRank(b));
function coreRank(d: SnapshotFieldDef): number {
  if (d.key === 'timestamp') return -2;
  if (d.key === 'dpRank') return -1;
  return SNAPSHOT_FIELDS.indexOf(d);
}
const SECTION_FIELDS: Record<LoadsSectionName, readonly SnapshotFieldDef[]> = {
  memory: SNAPSHOT_FIELDS.filter((d) => d.section === 'memory'),
  speculative: SNAPSHOT_FIELDS.filter((d) => d.section === 'speculative'),
  lora: SNAPSHOT_FIELDS.filter((d) => d.section === 'lora'),
  disaggregation: SNAPSHOT_FIELDS.filter((d) => d.section === 'disaggregation'),
  queues: SNAPSHOT_FIELDS.filter((d) => d.section === 'queues'),
};

/** One rank's entry of `loads` (SGLang's `LoadSnapshot.to_dict(include)`). */
export function loadToDict(
  s: LoadSnapshot,
  sections: ReadonlySet<LoadsSectionName>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const d of CORE_FIELDS) out[d.wire] = wireValue(d, s);
  out['decode_moments'] =
    s.hasDecodeMoments !== 0
      ? [
          s.decodeMoments0,
          s.decodeMoments1,
          s.decodeMoments2,
          s.decodeMoments3,
          s.decodeMoments4,
          s.decodeMoments5,
        ]
      : null;
  for (const name of SECTION_ORDER) {
    if (!sections.has(name) || !sectionPresent(s, name)) continue;
    const obj: Record<string, unknown> = {};
    for (const d of SECTION_FIELDS[name]) {
      obj[d.wire] = d.key === 'disaggMode' ? (DISAGG_MODE_NAMES[s.disaggMode] ?? 'null') : s[d.key];
    }
    out[name] = obj;
  }
  return out;
}

export interface LoadsPayloadMeta {
  /** tsinfer version string. */
  version: string;
  /** Wall-clock ms of the response (`Date.now()`); the top-level `timestamp` is its ISO-8601 form. */
  nowMs: number;
  /** Device name or null (SGLang's newest `accelerator`). */
  accelerator?: string | null;
  /** SGLang's newest `num_accelerators`. */
  numAccelerators?: number;
}

export interface LoadsPayload {
  timestamp: string;
  version: string;
  accelerator: string | null;
  num_accelerators: number;
  loads: Record<string, unknown>[];
}

/** The JSON body of `GET /v1/loads` (no `aggregate`, no `dp_rank_count`, as SGLang after PR #26348). */
export function buildLoadsPayload(
  loads: readonly LoadSnapshot[],
  query: LoadsQuery,
  meta: LoadsPayloadMeta,
): LoadsPayload {
  return {
    timestamp: new Date(meta.nowMs).toISOString(),
    version: meta.version,
    accelerator: meta.accelerator ?? null,
    num_accelerators: meta.numAccelerators ?? 0,
    loads: loads.map((s) => loadToDict(s, query.sections)),
  };
}

/**
 * A float the way Python's `repr` prints it: shortest round-trip digits,
 * fixed notation for decimal exponents in [-4, 16), scientific otherwise
 * with a sign and at least two exponent digits, and `.0` on integral values
 * (`3.0`, `0.25`, `1e-05`, `1e+16`, `nan`, `inf`).
 */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Number.POSITIVE_INFINITY) return 'inf';
  if (x === Number.NEGATIVE_INFINITY) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mant, expStr] = Math.abs(x).toExponential().split('e') as [string, string];
  const exp = Number(expStr);
  const digits = mant.replace('.', '');
  if (exp < -4 || exp >= 16) {
    const m = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
    const e = Math.abs(exp);
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${e < 10 ? `0${e}` : e}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  if (digits.length <= exp + 1) return `${sign}${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
  return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
}

/** An int the way Python prints it (no exponent, whatever the size). */
function pythonIntRepr(x: number): string {
  const t = Math.trunc(x);
  return Math.abs(t) < 1e21 ? String(t) : BigInt(t).toString();
}

const COUNTER_KEYS = new Set(['totalPrefillUncachedTokens', 'totalPrefillBusyUs']);

interface PromSeries {
  name: string;
  type: 'gauge' | 'counter';
  help: string;
  lines: string[];
}

/**
 * The `format=prometheus` body: for each load in rank order, every numeric
 * core value as `tsinfer_<key>` and every numeric section member as
 * `tsinfer_<prefix>_<member>` (prefix `spec` for speculative, `disagg` for
 * disaggregation), labelled `dp_rank`; strings, lists and nulls skipped;
 * samples grouped per metric in order of first appearance; ints printed as
 * ints and floats as Python prints them. Ends with a newline (an empty body
 * when there are no loads).
 */
export function renderLoadsPrometheus(loads: readonly LoadSnapshot[], query: LoadsQuery): string {
  const series = new Map<string, PromSeries>();
  const add = (name: string, def: SnapshotFieldDef, value: number, rank: number, help: string): void => {
    let ser = series.get(name);
    if (ser === undefined) {
      ser = { name, type: COUNTER_KEYS.has(def.key) ? 'counter' : 'gauge', help, lines: [] };
      series.set(name, ser);
    }
    const text = def.kind === 'int' ? pythonIntRepr(value) : pythonFloatRepr(value);
    ser.lines.push(`${name}{dp_rank="${rank}"} ${text}`);
  };
  for (const s of loads) {
    const rank = s.dpRank;
    for (const d of CORE_FIELDS) {
      if (d.key === 'dpRank') continue;
      add(
        `tsinfer_${d.wire}`,
        d,
        wireValue(d, s),
        rank,
        `Load snapshot ${d.wire} of each DP rank (/v1/loads).`,
      );
    }
    for (const name of SECTION_ORDER) {
      if (!query.sections.has(name) || !sectionPresent(s, name)) continue;
      for (const d of SECTION_FIELDS[name]) {
        if (d.key === 'disaggMode') continue; // a string in SGLang: skipped
        const metric = `tsinfer_${PROM_PREFIX[name]}_${d.wire}`;
        add(metric, d, s[d.key], rank, `Load snapshot ${name}.${d.wire} of each DP rank (/v1/loads).`);
      }
    }
  }
  const out: string[] = [];
  for (const ser of series.values()) {
    out.push(`# HELP ${ser.name} ${ser.help}`, `# TYPE ${ser.name} ${ser.type}`, ...ser.lines);
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

export interface GetLoadEntry {
  dp_rank: number;
  num_reqs: number;
  num_waiting_reqs: number;
  num_tokens: number;
  num_pending_tokens: number;
  ts_tic: number;
}

/**
 * The legacy `GET /get_load` body (deprecated in SGLang): one entry per
 * present rank. `tsTic` is monotonic seconds at the response.
 */
export function buildGetLoad(loads: readonly LoadSnapshot[], tsTic: number): GetLoadEntry[] {
  return loads.map((s) => ({
    dp_rank: s.dpRank,
    num_reqs: s.numRunningReqs + s.numWaitingReqs,
    num_waiting_reqs: s.numWaitingReqs,
    num_tokens: s.numTotalTokens,
    num_pending_tokens: s.numTotalTokens - s.numUsedTokens,
    ts_tic: tsTic,
  }));
}
