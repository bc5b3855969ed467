import { type Clock, createRng, type Rng, systemClock } from '@tsinfer/core';
import type {
  ForwardBatch,
  ForwardOutput,
  ModelInfo,
  ModelRunner,
  SamplingParams,
  TokenLogprobs,
} from '../contract.js';
import { costOfFeatures, type StepFeatures, stepFeatures } from './cost.js';
import { InvalidBatchError, KvCapacityError } from './errors.js';
import { loadSimProfile, parseModelPath, type SimProfile } from './profile.js';

/** Waits `ms` of (real or virtual) time. */
export type WaitFn = (ms: number) => Promise<void>;

export interface RealTimeWaitOptions {
  /** Default systemClock. */
  readonly clock?: Clock;
  /** Coarse sleep (default setTimeout, which wakes up to ~1 ms late, more on a loaded machine). */
  readonly sleep?: (ms: number) => Promise<void>;
  /** One event-loop turn (default setImmediate), used for the last `spinMs`. */
  readonly yieldTurn?: () => Promise<void>;
  /** The last stretch of each wait is spent yielding turns rather than in a timer. Default 1.5 ms. */
  readonly spinMs?: number;
  /** A wait that starts more than this after the previous one ended forgets that one's overshoot. Default 50 ms. */
  readonly resetMs?: number;
}

/**
 * A real-time wait that keeps a long run of passes on schedule: it sleeps on
 * a timer until `spinMs` before the deadline, then yields event-loop turns
 * until the clock reaches it; whatever a wait overshoots its deadline by
 * (a late timer, a descheduled process) is taken off the next wait that
 * follows within `resetMs`, so overshoot does not accumulate over thousands
 * of 3 ms passes.
 */
export function createRealTimeWait(options: RealTimeWaitOptions = {}): WaitFn {
  const clock = options.clock ?? systemClock;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const yieldTurn = options.yieldTurn ?? (() => new Promise<void>((resolve) => setImmediate(resolve)));
  const spinMs = options.spinMs ?? 1.5;
  const resetMs = options.resetMs ?? 50;
  let debt = 0;
  let lastEnd = Number.NEGATIVE_INFINITY;
  return async (ms) => {
    const now = clock.nowMs();
    if (now - lastEnd > resetMs) debt = 0;
    const deadline = now + Math.max(0, ms) - debt;
    if (deadline - clock.nowMs() > spinMs) await sleep(deadline - clock.nowMs() - spinMs);
    while (clock.nowMs() < deadline) await yieldTurn();
    lastEnd = clock.nowMs();
    debt = lastEnd - deadline;
  };
}

/** Real time on the system clock (see createRealTimeWait). */
export const realTimeWait: WaitFn = createRealTimeWait();

export interface SimRunnerOptions {
  readonly profile: SimProfile;
  /**
   * How a pass's modelled time passes: `realTimeWait` (the default) for real
   * time, `timeline.sleep` of a `VirtualTimeline` for virtual time, or a
   * function that advances a ManualClock and resolves.
   */
  readonly wait?: WaitFn;
  /** Seeds the per-request seeds of sampling requests whose `seed` is null. Default 0. */
  readonly seed?: number;
}

interface RequestState {
  readonly sampling: SamplingParams;
  /** Per-request seed mixed into every sampled token; 0 for greedy requests. */
  readonly seed: number;
  /** Tokens in the KV cache. */
  seqLen: number;
  /** Rolling hash of the tokens in the cache. */
  hash: number;
  /** Last sampled token (the next decode's input), or -1 before the first. */
  lastToken: number;
}

/**
 * A model runner with no math. It keeps each request's sequence exactly as a
 * real runner keeps its KV cache (capacity errors, frees, context limits),
 * samples deterministic tokens from a hash of the request's whole sequence
 * (so the same prompt gives the same tokens whatever the batch around it and
 * however its prompt is chunked), and takes the profile's modelled time for
 * each pass through the injected `wait`.
 */
