/**
 * The token sampler. One `Sampler` per runner (it owns scratch buffers sized
 * to the vocabulary and is not re-entrant); per-request state lives in a
 * {@link TokenHistory} and an `Rng`.
 *
 * Order of operations in {@link Sampler.sampleFull} (docs/tokenizer-and-sampling.md):
 *
 * 1. repetition penalty (HF): every id seen in prompt or output:
 *    `l > 0 ? l / r : l * r`;
 * 2. frequency and presence penalties (OpenAI), ids generated so far:
 *    `l -= count * frequencyPenalty + presencePenalty` (count > 0);
 * 3. temperature 0 ⇒ greedy: the largest penalized logit, ties to the lowest
 *    id; top-k / top-p / min-p are ignored and no random number is drawn;
 * 4. temperature: weights `w = exp((l - max) / T)` in Float64 (max-subtracted,
 *    so the most likely token has weight exactly 1);
 * 5. top-k (k > 0 and k < vocab): keep the k largest logits, plus every token
 *    tied with the k-th (HF/vLLM keep ties);
 * 6. top-p (< 1): in descending order (ties: lower id first), keep tokens
 *    while the mass before them is < p · Z (Z: mass of what survived top-k),
 *    i.e. the smallest prefix whose mass reaches p; at least one token;
 * 7. min-p (> 0): keep tokens with `w ≥ minP` (probability ≥ minP × the top
 *    probability; the top token always stays);
 * 8. sample: `u = rng.next()` — exactly one draw per sampled token whenever
 *    temperature > 0, even when a single token survives, so a request's
 *    random stream depends only on how many tokens it has sampled (a runner
 *    resuming a retracted request skips that many draws) — then the
 *    inverse CDF over the kept weights, walking them in descending order
 *    (ties: lower id first) when top-k or top-p is active, else in ascending
 *    id order.
 *
 * Logprobs are "raw" (vLLM's default `raw_logprobs`): log-softmax of the
 * model's logits row before penalties, temperature and truncation.
 */
import type { Rng } from '@tsinfer/core';
import { createRng, TsinferError } from '@tsinfer/core';
import type { SamplingParams, TokenLogprobs } from '../contract.js';
import type { TokenHistory } from './history.js';

/**
 * Brings a resumed request's random stream to where it stopped: the sampler
 * draws exactly one number per token sampled with temperature > 0, so a
 * request that had generated `generated` tokens before a retraction skips
 * that many draws.
 */
export function skipSampledDraws(rng: Rng, p: SamplingParams, generated: number): void {
  if (p.temperature <= 0) return;
  for (let i = 0; i < generated; i++) rng.next();
}

/** How much of the logits row a request needs: the runner picks the graph output from it. */
export type SamplingNeed = 'argmax' | 'topk' | 'full';

/** True if any penalty is active. */
export function hasPenalties(p: SamplingParams): boolean {
  return p.repetitionPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0;
}

/**
 * What the runner must fetch for `p`:
 * - `argmax` (k = 1): temperature 0, no penalties, no logprobs — the in-graph argmax is the answer;
 * - `topk` (k = topK): top-k sampling with `topK <= maxGraphTopK`, no penalties, no logprobs —
 *   {@link Sampler.sampleTopK} on the in-graph TopK candidates gives exactly what
 *   {@link Sampler.sampleFull} would (top-p and min-p only look at the top-k survivors);
 * - `full` (k = 0): anything else. Logprobs always need the full row (the raw
 *   log-softmax normalizer is a sum over the whole vocabulary).
 */
export function samplingNeed(p: SamplingParams, maxGraphTopK: number): { need: SamplingNeed; k: number } {
  if (hasPenalties(p) || p.logprobs !== 0) return { need: 'full', k: 0 };
  if (p.temperature <= 0) return { need: 'argmax', k: 1 };
  const topK = Math.floor(p.topK);
  if (topK > 0 && topK <= maxGraphTopK) return { need: 'topk', k: topK };
  return { need: 'full', k: 0 };
}

/** A request's RNG: from its own seed, else from a seed drawn from the runner's seeded RNG. */
export function requestRng(seed: number | null, runnerRng: Rng): Rng {
  return createRng(seed !== null ? seed : runnerRng.int(0, 0xffffffff));
}

/** Max-heap over ids keyed by `keys[id]` (larger first; ties: lower id first). */
function siftDown(heap: Int32Array, n: number, start: number, keys: ArrayLike<number>): void {
  let i = start;
  const id = heap[i]!;
  const key = keys[id]!;
  for (;;) {
    let c = 2 * i + 1;
    if (c >= n) break;
    let cid = heap[c]!;
    let ckey = keys[cid]!;
    const r = c + 1;
    if (r < n) {
      const rid = heap[r]!;
      const rkey = keys[rid]!;
      if (rkey > ckey || (rkey === ckey && rid < cid)) {
        c = r;
        cid = rid;
        ckey = rkey;
      }
    }
    if (ckey > key || (ckey === key && cid < id)) {
      heap[i] = cid;
      i = c;
    } else {
      break;
    }
  }
  heap[i] = id;
}

