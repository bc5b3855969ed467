/**
 * The row every rank contributes to the delayer's all-gather: five
 * integers, booleans as 0/1. Token usage itself never crosses ranks; only the
 * watermark bit it produces does. `max_running_requests` is not gathered:
 * each rank uses its own value.
 */

/** 1 if this rank wants to admit prefill this pass, else 0. */
export const COL_PREFILLABLE = 0;
/** 1 iff prefillable AND a watermark is configured AND token usage < watermark (strict). */
export const COL_TOKEN_WATERMARK_FORCE_ALLOW = 1;
/** Size of this rank's running (decode) batch; 0 when not supplied. */
export const COL_RUNNING_BATCH = 2;
/** The scheduler's `max_prefill_bs` (see max-prefill-bs.ts); 0 when not supplied. */
export const COL_MAX_PREFILL_BS = 3;
/** Length of this rank's waiting queue; 0 when not supplied. */
export const COL_WAITING_QUEUE_LEN = 4;
/** Number of columns in a delayer row (the `rowWidth` of the delayer's AllGather). */
export const DELAYER_ROW_WIDTH = 5;

/** The local inputs one rank encodes into its row. */
export interface DelayerRowInput {
  prefillable: boolean;
  /** KV usage fraction in [0, 1] (max over the KV pools), snapshot taken at the start of the pass. */
  tokenUsage: number;
  runningBatch: number;
  maxPrefillBs: number;
  waitingQueueLen: number;
}

/** The watermark bit: only a prefillable rank strictly below a configured watermark forces an allow. */
export function tokenWatermarkBit(
  prefillable: boolean,
  tokenUsage: number,
  tokenUsageLowWatermark: number | null,
): 0 | 1 {
  return prefillable && tokenUsageLowWatermark !== null && tokenUsage < tokenUsageLowWatermark ? 1 : 0;
}

/**
 * Encodes one rank's row: `[prefillable, tokenWatermarkForceAllow, runningBatch, maxPrefillBs, waitingQueueLen]`.
 * Allocates the returned tuple; the per-pass executor uses {@link encodeDelayerRowInto} on a reused buffer.
 */
export function encodeDelayerRow(
  local: DelayerRowInput,
  tokenUsageLowWatermark: number | null,
): [number, number, number, number, number] {
  return [
    local.prefillable ? 1 : 0,
    tokenWatermarkBit(local.prefillable, local.tokenUsage, tokenUsageLowWatermark),
    local.runningBatch,
    local.maxPrefillBs,
    local.waitingQueueLen,
  ];
}

/** Same encoding as {@link encodeDelayerRow}, written into `out` (length ≥ 5) without allocating. */
export function encodeDelayerRowInto(
  out: { [index: number]: number },
  prefillable: boolean,
  tokenUsage: number,
  runningBatch: number,
  maxPrefillBs: number,
  waitingQueueLen: number,
  tokenUsageLowWatermark: number | null,
): void {
  out[COL_PREFILLABLE] = prefillable ? 1 : 0;
  out[COL_TOKEN_WATERMARK_FORCE_ALLOW] = tokenWatermarkBit(prefillable, tokenUsage, tokenUsageLowWatermark);
  out[COL_RUNNING_BATCH] = runningBatch;
  out[COL_MAX_PREFILL_BS] = maxPrefillBs;
  out[COL_WAITING_QUEUE_LEN] = waitingQueueLen;
}
