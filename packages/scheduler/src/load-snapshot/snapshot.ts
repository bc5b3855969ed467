/**
 * The LoadSnapshot record: what one DP rank says about its load, published
 * once per prefill pass, every `--load-snapshot-publish-interval` decode
 * passes, on going idle and on a heartbeat (see ./cadence.ts).
 *
 * Fields are SGLang's (spec §2.1, the newest key set) in camelCase, all
 * numeric, in one fixed layout (SGLang's layout v1 idea: optional sections are
 * flattened with `has*` flags and the disaggregation mode is a small int), plus
 * tsinfer's `ackedDispatchSeq`. `SNAPSHOT_FIELDS` is the single table the
 * shared-memory layout, the copy code and the `/v1/loads` rendering follow.
 *
 * Units: `timestamp` is milliseconds on the `Clock` timeline (`@tsinfer/core`;
 * `systemClock` is shared by every thread of the process, so the controller
 * can compute a snapshot's age). `/v1/loads` reports it in seconds like SGLang.
 */

/** `disaggMode` values; `/v1/loads` shows them as SGLang's strings. */
export const DISAGG_MODE_NULL = 0;
export const DISAGG_MODE_PREFILL = 1;
export const DISAGG_MODE_DECODE = 2;
export const DISAGG_MODE_NAMES = ['null', 'prefill', 'decode'] as const;

/** Number of decode step-time moment sums SGLang carries (`decode_moments`). */
export const DECODE_MOMENTS = 6;

/**
 * The part of a snapshot the DP controller reads on every refresh. These
 * fields come first in the shared layout, so `LoadSnapshotBoard.readLoad`
 * copies only them.
 */
export interface LoadHead {
  /** Build time, ms on the `Clock` timeline. */
  timestamp: number;
  /**
   * Highest dispatch sequence number (`DpDispatcher.lastSeq` of the dispatch
   * that sent it) among the requests this rank has received **and counted in
   * `numTotalTokens`** of this same snapshot. 0 = none yet.
   */
  ackedDispatchSeq: number;
  /** Requests in the running batch. */
  numRunningReqs: number;
  /** Requests waiting (main queue, plus the PD queues as SGLang counts them). */
  numWaitingReqs: number;
  /** KV tokens in use + full seqlen of every waiting request (SGLang's `num_total_tokens`). */
  numTotalTokens: number;
}

/** One rank's load, every field a number (see the table in docs/load-balancing.md). */
export interface LoadSnapshot extends LoadHead {
  dpRank: number;
  numWaitingUncachedTokens: number;
  numUsedTokens: number;
  maxTotalNumTokens: number;
  maxRunningRequests: number;
  tokenUsage: number;
  genThroughput: number;
  cacheHitRate: number;
  utilization: number;
  numActiveTokens: number;
  totalPrefillUncachedTokens: number;
  totalPrefillBusyUs: number;
  /** 1 when `decodeMoments` holds data (SGLang: `decode_moments` non-null). */
  hasDecodeMoments: number;
  decodeMoments0: number;
  decodeMoments1: number;
  decodeMoments2: number;
  decodeMoments3: number;
  decodeMoments4: number;
  decodeMoments5: number;
  hasMemory: number;
  memoryWeightGb: number;
  memoryKvCacheGb: number;
  memoryGraphGb: number;
  memoryTokenCapacity: number;
  hasSpeculative: number;
  specAcceptLength: number;
  specAcceptRate: number;
  hasLora: number;
  loraSlotsUsed: number;
  loraSlotsTotal: number;
  loraUtilization: number;
  /** DISAGG_MODE_NULL | DISAGG_MODE_PREFILL | DISAGG_MODE_DECODE. */
  disaggMode: number;
  disaggPrefillBootstrapQueueReqs: number;
  disaggPrefillInflightQueueReqs: number;
  disaggDecodePreallocQueueReqs: number;
  disaggDecodeTransferQueueReqs: number;
  disaggDecodeRetractedQueueReqs: number;
  disaggKvTransferSpeedGbS: number;
  disaggKvTransferLatencyMs: number;
  queuesWaiting: number;
  queuesGrammar: number;
  queuesPaused: number;
  queuesRetracted: number;
}

export type SnapshotKey = keyof LoadSnapshot;

/** Where a field goes in `/v1/loads`: a core key, a section member, or nowhere (flags, internals). */
export type SnapshotSection =
  | 'core'
  | 'memory'
  | 'speculative'
  | 'lora'
  | 'disaggregation'
  | 'queues'
  | 'internal';