/** Heapifies the ids already in `heap[0..n)`. */
function heapifyList(heap: Int32Array, n: number, keys: ArrayLike<number>): void {
  for (let i = (n >> 1) - 1; i >= 0; i--) siftDown(heap, n, i, keys);
}

/** The k-th largest value of `row` (1 <= k <= row.length), with a size-k min-heap of values in `buf`. */
function kthLargest(row: Float32Array, k: number, buf: Float32Array): number {
  for (let i = 0; i < k; i++) buf[i] = row[i]!;
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDownMin(buf, k, i);
  for (let i = k; i < row.length; i++) {
    const v = row[i]!;
    if (v > buf[0]!) {
      buf[0] = v;
      siftDownMin(buf, k, 0);
    }
  }
  return buf[0]!;
}

function siftDownMin(buf: Float32Array, n: number, start: number): void {
  let i = start;
  const v = buf[i]!;
  for (;;) {
    let c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && buf[c + 1]! < buf[c]!) c++;
    if (buf[c]! < v) {
      buf[i] = buf[c]!;
      i = c;
    } else {
      break;
    }
  }
  buf[i] = v;
}

/** Pops the top of a heap of size n; returns the id (the heap now has n - 1 entries). */
function heapPop(heap: Int32Array, n: number, keys: ArrayLike<number>): number {
  const top = heap[0]!;
  heap[0] = heap[n - 1]!;
  if (n > 2) siftDown(heap, n - 1, 0, keys);
  return top;
}

/** Index of the largest value, ties to the lowest index (NaN never wins). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  let bestV = Number.NEGATIVE_INFINITY;
  let found = false;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (v > bestV || (!found && v === bestV)) {
      best = i;
      bestV = v;
      found = true;
    }
  }
  return best;
}

export interface SamplerOptions {
  /** Largest top-n of logprobs returned (OpenAI allows 20). Default 20. */
  maxTopLogprobs?: number;
}

export class Sampler {
  readonly vocabSize: number;
  readonly maxTopLogprobs: number;
  /** Penalized logits. */
  private readonly work: Float32Array;
  private readonly heap: Int32Array;
  /** Kept candidates (ids) in sampling order. */
  private readonly cand: Int32Array;
  /** Weights: by candidate position (sorted paths) or by id (unsorted path). */
  private readonly weight: Float64Array;
  /** Weights by id (top-p path). */
  private readonly wById: Float64Array;
  /** k-th largest selection scratch. */
  private readonly kbuf: Float32Array;
  /** sampleTopK scratch, grown to the graph's K. */
  private tkVals = new Float32Array(64);
  private tkIds = new Int32Array(64);
  private lastRow: Float32Array | null = null;
  private lastToken = -1;

  constructor(vocabSize: number, options: SamplerOptions = {}) {
    this.vocabSize = vocabSize;
    this.maxTopLogprobs = options.maxTopLogprobs ?? 20;
    this.work = new Float32Array(vocabSize);
    this.heap = new Int32Array(vocabSize);
    this.cand = new Int32Array(vocabSize);
    this.weight = new Float64Array(vocabSize);
    this.wById = new Float64Array(vocabSize);
    this.kbuf = new Float32Array(vocabSize);
  }

  /**
   * Samples from a full last-position logits row (length ≤ vocabSize; may be
   * a view; never modified). `history` is used only when a penalty is active.
   */
  sampleFull(logits: Float32Array, p: SamplingParams, history: TokenHistory | null, rng: Rng): number {
    const n = logits.length;
    if (n > this.vocabSize || n === 0) {
      throw new TsinferError(
        'TSI_ERR_INVALID_BATCH',
        `logits row of length ${n} for a sampler of vocab ${this.vocabSize}`,
      );
    }
    this.lastRow = logits;
    let src = logits;
    if (hasPenalties(p) && history !== null) {
      const work = n === this.work.length ? this.work : this.work.subarray(0, n);
      work.set(logits);
      applyPenalties(work, p, history);
      src = work;
    }
    const tok = this.sampleRow(src, p, rng);
    this.lastToken = tok;
    return tok;
  }

