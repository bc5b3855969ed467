/**
 * Checks a ForwardBatch against what a runner holds before anything changes,
 * so a bad batch (a scheduler bug) leaves the runner's state untouched.
 * Shared by every runner that executes a model (OnnxRunner, NativeRunner).
 */
import type { ForwardBatch } from '../contract.js';
import { InvalidBatchError, KvCapacityError } from '../sim/errors.js';

/** What the runner holds now, and its limits. */
export interface HeldState {
  /** Every held request with its last sampled token (-1: none yet). */
  readonly requests: ReadonlyMap<number, { readonly lastToken: number }>;
  /** Tokens in a held request's cache. */
  kvLength(id: number): number;
  readonly usedTokens: number;
  readonly capacityTokens: number;
  readonly contextLength: number;
  readonly vocabSize: number;
  /** Most requests held at once, and how to name that limit in the error. */
  readonly maxRequests: number;
  readonly maxRequestsName: string;
}

/** Throws InvalidBatchError / KvCapacityError; returns the KV tokens held after the pass. */
export function validateForwardBatch(batch: ForwardBatch, state: HeldState): number {
  const held = new Map<number, number>();
  for (const id of state.requests.keys()) held.set(id, state.kvLength(id));
  let kv = state.usedTokens;
  for (const id of batch.free) {
    const len = held.get(id);
    if (len === undefined) throw new InvalidBatchError(`free: request ${id} is not held`);
    kv -= len;
    held.delete(id);
  }
  const sampled = new Set<number>();
  for (const [id, r] of state.requests) if (r.lastToken >= 0) sampled.add(id);
  for (const req of batch.add) {
    if (!Number.isSafeInteger(req.id) || req.id < 0) {
      throw new InvalidBatchError(`add: request id must be a non-negative integer, got ${req.id}`);
    }
    if (held.has(req.id)) throw new InvalidBatchError(`add: request ${req.id} is already held`);
    if (
      req.promptLength !== undefined &&
      !(Number.isSafeInteger(req.promptLength) && req.promptLength >= 1)
    ) {
      throw new InvalidBatchError(
        `add: request ${req.id} promptLength must be an integer >= 1, got ${req.promptLength}`,
      );
    }
    held.set(req.id, 0);
    sampled.delete(req.id);
  }
  const { contextLength, vocabSize } = state;
  const rows = new Set<number>();
  for (const chunk of batch.prefill) {
    const len = held.get(chunk.id);
    if (len === undefined) throw new InvalidBatchError(`prefill: request ${chunk.id} is not held`);
    if (rows.has(chunk.id))
      throw new InvalidBatchError(`prefill: request ${chunk.id} appears twice in one pass`);
    rows.add(chunk.id);
    if (chunk.start !== len) {
      throw new InvalidBatchError(
        `prefill: request ${chunk.id} chunk starts at ${chunk.start} but its cache holds ${len} tokens`,
      );
    }
    const n = chunk.tokens.length;
    if (n === 0) throw new InvalidBatchError(`prefill: request ${chunk.id} chunk is empty`);
    if (len + n > contextLength) {
      throw new InvalidBatchError(
        `prefill: request ${chunk.id} would reach ${len + n} tokens, context length is ${contextLength}`,
      );
    }
    for (let i = 0; i < n; i++) {
      const t = chunk.tokens[i] as number;
      if (!(t >= 0 && t < vocabSize)) {
        throw new InvalidBatchError(
          `prefill: request ${chunk.id} token ${t} at ${len + i} is outside [0, ${vocabSize})`,
        );
      }
    }
    held.set(chunk.id, len + n);
    if (chunk.sample) sampled.add(chunk.id);
    kv += n;
  }
  for (const id of batch.decode) {
    const len = held.get(id);
    if (len === undefined) throw new InvalidBatchError(`decode: request ${id} is not held`);
    if (rows.has(id)) throw new InvalidBatchError(`decode: request ${id} appears twice in one pass`);
    rows.add(id);
    if (!sampled.has(id)) throw new InvalidBatchError(`decode: request ${id} has no sampled token yet`);
    if (len + 1 > contextLength) {
      throw new InvalidBatchError(
        `decode: request ${id} would reach ${len + 1} tokens, context length is ${contextLength}`,
      );
    }
    held.set(id, len + 1);
    kv += 1;
  }
  if (kv > state.capacityTokens) throw new KvCapacityError(kv, state.capacityTokens);
  if (held.size > state.maxRequests) {
    throw new InvalidBatchError(
      `pass would hold ${held.size} requests, the runner's ${state.maxRequestsName} is ${state.maxRequests}`,
    );
  }
  return kv;
}