export interface SnapshotFieldDef {
  readonly key: SnapshotKey;
  /** SGLang's name: the core key, or the member name inside its section. */
  readonly wire: string;
  readonly section: SnapshotSection;
  /** Python type in SGLang; decides `3` versus `3.0` in the Prometheus text. */
  readonly kind: 'int' | 'float';
}

function f(
  key: SnapshotKey,
  wire: string,
  section: SnapshotSection,
  kind: 'int' | 'float',
): SnapshotFieldDef {
  return { key, wire, section, kind };
}

/**
 * Every field in layout order (slot offset = index). The first five are
 * `LoadHead`. Keep `SNAPSHOT_FIELDS`, `createLoadSnapshot`, `encodeSnapshot`
 * and `decodeSnapshot` in step (a test checks that every key round-trips).
 */
export const SNAPSHOT_FIELDS: readonly SnapshotFieldDef[] = [
  f('timestamp', 'timestamp', 'core', 'float'),
  f('ackedDispatchSeq', 'acked_dispatch_seq', 'internal', 'int'),
  f('numRunningReqs', 'num_running_reqs', 'core', 'int'),
  f('numWaitingReqs', 'num_waiting_reqs', 'core', 'int'),
  f('numTotalTokens', 'num_total_tokens', 'core', 'int'),
  f('dpRank', 'dp_rank', 'core', 'int'),
  f('numWaitingUncachedTokens', 'num_waiting_uncached_tokens', 'core', 'int'),
  f('numUsedTokens', 'num_used_tokens', 'core', 'int'),
  f('maxTotalNumTokens', 'max_total_num_tokens', 'core', 'int'),
  f('maxRunningRequests', 'max_running_requests', 'core', 'int'),
  f('tokenUsage', 'token_usage', 'core', 'float'),
  f('genThroughput', 'gen_throughput', 'core', 'float'),
  f('cacheHitRate', 'cache_hit_rate', 'core', 'float'),
  f('utilization', 'utilization', 'core', 'float'),
  f('numActiveTokens', 'num_active_tokens', 'core', 'int'),
  f('totalPrefillUncachedTokens', 'total_prefill_uncached_tokens', 'core', 'int'),
  f('totalPrefillBusyUs', 'total_prefill_busy_us', 'core', 'int'),
  f('hasDecodeMoments', 'has_decode_moments', 'internal', 'int'),
  f('decodeMoments0', 'decode_moments', 'internal', 'float'),
  f('decodeMoments1', 'decode_moments', 'internal', 'float'),
  f('decodeMoments2', 'decode_moments', 'internal', 'float'),
  f('decodeMoments3', 'decode_moments', 'internal', 'float'),
  f('decodeMoments4', 'decode_moments', 'internal', 'float'),
  f('decodeMoments5', 'decode_moments', 'internal', 'float'),
  f('hasMemory', 'has_memory', 'internal', 'int'),
  f('memoryWeightGb', 'weight_gb', 'memory', 'float'),
  f('memoryKvCacheGb', 'kv_cache_gb', 'memory', 'float'),
  f('memoryGraphGb', 'graph_gb', 'memory', 'float'),
  f('memoryTokenCapacity', 'token_capacity', 'memory', 'int'),
  f('hasSpeculative', 'has_speculative', 'internal', 'int'),
  f('specAcceptLength', 'accept_length', 'speculative', 'float'),
  f('specAcceptRate', 'accept_rate', 'speculative', 'float'),
  f('hasLora', 'has_lora', 'internal', 'int'),
  f('loraSlotsUsed', 'slots_used', 'lora', 'int'),
  f('loraSlotsTotal', 'slots_total', 'lora', 'int'),
  f('loraUtilization', 'utilization', 'lora', 'float'),
  f('disaggMode', 'mode', 'disaggregation', 'int'),
  f('disaggPrefillBootstrapQueueReqs', 'prefill_bootstrap_queue_reqs', 'disaggregation', 'int'),
  f('disaggPrefillInflightQueueReqs', 'prefill_inflight_queue_reqs', 'disaggregation', 'int'),
  f('disaggDecodePreallocQueueReqs', 'decode_prealloc_queue_reqs', 'disaggregation', 'int'),
  f('disaggDecodeTransferQueueReqs', 'decode_transfer_queue_reqs', 'disaggregation', 'int'),
  f('disaggDecodeRetractedQueueReqs', 'decode_retracted_queue_reqs', 'disaggregation', 'int'),
  f('disaggKvTransferSpeedGbS', 'kv_transfer_speed_gb_s', 'disaggregation', 'float'),
  f('disaggKvTransferLatencyMs', 'kv_transfer_latency_ms', 'disaggregation', 'float'),
  f('queuesWaiting', 'waiting', 'queues', 'int'),
  f('queuesGrammar', 'grammar', 'queues', 'int'),
  f('queuesPaused', 'paused', 'queues', 'int'),
  f('queuesRetracted', 'retracted', 'queues', 'int'),
];