  private sampleRow(src: Float32Array, p: SamplingParams, rng: Rng): number {
    const n = src.length;
    if (p.temperature <= 0) return argmax(src);
    const u = rng.next();
    let m = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const v = src[i]!;
      if (v > m) m = v;
    }
    if (m === Number.NEGATIVE_INFINITY || !Number.isFinite(m)) return argmax(src); // nothing sampleable
    const invT = 1 / p.temperature;
    const k0 = Math.floor(p.topK); // a fractional top-k is rounded down
    const topK = k0 > 0 && k0 < n ? k0 : 0;
    const topP = Math.min(p.topP, 1);
    const minP = Math.max(p.minP, 0);
    const weight = this.weight;

    if (topK === 0 && topP >= 1) {
      // Unsorted path: weights by id, min-p mask, inverse CDF in id order.
      let total = 0;
      let kept = 0;
      let only = 0;
      for (let i = 0; i < n; i++) {
        const v = src[i]!;
        let w = !Number.isNaN(v) ? Math.exp((v - m) * invT) : 0;
        if (w < minP) w = 0;
        weight[i] = w;
        if (w > 0) {
          total += w;
          kept++;
          only = i;
        }
      }
      if (kept <= 1) return kept === 1 ? only : argmax(src);
      const target = u * total;
      let cum = 0;
      let last = only;
      for (let i = 0; i < n; i++) {
        const w = weight[i]!;
        if (w === 0) continue;
        cum += w;
        last = i;
        if (cum > target) return i;
      }
      return last;
    }

