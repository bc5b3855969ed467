/**
 * PrefillAdder: builds one prefill batch under the pass's budgets, with
 * SGLang's arithmetic (schedule_policy.py `PrefillAdder`, page size 1, no
 * prefix cache):
 *
 * - `remTotalTokens` = free KV − (reservation for the running batch's future
 *   decode + for every request admitted this pass: its input tokens + its
 *   clipped remaining max_new_tokens). A request whose input + clipped
 *   remaining max_new_tokens does not fit strictly under it is refused
 *   (NO_TOKEN: the batch is full until something finishes).
 * - `remInputTokens` = `--max-prefill-tokens` minus what the batch already
 *   prefills; a request that would reach it is refused (OTHER) unless it is
 *   the first of the batch.
 * - `remChunkTokens` = `--chunked-prefill-size` minus the same; a request
 *   longer than what is left is admitted with a truncated first chunk and
 *   becomes the rank's chunked request, which continues first thing in the
 *   following passes (`addChunkedReq`) until its last chunk. Its future
 *   decode is reserved only with its last chunk.
 *
 * The adder is one object per scheduler, reset every pass: no allocation per
 * pass beyond the growth of its reused arrays.
 */
import type { Request } from './request.js';

/** Results of `addOneReq` (SGLang's AddReqResult). */
export const ADD_CONTINUE = 0;
/** KV budget exhausted: the batch is full until a running request leaves. */
export const ADD_NO_TOKEN = 1;
/** Another budget (input tokens, chunk, delayer, request count) stopped this batch. */
export const ADD_OTHER = 2;
export type AddResult = typeof ADD_CONTINUE | typeof ADD_NO_TOKEN | typeof ADD_OTHER;

export class PrefillAdder {
  /** Requests in this batch, in batch order. */
  readonly canRun: Request[] = [];
  /** Tokens of each `canRun` entry prefilled this pass. */
  readonly chunkLens: number[] = [];
  /** Number of entries of canRun/chunkLens valid this pass. */
  count = 0;
  /** The request admitted this pass with a truncated chunk (it continues next pass), or null. */
  newChunkedReq: Request | null = null;
  remInputTokens = 0;
  /** Infinity when chunked prefill is off. */
  remChunkTokens = Number.POSITIVE_INFINITY;
  chunking = false;
  remTotalTokenOffset = 0;
  curRemTokenOffset = 0;
  available = 0;
  clip = 4096;
  /** Prompt tokens this batch prefills. */
  inputTokens = 0;

  /**
   * Starts a batch. `available`: free KV tokens now. `runningReservation`:
   * see budget.ts. `chunkSize` null disables chunking.
   */
  reset(
    available: number,
    runningReservation: number,
    maxPrefillTokens: number,
    chunkSize: number | null,
    clip: number,
  ): void {
    this.count = 0;
    this.newChunkedReq = null;
    this.available = available;
    this.remInputTokens = maxPrefillTokens;
    this.chunking = chunkSize !== null;
    this.remChunkTokens = chunkSize ?? Number.POSITIVE_INFINITY;
    this.remTotalTokenOffset = runningReservation;
    this.curRemTokenOffset = 0;
    this.clip = clip;
    this.inputTokens = 0;
  }

  get remTotalTokens(): number {
    return this.available - this.remTotalTokenOffset;
  }

  get curRemTokens(): number {
    return this.available - this.curRemTokenOffset;
  }

  budgetState(): AddResult {
    if (this.remTotalTokens <= 0 || this.curRemTokens <= 0) return ADD_NO_TOKEN;
    if (this.remInputTokens <= 0 || this.remChunkTokens <= 0) return ADD_OTHER;
    return ADD_CONTINUE;
  }

  #push(req: Request, tokens: number, reservedNew: number): void {
    const i = this.count++;
    this.canRun[i] = req;
    this.chunkLens[i] = tokens;
    this.remTotalTokenOffset += tokens + reservedNew;
    this.curRemTokenOffset += tokens;
    this.remInputTokens -= tokens;
    this.remChunkTokens -= tokens;
    this.inputTokens += tokens;
  }

  #clippedNew(req: Request): number {
    const rem = req.remainingNewTokens;
    return Math.min(rem, this.clip);
  }

  /**
   * Continues the rank's chunked request with its next chunk: as much as the
   * chunk budget and the KV budget allow. Returns true if the request is
   * still not fully prefilled after this chunk (it stays the chunked
   * request), false if this is its last chunk. When no KV budget is left this
   * pass the request is not added (returns true; it continues later).
   */
  addChunkedReq(req: Request): boolean {
    const remTotal = Math.trunc(this.remTotalTokens);
    const room = Math.min(this.remChunkTokens, remTotal);
    if (room <= 0) return true;
    const extend = req.extendInputLen;
    const truncated = extend > room;
    const n = truncated ? room : extend;
    this.#push(req, n, truncated ? 0 : this.#clippedNew(req));
    return truncated;
  }

  /** Tries to admit a waiting request (SGLang `add_one_req`, without the delayer, which the caller consults). */
  addOneReq(req: Request): AddResult {
    const input = req.extendInputLen;
    const totalTokens = input + this.#clippedNew(req);
    if (totalTokens >= this.remTotalTokens) return ADD_NO_TOKEN;
    if (input >= this.remInputTokens && this.count !== 0) return ADD_OTHER;
    if (!this.chunking || input <= this.remChunkTokens) {
      this.#push(req, input, this.#clippedNew(req));
    } else {
      const trunc = this.remChunkTokens;
      if (trunc <= 0) return ADD_OTHER;
      this.#push(req, trunc, 0);
      this.newChunkedReq = req;
    }
    return this.budgetState();
  }
}