/** Number of float64 fields in a slot. */
export const SNAPSHOT_FIELD_COUNT = SNAPSHOT_FIELDS.length;
/** Number of leading fields that form `LoadHead`. */
export const LOAD_HEAD_FIELD_COUNT = 5;

/** A zeroed record (SGLang's defaults: every field 0, sections absent, mode "null"). */
export function createLoadSnapshot(): LoadSnapshot {
  return {
    timestamp: 0,
    ackedDispatchSeq: 0,
    numRunningReqs: 0,
    numWaitingReqs: 0,
    numTotalTokens: 0,
    dpRank: 0,
    numWaitingUncachedTokens: 0,
    numUsedTokens: 0,
    maxTotalNumTokens: 0,
    maxRunningRequests: 0,
    tokenUsage: 0,
    genThroughput: 0,
    cacheHitRate: 0,
    utilization: 0,
    numActiveTokens: 0,
    totalPrefillUncachedTokens: 0,
    totalPrefillBusyUs: 0,
    hasDecodeMoments: 0,
    decodeMoments0: 0,
    decodeMoments1: 0,
    decodeMoments2: 0,
    decodeMoments3: 0,
    decodeMoments4: 0,
    decodeMoments5: 0,
    hasMemory: 0,
    memoryWeightGb: 0,
    memoryKvCacheGb: 0,
    memoryGraphGb: 0,
    memoryTokenCapacity: 0,
    hasSpeculative: 0,
    specAcceptLength: 0,
    specAcceptRate: 0,
    hasLora: 0,
    loraSlotsUsed: 0,
    loraSlotsTotal: 0,
    loraUtilization: 0,
    disaggMode: DISAGG_MODE_NULL,
    disaggPrefillBootstrapQueueReqs: 0,
    disaggPrefillInflightQueueReqs: 0,
    disaggDecodePreallocQueueReqs: 0,
    disaggDecodeTransferQueueReqs: 0,
    disaggDecodeRetractedQueueReqs: 0,
    disaggKvTransferSpeedGbS: 0,
    disaggKvTransferLatencyMs: 0,
    queuesWaiting: 0,
    queuesGrammar: 0,
    queuesPaused: 0,
    queuesRetracted: 0,
  };
}

/** A zeroed `LoadHead` (what the DP controller reads into). */
export function createLoadHead(): LoadHead {
  return { timestamp: 0, ackedDispatchSeq: 0, numRunningReqs: 0, numWaitingReqs: 0, numTotalTokens: 0 };
}

/** Copies every field of `s` into `out` in layout order (no allocation). */
export function encodeSnapshot(s: LoadSnapshot, out: Float64Array): void {
  out[0] = s.timestamp;
  out[1] = s.ackedDispatchSeq;
  out[2] = s.numRunningReqs;
  out[3] = s.numWaitingReqs;
  out[4] = s.numTotalTokens;
  out[5] = s.dpRank;
  out[6] = s.numWaitingUncachedTokens;
  out[7] = s.numUsedTokens;
  out[8] = s.maxTotalNumTokens;
  out[9] = s.maxRunningRequests;
  out[10] = s.tokenUsage;
  out[11] = s.genThroughput;
  out[12] = s.cacheHitRate;
  out[13] = s.utilization;
  out[14] = s.numActiveTokens;
  out[15] = s.totalPrefillUncachedTokens;
  out[16] = s.totalPrefillBusyUs;
  out[17] = s.hasDecodeMoments;
  out[18] = s.decodeMoments0;
  out[19] = s.decodeMoments1;
  out[20] = s.decodeMoments2;
  out[21] = s.decodeMoments3;
  out[22] = s.decodeMoments4;
  out[23] = s.decodeMoments5;
  out[24] = s.hasMemory;
  out[25] = s.memoryWeightGb;
  out[26] = s.memoryKvCacheGb;
  out[27] = s.memoryGraphGb;
  out[28] = s.memoryTokenCapacity;
  out[29] = s.hasSpeculative;
  out[30] = s.specAcceptLength;
  out[31] = s.specAcceptRate;
  out[32] = s.hasLora;
  out[33] = s.loraSlotsUsed;
  out[34] = s.loraSlotsTotal;
  out[35] = s.loraUtilization;
  out[36] = s.disaggMode;
  out[37] = s.disaggPrefillBootstrapQueueReqs;
  out[38] = s.disaggPrefillInflightQueueReqs;
  out[39] = s.disaggDecodePreallocQueueReqs;
  out[40] = s.disaggDecodeTransferQueueReqs;
  out[41] = s.disaggDecodeRetractedQueueReqs;
  out[42] = s.disaggKvTransferSpeedGbS;
  out[43] = s.disaggKvTransferLatencyMs;
  out[44] = s.queuesWaiting;
  out[45] = s.queuesGrammar;
  out[46] = s.queuesPaused;
  out[47] = s.queuesRetracted;
}