export class SimRunner implements ModelRunner {
  readonly info: ModelInfo;
  readonly profile: SimProfile;
  readonly #wait: WaitFn;
  readonly #rng: Rng;
  readonly #requests = new Map<number, RequestState>();
  readonly #nonEos: Int32Array;
  readonly #eos: readonly number[];
  #kvUsed = 0;
  #inFlight = false;
  #closed = false;
  #lastCostMs = 0;
  #lastFeatures: StepFeatures | null = null;
  #steps = 0;
  #totalCostMs = 0;

  constructor(options: SimRunnerOptions) {
    const { profile } = options;
    this.profile = profile;
    const m = profile.model;
    this.info = Object.freeze({
      name: m.name,
      vocabSize: m.vocabSize,
      contextLength: m.contextLength,
      eosTokenIds: Object.freeze([...m.eosTokenIds]),
      kvCapacityTokens: m.kvCapacityTokens,
    });
    this.#wait = options.wait ?? realTimeWait;
    this.#rng = createRng(options.seed ?? 0);
    this.#eos = [...new Set(m.eosTokenIds)].sort((a, b) => a - b);
    const eosSet = new Set(this.#eos);
    this.#nonEos = new Int32Array(m.vocabSize - eosSet.size);
    for (let t = 0, j = 0; t < m.vocabSize; t++) if (!eosSet.has(t)) this.#nonEos[j++] = t;
  }

  /** Modelled time of the last pass, in ms (known as soon as `forward` is called, before its wait). */
  get lastStepCostMs(): number {
    return this.#lastCostMs;
  }
  /** The counts of the last pass that the cost model multiplied. */
  get lastStepFeatures(): StepFeatures | null {
    return this.#lastFeatures;
  }
  /** Passes run so far. */
  get steps(): number {
    return this.#steps;
  }
  /** Sum of the modelled times of every pass so far, in ms. */
  get totalCostMs(): number {
    return this.#totalCostMs;
  }
  /** KV tokens held now. */
  get kvUsedTokens(): number {
    return this.#kvUsed;
  }
  /** Requests held now. */
  get heldRequests(): number {
    return this.#requests.size;
  }
  /** Tokens in a request's cache, or undefined when the runner does not hold it. */
  seqLen(id: number): number | undefined {
    return this.#requests.get(id)?.seqLen;
  }

  /** The modelled time of `batch` against the current state, in ms, without running it (the batch is not validated). */
  estimateCostMs(batch: ForwardBatch): number {
    const freed = new Set(batch.free);
    return costOfFeatures(
      this.profile.cost,
      stepFeatures(batch, (id) => (freed.has(id) ? 0 : (this.#requests.get(id)?.seqLen ?? 0))),
    );
  }

  async forward(batch: ForwardBatch): Promise<ForwardOutput> {
    if (this.#closed) throw new InvalidBatchError('forward after close');
    if (this.#inFlight) throw new InvalidBatchError('forward called while another forward is in flight');
    const plan = this.#validate(batch);
    const features = stepFeatures(batch, (id) => plan.seqLenBefore.get(id) ?? 0);
    const costMs = costOfFeatures(this.profile.cost, features);
    const output = this.#apply(batch, plan.kvAfter);
    this.#lastCostMs = costMs;
    this.#lastFeatures = features;
    this.#steps++;
    this.#totalCostMs += costMs;
    this.#inFlight = true;
    try {
      await this.#wait(costMs);
    } finally {
      this.#inFlight = false;
    }
    return output;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#requests.clear();
    this.#kvUsed = 0;
  }

  /** Checks the whole batch against the current state before anything changes. */
  #validate(batch: ForwardBatch): { seqLenBefore: Map<number, number>; kvAfter: number } {
    const held = new Map<number, { seqLen: number; sampled: boolean }>();
    for (const [id, r] of this.#requests) held.set(id, { seqLen: r.seqLen, sampled: r.lastToken >= 0 });
    let kv = this.#kvUsed;
    const freed = new Set<number>();
    for (const id of batch.free) {
      const r = held.get(id);
      if (!r)
        throw new InvalidBatchError(
          `free: request ${id} is not held${freed.has(id) ? ' (freed twice)' : ''}`,
        );
      kv -= r.seqLen;
      held.delete(id);
      freed.add(id);
    }
    for (const req of batch.add) {
      if (!Number.isSafeInteger(req.id) || req.id < 0) {
        throw new InvalidBatchError(`add: request id must be a non-negative integer, got ${req.id}`);
      }
      if (held.has(req.id)) throw new InvalidBatchError(`add: request ${req.id} is already held`);
      held.set(req.id, { seqLen: 0, sampled: false });
    }
    const seqLenBefore = new Map<number, number>();
    for (const [id, r] of held) seqLenBefore.set(id, r.seqLen);
    const { contextLength, vocabSize } = this.info;
    const rows = new Set<number>();
    for (const chunk of batch.prefill) {
      const r = held.get(chunk.id);
      if (!r) throw new InvalidBatchError(`prefill: request ${chunk.id} is not held`);
      if (rows.has(chunk.id))
        throw new InvalidBatchError(`prefill: request ${chunk.id} appears twice in one pass`);
      rows.add(chunk.id);
      if (chunk.start !== r.seqLen) {
        throw new InvalidBatchError(
          `prefill: request ${chunk.id} chunk starts at ${chunk.start} but its cache holds ${r.seqLen} tokens`,
        );
      }
      const n = chunk.tokens.length;
      if (n === 0) throw new InvalidBatchError(`prefill: request ${chunk.id} chunk is empty`);
      if (chunk.start + n > contextLength) {
        throw new InvalidBatchError(
          `prefill: request ${chunk.id} would reach ${chunk.start + n} tokens, context length is ${contextLength}`,
        );
      }
      for (let i = 0; i < n; i++) {
        const t = chunk.tokens[i]!;
        if (t < 0 || t >= vocabSize) {
          throw new InvalidBatchError(
            `prefill: request ${chunk.id} token ${t} at ${chunk.start + i} is outside [0, ${vocabSize})`,
          );
        }
      }
      r.seqLen += n;
      if (chunk.sample) r.sampled = true;
      kv += n;
    }
    for (const id of batch.decode) {
      const r = held.get(id);
      if (!r) throw new InvalidBatchError(`decode: request ${id} is not held`);
      if (rows.has(id)) throw new InvalidBatchError(`decode: request ${id} appears twice in one pass`);
      rows.add(id);
      if (!r.sampled) throw new InvalidBatchError(`decode: request ${id} has no sampled token yet`);
      if (r.seqLen + 1 > contextLength) {
        throw new InvalidBatchError(
          `decode: request ${id} would reach ${r.seqLen + 1} tokens, context length is ${contextLength}`,
        );
      }
      r.seqLen += 1;
      kv += 1;
    }
    const maxBatch = this.profile.model.maxBatch;
    if (maxBatch !== undefined && rows.size > maxBatch) {
      throw new InvalidBatchError(`pass has ${rows.size} rows, the profile's maxBatch is ${maxBatch}`);
    }
    if (kv > this.info.kvCapacityTokens) throw new KvCapacityError(kv, this.info.kvCapacityTokens);
    return { seqLenBefore, kvAfter: kv };
  }

  /** Applies a validated batch and samples. */
  #apply(batch: ForwardBatch, kvAfter: number): ForwardOutput {
    for (const id of batch.free) this.#requests.delete(id);
    for (const req of batch.add) {
      const s = req.sampling;
      const seed = s.temperature === 0 ? 0 : s.seed !== null ? s.seed >>> 0 : this.#rng.int(1, 0xffffffff);
      this.#requests.set(req.id, { sampling: s, seed, seqLen: 0, hash: HASH_INIT, lastToken: -1 });
    }
    const n = batch.prefill.reduce((k, c) => k + (c.sample ? 1 : 0), 0) + batch.decode.length;
    const ids = new Int32Array(n);
    const tokens = new Int32Array(n);
    const logprobs: (TokenLogprobs | null)[] = new Array(n).fill(null);
    let anyLogprobs = false;
    let row = 0;
    const sample = (id: number, r: RequestState): void => {
      const h = mix(r.hash, r.seqLen, r.seed);
      const token = this.#pick(h);
      r.lastToken = token;
      ids[row] = id;
      tokens[row] = token;
      if (r.sampling.logprobs !== 0) {
        logprobs[row] = this.#logprobs(h, token, r.sampling.logprobs);
        anyLogprobs = true;
      }
      row++;
    };
    for (const chunk of batch.prefill) {
      const r = this.#requests.get(chunk.id)!;
      let h = r.hash;
      for (let i = 0; i < chunk.tokens.length; i++) h = step(h, chunk.tokens[i]!);
      r.hash = h;
      r.seqLen += chunk.tokens.length;
      if (chunk.sample) sample(chunk.id, r);
    }
    for (const id of batch.decode) {
      const r = this.#requests.get(id)!;
      r.hash = step(r.hash, r.lastToken);
      r.seqLen += 1;
      sample(id, r);
    }
    this.#kvUsed = kvAfter;
    return { ids, tokens, logprobs: anyLogprobs ? logprobs : null, kvUsedTokens: kvAfter };
  }

  /** A token from hash `h`: EOS with the profile's probability, else a non-EOS token. */
  #pick(h: number): number {
    const p = this.profile.generation.eosProbability;
    if (p > 0 && this.#eos.length > 0 && fmix(h ^ 0x5bd1e995) / 4294967296 < p) {
      return this.#eos[fmix(h ^ 0x1b873593) % this.#eos.length]!;
    }
    return this.#nonEos[h % this.#nonEos.length]!;
  }

  /** Plausible log-probabilities: the chosen token is the most likely; the rest share what is left. */
  #logprobs(h: number, token: number, requested: number): TokenLogprobs {
    const vocab = this.info.vocabSize;
    const k = Math.min(Math.max(requested, 0), vocab);
    const p0 = 0.3 + 0.65 * (fmix(h ^ 0x27d4eb2f) / 4294967296);
    const topIds = new Int32Array(k);
    const topLogprobs = new Float32Array(k);
    const used = new Set<number>();
    let rest = 1 - p0;
    let cand = fmix(h ^ 0x165667b1);
    for (let i = 0; i < k; i++) {
      let id: number;
      let p: number;
      if (i === 0) {
        id = token;
        p = p0;
      } else {
        do {
          cand = fmix(cand + 0x9e3779b9);
          id = cand % vocab;
        } while (used.has(id));
        rest /= 2;
        p = rest;
      }
      used.add(id);
      topIds[i] = id;
      topLogprobs[i] = Math.log(p);
    }
    return { logprob: Math.log(p0), topIds, topLogprobs };
  }
}

const HASH_INIT = 0x811c9dc5;

/** Adds one token to a rolling sequence hash. */
function step(h: number, token: number): number {
  return fmix((Math.imul(h ^ (token + 1), 0x01000193) >>> 0) ^ 0x9e3779b9);
}

/** The hash a sample is drawn from: sequence content, position and seed. */
function mix(h: number, pos: number, seed: number): number {
  return fmix(h ^ fmix(pos + 0x632be5ab) ^ fmix(seed ^ 0x85ebca6b));
}

/** murmur3's 32-bit finaliser. */
function fmix(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Opens the simulated runner for a `--model-path sim:<profile>` value (or a
 * profile path): loads and validates the profile, then builds the runner.
 */
export async function openSimRunner(
  modelPath: string,
  options: Omit<SimRunnerOptions, 'profile'> = {},
): Promise<SimRunner> {
  const parsed = parseModelPath(modelPath.startsWith('sim:') ? modelPath : `sim:${modelPath}`);
  if (parsed.kind !== 'sim') throw new Error('unreachable');
  return new SimRunner({ ...options, profile: await loadSimProfile(parsed.profilePath) });
}