    // Sorted path: candidates in descending order, popped from a max-heap built over a prefilter.
    const heap = this.heap;
    const cand = this.cand;
    let size = 0;
    let cnt = 0;
    if (topK > 0) {
      // Every token >= the k-th largest value (ties included), then sorted.
      const kth = kthLargest(src, topK, this.kbuf);
      for (let i = 0; i < n; i++) if (src[i]! >= kth) heap[size++] = i;
      heapifyList(heap, size, src);
      let total = 0;
      while (size > 0) {
        const id = heapPop(heap, size--, src);
        const v = src[id]!;
        const w = !Number.isNaN(v) ? Math.exp((v - m) * invT) : 0;
        cand[cnt] = id;
        weight[cnt] = w;
        total += w;
        cnt++;
      }
      if (topP < 1) cnt = cutTopP(weight, cnt, topP * total);
    } else {
      const wById = this.wById;
      let total = 0;
      for (let i = 0; i < n; i++) {
        const v = src[i]!;
        const w = !Number.isNaN(v) ? Math.exp((v - m) * invT) : 0;
        wById[i] = w;
        total += w;
      }
      const limit = topP * total;
      // Tokens with weight >= t are a prefix of the descending order; once their mass
      // reaches the limit (with a rounding margin) the nucleus lies inside them.
      for (let t = 1e-3; ; t = t > 1e-15 ? t * 1e-3 : 0) {
        size = 0;
        let mass = 0;
        for (let i = 0; i < n; i++) {
          const w = wById[i]!;
          if (w >= t) {
            heap[size++] = i;
            mass += w;
          }
        }
        if (t === 0 || mass >= limit * (1 + 1e-9)) break;
      }
      heapifyList(heap, size, src);
      let cum = 0;
      while (size > 0 && (cnt === 0 || cum < limit)) {
        const id = heapPop(heap, size--, src);
        const w = wById[id]!;
        cand[cnt] = id;
        weight[cnt] = w;
        cum += w;
        cnt++;
      }
    }
    if (cnt === 0) return argmax(src); // only with NaN logits (a model bug)
    return this.finishSorted(cnt, minP, u);
  }

  /** min-p cut and draw `u` over `cand[0..cnt)` / `weight[0..cnt)` (descending order). */
  private finishSorted(count: number, minP: number, u: number): number {
    const cand = this.cand;
    const weight = this.weight;
    let cnt = count;
    if (minP > 0) {
      let j = 1;
      while (j < cnt && weight[j]! >= minP) j++;
      cnt = j;
    }
    while (cnt > 1 && weight[cnt - 1] === 0) cnt--; // underflowed weights (descending order: at the end)
    if (cnt === 1) return cand[0]!;
    let total = 0;
    for (let j = 0; j < cnt; j++) total += weight[j]!;
    if (!(total > 0)) return cand[0]!;
    const target = u * total;
    let cum = 0;
    for (let j = 0; j < cnt; j++) {
      cum += weight[j]!;
      if (cum > target) return cand[j]!;
    }
    return cand[cnt - 1]!;
  }

  /**
   * Samples from in-graph TopK candidates (`values` descending, `ids` their
   * token ids; K = values.length ≥ p.topK). Same result as
   * {@link sampleFull} on the full row for the parameters that
   * {@link samplingNeed} routes here (except ties at the K-th candidate,
   * which the graph cannot show). Logprobs are not available on this path.
   */
  sampleTopK(values: Float32Array, ids: Int32Array | BigInt64Array, p: SamplingParams, rng: Rng): number {
    this.lastRow = null;
    const K = values.length;
    if (this.tkVals.length < K) {
      this.tkVals = new Float32Array(K);
      this.tkIds = new Int32Array(K);
    }
    const vals = this.tkVals;
    const tids = this.tkIds;
    // Insertion sort by (value desc, id asc): restores the tie order of sampleFull; O(K) when already sorted.
    for (let j = 0; j < K; j++) {
      const v = values[j]!;
      const id = Number(ids[j]!);
      let i = j - 1;
      while (i >= 0 && (vals[i]! < v || (vals[i] === v && tids[i]! > id))) {
        vals[i + 1] = vals[i]!;
        tids[i + 1] = tids[i]!;
        i--;
      }
      vals[i + 1] = v;
      tids[i + 1] = id;
    }
    let tok: number;
    if (K === 0) {
      tok = 0;
    } else if (p.temperature <= 0) {
      tok = tids[0]!;
    } else {
      const u = rng.next();
      const invT = 1 / p.temperature;
      const m = vals[0]!;
      const k0 = Math.floor(p.topK);
      let k = k0 > 0 ? Math.min(k0, K) : K;
      while (k < K && vals[k] === vals[k - 1]) k++;
      const cand = this.cand;
      const weight = this.weight;
      let total = 0;
      for (let j = 0; j < k; j++) {
        const v = vals[j]!;
        const w = !Number.isNaN(v) ? Math.exp((v - m) * invT) : 0;
        cand[j] = tids[j]!;
        weight[j] = w;
        total += w;
      }
      const cnt = p.topP < 1 ? cutTopP(weight, k, p.topP * total) : k;
      tok = this.finishSorted(cnt, Math.max(p.minP, 0), u);
    }
    this.lastToken = tok;
    return tok;
  }

  /**
   * Raw logprobs (log-softmax of the unprocessed logits) of the token just
   * returned by {@link sampleFull}, with the top `p.logprobs` alternatives
   * (descending, ties: lower id; capped at `maxTopLogprobs`; -1: none, only
   * the chosen token's). Reads the row sampleFull last saw, so call it before
   * that buffer is reused. null if `p.logprobs` is 0 or the last call was
   * sampleTopK.
   */
  lastLogprobs(p: SamplingParams): TokenLogprobs | null {
    const row = this.lastRow;
    if (p.logprobs === 0 || row === null || this.lastToken < 0) return null;
    const n = row.length;
    let m = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const v = row[i]!;
      if (v > m) m = v;
    }
    let s = 0;
    for (let i = 0; i < n; i++) {
      const v = row[i]!;
      if (!Number.isNaN(v)) s += Math.exp(v - m);
    }
    const lse = m + Math.log(s);
    const top = p.logprobs < 0 ? 0 : Math.min(p.logprobs, this.maxTopLogprobs, n);
    const topIds = new Int32Array(top);
    const topLogprobs = new Float32Array(top);
    if (top > 0) {
      const heap = this.heap;
      const kth = kthLargest(row, top, this.kbuf);
      let size = 0;
      for (let i = 0; i < n; i++) if (row[i]! >= kth) heap[size++] = i;
      heapifyList(heap, size, row);
      for (let j = 0; j < top; j++) {
        const id = heapPop(heap, size--, row);
        topIds[j] = id;
        topLogprobs[j] = row[id]! - lse;
      }
    }
    return { logprob: row[this.lastToken]! - lse, topIds, topLogprobs };
  }
}

/** Top-p over descending weights: keeps entries while the mass before them is < limit (at least one). */
function cutTopP(weight: Float64Array, cnt: number, limit: number): number {
  let cum = 0;
  let j = 0;
  while (j < cnt && (j === 0 || cum < limit)) {
    cum += weight[j]!;
    j++;
  }
  return j;
}

/** Penalties in place on a copy of the logits (only the ids in the history are touched). */
function applyPenalties(work: Float32Array, p: SamplingParams, h: TokenHistory): void {
  const n = work.length;
  const r = p.repetitionPenalty;
  if (r !== 1) {
    const ids = h.seenIds;
    for (let j = 0; j < h.seenLength; j++) {
      const id = ids[j]!;
      if (id >= n) continue;
      const v = work[id]!;
      work[id] = v > 0 ? v / r : v * r;
    }
  }
  const f = p.frequencyPenalty;
  const pr = p.presencePenalty;
  if (f !== 0 || pr !== 0) {
    const ids = h.generatedIds;
    const counts = h.generatedCount;
    for (let j = 0; j < h.generatedLength; j++) {
      const id = ids[j]!;
      if (id >= n) continue;
      work[id] = work[id]! - (counts[id]! * f + pr);
    }
  }
}