/** Copies the first five fields of `src` (layout order) into `into`. */
export function decodeHead(src: Float64Array, into: LoadHead): void {
  into.timestamp = src[0]!;
  into.ackedDispatchSeq = src[1]!;
  into.numRunningReqs = src[2]!;
  into.numWaitingReqs = src[3]!;
  into.numTotalTokens = src[4]!;
}

/** Copies every field of `src` (layout order) into `into` (no allocation). */
export function decodeSnapshot(src: Float64Array, into: LoadSnapshot): void {
  into.timestamp = src[0]!;
  into.ackedDispatchSeq = src[1]!;
  into.numRunningReqs = src[2]!;
  into.numWaitingReqs = src[3]!;
  into.numTotalTokens = src[4]!;
  into.dpRank = src[5]!;
  into.numWaitingUncachedTokens = src[6]!;
  into.numUsedTokens = src[7]!;
  into.maxTotalNumTokens = src[8]!;
  into.maxRunningRequests = src[9]!;
  into.tokenUsage = src[10]!;
  into.genThroughput = src[11]!;
  into.cacheHitRate = src[12]!;
  into.utilization = src[13]!;
  into.numActiveTokens = src[14]!;
  into.totalPrefillUncachedTokens = src[15]!;
  into.totalPrefillBusyUs = src[16]!;
  into.hasDecodeMoments = src[17]!;
  into.decodeMoments0 = src[18]!;
  into.decodeMoments1 = src[19]!;
  into.decodeMoments2 = src[20]!;
  into.decodeMoments3 = src[21]!;
  into.decodeMoments4 = src[22]!;
  into.decodeMoments5 = src[23]!;
  into.hasMemory = src[24]!;
  into.memoryWeightGb = src[25]!;
  into.memoryKvCacheGb = src[26]!;
  into.memoryGraphGb = src[27]!;
  into.memoryTokenCapacity = src[28]!;
  into.hasSpeculative = src[29]!;
  into.specAcceptLength = src[30]!;
  into.specAcceptRate = src[31]!;
  into.hasLora = src[32]!;
  into.loraSlotsUsed = src[33]!;
  into.loraSlotsTotal = src[34]!;
  into.loraUtilization = src[35]!;
  into.disaggMode = src[36]!;
  into.disaggPrefillBootstrapQueueReqs = src[37]!;
  into.disaggPrefillInflightQueueReqs = src[38]!;
  into.disaggDecodePreallocQueueReqs = src[39]!;
  into.disaggDecodeTransferQueueReqs = src[40]!;
  into.disaggDecodeRetractedQueueReqs = src[41]!;
  into.disaggKvTransferSpeedGbS = src[42]!;
  into.disaggKvTransferLatencyMs = src[43]!;
  into.queuesWaiting = src[44]!;
  into.queuesGrammar = src[45]!;
  into.queuesPaused = src[46]!;
  into.queuesRetracted = src[47]!;
}

/** Copies every field of `src` into `into`. */
export function copySnapshot(src: LoadSnapshot, into: LoadSnapshot): void {
  Object.assign(into, src);
}

/** Age of a snapshot in ms at `nowMs` (same `Clock` timeline as its `timestamp`). */
export function snapshotAgeMs(s: Pick<LoadHead, 'timestamp'>, nowMs: number): number {
  return nowMs - s.timestamp;
}

/**
 * True when the snapshot is older than `maxAgeMs` at `nowMs`. A limit of
 * `Infinity` never expires anything (SGLang's behaviour, flaw F-7).
 */
export function isSnapshotStale(s: Pick<LoadHead, 'timestamp'>, nowMs: number, maxAgeMs: number): boolean {
  return nowMs - s.timestamp > maxAgeMs;
}
