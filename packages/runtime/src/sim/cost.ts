import type { ForwardBatch } from '../contract.js';

/**
 * The simulator's cost model: the time of one forward pass is a linear
 * function of a few counts of the batch. Every coefficient is in
 * milliseconds and non-negative (calibration fits them by non-negative least
 * squares), so a coefficient the hardware does not show is simply 0.
 */
export interface CostModel {
  /** Every pass, even one that only frees. */
  readonly fixedMs: number;
  /** Once per pass that has at least one prefill chunk. */
  readonly prefillFixedMs: number;
  /** Once per pass that has at least one decode row. */
  readonly decodeFixedMs: number;
  /** Per prefill chunk (a runner that prefills chunks one at a time pays a launch per chunk). */
  readonly perPrefillRequestMs: number;
  /** Per prompt token prefilled. */
  readonly perPrefillTokenMs: number;
  /**
   * Per (query, key) pair of causal attention in prefill: a chunk of `n`
   * tokens at `start` attends `n * start + n * (n + 1) / 2` pairs. The
   * quadratic part of long prompts.
   */
  readonly perPrefillAttentionPairMs: number;
  /** Per decode row. */
  readonly perDecodeRequestMs: number;
  /**
   * Per KV token a row attends: the sum over every row of the pass (prefill
   * chunks and decodes) of its sequence length after the pass.
   */
  readonly perKvTokenReadMs: number;
}

/** The coefficients, in a fixed order (the order of a calibration design matrix's columns). */
export const COST_TERMS = [
  'fixedMs',
  'prefillFixedMs',
  'decodeFixedMs',
  'perPrefillRequestMs',
  'perPrefillTokenMs',
  'perPrefillAttentionPairMs',
  'perDecodeRequestMs',
  'perKvTokenReadMs',
] as const satisfies readonly (keyof CostModel)[];

export type CostTerm = (typeof COST_TERMS)[number];

/** The count each coefficient multiplies, for one pass. */
export type StepFeatures = Record<CostTerm, number>;

/** A cost model with every coefficient 0. */
export const ZERO_COST: CostModel = Object.freeze({
  fixedMs: 0,
  prefillFixedMs: 0,
  decodeFixedMs: 0,
  perPrefillRequestMs: 0,
  perPrefillTokenMs: 0,
  perPrefillAttentionPairMs: 0,
  perDecodeRequestMs: 0,
  perKvTokenReadMs: 0,
});

/**
 * The counts of one pass. `seqLenOf(id)` is the number of tokens in a
 * request's KV cache before the pass (after the batch's frees; 0 for a
 * request added in this batch). Pure: it changes nothing.
 */
export function stepFeatures(batch: ForwardBatch, seqLenOf: (id: number) => number): StepFeatures {
  let prefillTokens = 0;
  let pairs = 0;
  let kv = 0;
  for (const chunk of batch.prefill) {
    const n = chunk.tokens.length;
    prefillTokens += n;
    pairs += n * chunk.start + (n * (n + 1)) / 2;
    kv += chunk.start + n;
  }
  for (const id of batch.decode) kv += seqLenOf(id) + 1;
  return {
    fixedMs: 1,
    prefillFixedMs: batch.prefill.length > 0 ? 1 : 0,
    decodeFixedMs: batch.decode.length > 0 ? 1 : 0,
    perPrefillRequestMs: batch.prefill.length,
    perPrefillTokenMs: prefillTokens,
    perPrefillAttentionPairMs: pairs,
    perDecodeRequestMs: batch.decode.length,
    perKvTokenReadMs: kv,
  };
}

/** The modelled time of a pass with these counts, in ms. */
export function costOfFeatures(cost: CostModel, features: StepFeatures): number {
  let ms = 0;
  for (const term of COST_TERMS) ms += cost[term] * features[term];
  return ms;
}

/** The modelled time of `batch` in ms, given each request's cache length before the pass. Pure. */
export function stepCostMs(cost: CostModel, batch: ForwardBatch, seqLenOf: (id: number) => number): number {
  return costOfFeatures(cost, stepFeatures(batch, seqLenOf));
}
