/**
 * OnnxRunner: executes ForwardBatches on a decoder-only ONNX model through
 * onnxruntime-node (CPU by default, CUDA when asked).
 *
 * One forward = frees, adds, then
 *   1. new prompts (chunks starting at 0) as right-padded ragged batches with
 *      no past (GroupQueryAttention and the optimum mask both handle that exactly),
 *   2. chunk continuations (chunks with past) as batch-1 runs (GQA requires it),
 *   3. one decode run over every decode row.
 * Each run returns only the last position's argmax / top-k / logits (as the
 * batch needs) and only the K/V rows it wrote (graph augmentation, see
 * ../model/augment.ts); the cache lives in a KvStore.
 */
import { freemem } from 'node:os';
import { createRng, InvalidConfigError, type Rng } from '@tsinfer/core';
import * as ort from 'onnxruntime-node';
import type {
  ForwardBatch,
  ForwardOutput,
  ModelInfo,
  ModelRunner,
  NewRequest,
  SamplingParams,
  TokenLogprobs,
} from '../contract.js';
import { HostKvStore, type KvArray, type KvStore, kvBytesPerToken, kvCapacityTokens } from '../kv/store.js';
import { AUG, augmentGraph } from '../model/augment.js';
import { ModelLoadError } from '../model/errors.js';
import { loadModelDir, type ModelSpec } from '../model/spec.js';
import { externalDataSessionOptions, serializeModel } from '../onnx/model-io.js';
import {
  requestRng,
  Sampler,
  type SamplingNeed,
  samplingNeed,
  skipSampledDraws,
  TokenHistory,
} from '../sampling/index.js';
import type { RunnerStats } from '../worker/protocol.js';
import { Int64Buffer, KvFeed, setI64 } from './buffers.js';
import { checkCudaProvider, type Device, DeviceUnavailableError } from './device.js';
import { ForwardGate } from './forward-gate.js';
import { validateForwardBatch } from './validate-batch.js';

export interface OnnxRunnerOptions {
  /** Model directory (genai_config.json or config.json + model.onnx). */
  modelDir: string;
  /** Execution device (default cpu). */
  device?: Device;
  /** CUDA device id (default 0). */
  deviceId?: number;
  /** onnxruntime intra-op threads (default: onnxruntime's choice, all cores). */
  intraOpThreads?: number;
  /** KV capacity in tokens (`--max-total-tokens`). */
  maxTotalTokens?: number;
  /** Fraction of free host memory for the KV cache when maxTotalTokens is not given (`--mem-fraction-static`, default 0.2). */
  memFractionStatic?: number;
  /** Most requests held at once (default 256). */
  maxRequests?: number;
  /** Width of the in-graph TopK head (default 64): sampling with top-k up to this never fetches full logits. */
  maxTopK?: number;
  /** Seed of the runner's RNG, which seeds requests whose `seed` is null (default 0). */
  seed?: number;
  /** KV block size in tokens (default 16). */
  kvBlockSize?: number;
  /** Decode past length is rounded up to a multiple of this so the decode feed can be reused across steps (default 32). */
  decodePastPadding?: number;
  /**
   * Keep the decode feed (the batch's past, laid out for the session) across
   * steps while the decode rows stay the same, writing only each step's new
   * rows into it (default true). false gathers it from the KV store every
   * step (for measuring).
   */
  reuseDecodeFeed?: boolean;
  /** Let onnxruntime's intra-op threads spin between runs (default false). */
  spinThreads?: boolean;
  /** Apply the LM head to the last positions only (default true; see model/augment.ts). */
  lastPositionLmHead?: boolean;
  /** Test/debug: also fetch each sampled row's last-position logits into `lastLogits`. */
  debugLastLogits?: boolean;
  /** Display name (default: from the config). */
  name?: string;
}

interface ReqState {
  readonly id: number;
  readonly sampling: SamplingParams;
  readonly need: SamplingNeed;
  readonly k: number;
  readonly rng: Rng;
  readonly history: TokenHistory | null;
  /** `NewRequest.promptLength`, or Infinity (the whole fill is prompt). */
  readonly promptLength: number;
  lastToken: number;
}

interface Row {
  readonly req: ReqState;
  /** Tokens already cached (the run's past for this row). */
  readonly past: number;
  readonly tokens: Int32Array;
  /** Output index of the sampled token, or -1. */
  readonly out: number;
}

/** Timing of the last forward's runs, for benchmarks. */
export interface RunnerStepStats {
  runs: number;
  /** Milliseconds inside session.run. */
  sessionMs: number;
  /** Milliseconds of the whole forward. */
  totalMs: number;
}

const NO_OUTPUT = -1;

export class OnnxRunner implements ModelRunner {
  readonly info: ModelInfo;
  readonly spec: ModelSpec;
  readonly kv: KvStore;
  readonly topK: number;
  /** With `debugLastLogits`: the last-position logits of every row sampled by the last forward. */
  readonly lastLogits = new Map<number, Float32Array>();
  lastStep: RunnerStepStats = { runs: 0, sessionMs: 0, totalMs: 0 };

  readonly #session: ort.InferenceSession;
  readonly #opts: OnnxRunnerOptions;
  readonly #requests = new Map<number, ReqState>();
  readonly #rng: Rng;
  readonly #sampler: Sampler;
  readonly #fp16: boolean;
  readonly #kvType: 'float32' | 'float16';
  readonly #ids = new Int64Buffer();
  readonly #mask = new Int64Buffer();
  readonly #pos = new Int64Buffer();
  readonly #rows = new Int64Buffer();
  readonly #kvIndex = new Int64Buffer();
  readonly #decodeFeed: KvFeed;
  readonly #chunkFeed: KvFeed;
  /** What the decode feed holds: its rows (by request object) and past width; null when stale. */
  #decodeCache: { reqs: ReqState[]; P: number } | null = null;
  readonly #gate = new ForwardGate();

  private constructor(
    session: ort.InferenceSession,
    spec: ModelSpec,
    kv: KvStore,
    topK: number,
    opts: OnnxRunnerOptions,
  ) {
    this.#session = session;
    this.spec = spec;
    this.kv = kv;
    this.topK = topK;
    this.#opts = opts;
    this.#rng = createRng(opts.seed ?? 0);
    this.#sampler = new Sampler(spec.vocabSize);
    this.#fp16 = spec.dtype === 'fp16';
    this.#kvType = this.#fp16 ? 'float16' : 'float32';
    this.#decodeFeed = new KvFeed(spec.numLayers, this.#fp16);
    this.#chunkFeed = new KvFeed(spec.numLayers, this.#fp16);
    this.info = Object.freeze({
      name: opts.name ?? spec.name,
      vocabSize: spec.vocabSize,
      contextLength: spec.contextLength,
      eosTokenIds: Object.freeze([...spec.eosTokenIds]),
      kvCapacityTokens: kv.capacityTokens,
    });
  }

  /** Loads the model directory, augments its graph and starts the session. */
  static async create(opts: OnnxRunnerOptions): Promise<OnnxRunner> {
    const device = opts.device ?? 'cpu';
    if (device !== 'cpu' && device !== 'cuda') {
      throw new DeviceUnavailableError(device, `--device: unknown device ${String(device)} (cpu or cuda)`);
    }
    validateOptions(opts);
    if (device === 'cuda') checkCudaProvider();
    const { spec, proto } = await loadModelDir(opts.modelDir);
    const { topK } = augmentGraph(proto, spec, {
      maxTopK: opts.maxTopK ?? 64,
      lastPositionLmHead: opts.lastPositionLmHead ?? true,
    });
    const bytes = serializeModel(proto);
    const ext = externalDataSessionOptions(spec.modelPath);
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      extra: {
        session: {
          ...ext.extra.session,
          // Spinning intra-op threads keep a core busy after each run, which on small hosts
          // starves the JS thread that builds the next step's feeds.
          intra_op: { allow_spinning: opts.spinThreads === true ? '1' : '0' },
        },
      },
      graphOptimizationLevel: 'all',
      executionProviders:
        device === 'cuda' ? [{ name: 'cuda', deviceId: opts.deviceId ?? 0 }, 'cpu'] : ['cpu'],
    };
    if (opts.intraOpThreads !== undefined) sessionOptions.intraOpNumThreads = opts.intraOpThreads;
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, sessionOptions);
    } catch (err) {
      if (device === 'cuda') {
        throw new DeviceUnavailableError(
          'cuda',
          `--device cuda: the CUDA session failed to start (${(err as Error).message}); check that the CUDA 13 and cuDNN 9 libraries are on LD_LIBRARY_PATH and that the provider matches onnxruntime 1.29.0 (\`pnpm gpu:install\`)`,
          { cause: err },
        );
      }
      throw new ModelLoadError(
        spec.modelPath,
        `onnxruntime could not create a session: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    const bytesPerToken = kvBytesPerToken({ ...spec, dtype: spec.dtype });
    let capacity = kvCapacityTokens({
      bytesPerToken,
      maxTotalTokens: opts.maxTotalTokens,
      memFractionStatic: opts.memFractionStatic,
      freeMemoryBytes: freemem(),
    });
    // One K or V array per layer must stay under 2^30 elements.
    const perTokenElems = spec.numKvHeads * spec.headDim;
    capacity = Math.min(
      capacity,
      Math.floor(2 ** 30 / perTokenElems) - (opts.maxRequests ?? 256) * (opts.kvBlockSize ?? 16),
    );
    const kv = new HostKvStore({
      numLayers: spec.numLayers,
      numKvHeads: spec.numKvHeads,
      headDim: spec.headDim,
      dtype: spec.dtype,
      capacityTokens: capacity,
      blockSize: opts.kvBlockSize ?? 16,
      maxRequests: opts.maxRequests ?? 256,
    });
    return new OnnxRunner(session, spec, kv, topK, opts);
  }

  /** Tokens cached for a held request, or undefined. */
  seqLen(id: number): number | undefined {
    return this.#requests.has(id) ? this.kv.length(id) : undefined;
  }

  /** KV usage and the last forward's timing (what a worker reports to the scheduler's load snapshot). */
  stats(): RunnerStats {
    return {
      kvUsedTokens: this.kv.usedTokens,
      kvCapacityTokens: this.kv.capacityTokens,
      heldRequests: this.#requests.size,
      lastSessionMs: this.lastStep.sessionMs,
      lastTotalMs: this.lastStep.totalMs,
    };
  }

  /** Requests held now. */
  get heldRequests(): number {
    return this.#requests.size;
  }

  forward(batch: ForwardBatch): Promise<ForwardOutput> {
    return this.#gate.run(() => this.#forward(batch));
  }

  /** Releases the session and the cache, after an in-flight forward (if any) has finished. */
  async close(): Promise<void> {
    if (!(await this.#gate.close())) return;
    for (const id of [...this.#requests.keys()]) this.kv.free(id);
    this.#requests.clear();
    this.#decodeFeed.release();
    this.#chunkFeed.release();
    await this.#session.release();
  }

  /** Checks the whole batch against the current state before anything changes. */
  #validate(batch: ForwardBatch): number {
    return validateForwardBatch(batch, {
      requests: this.#requests,
      kvLength: (id) => this.kv.length(id),
      usedTokens: this.kv.usedTokens,
      capacityTokens: this.kv.capacityTokens,
      contextLength: this.info.contextLength,
      vocabSize: this.info.vocabSize,
      maxRequests: this.#opts.maxRequests ?? 256,
      maxRequestsName: 'maxRequests',
    });
  }

  async #forward(batch: ForwardBatch): Promise<ForwardOutput> {
    const t0 = performance.now();
    this.#validate(batch);
    this.lastLogits.clear();
    this.lastStep = { runs: 0, sessionMs: 0, totalMs: 0 };
    for (const id of batch.free) {
      this.kv.free(id);
      this.#requests.delete(id);
    }
    for (const req of batch.add) this.#addRequest(req);

    // Reserve every row's KV first (validated above: cannot fail).
    for (const c of batch.prefill) this.kv.reserve(c.id, c.start + c.tokens.length);
    for (const id of batch.decode) this.kv.reserve(id, this.kv.length(id) + 1);

    const nOut = batch.prefill.reduce((k, c) => k + (c.sample ? 1 : 0), 0) + batch.decode.length;
    const outIds = new Int32Array(nOut);
    const outTokens = new Int32Array(nOut);
    const logprobs: (TokenLogprobs | null)[] = new Array(nOut).fill(null);
    let out = 0;
    const fresh: Row[] = [];
    const continued: Row[] = [];
    for (const c of batch.prefill) {
      const req = this.#requests.get(c.id) as ReqState;
      const row: Row = { req, past: c.start, tokens: c.tokens, out: c.sample ? out++ : NO_OUTPUT };
      if (row.out >= 0) outIds[row.out] = c.id;
      req.history?.addFill(c.tokens, c.start, req.promptLength);
      if (c.sample) skipSampledDraws(req.rng, req.sampling, c.start + c.tokens.length - req.promptLength);
      (c.start === 0 ? fresh : continued).push(row);
    }
    const decodeRows: Row[] = [];
    for (const id of batch.decode) {
      const req = this.#requests.get(id) as ReqState;
      outIds[out] = id;
      decodeRows.push({ req, past: this.kv.length(id), tokens: Int32Array.of(req.lastToken), out: out++ });
    }

    const sink = { tokens: outTokens, logprobs };
    for (const group of groupRagged(fresh)) await this.#run(group, 'prefill', sink);
    for (const row of continued) await this.#run([row], 'chunk', sink);
    if (decodeRows.length > 0) await this.#run(decodeRows, 'decode', sink);

    const anyLogprobs = logprobs.some((l) => l !== null);
    this.lastStep.totalMs = performance.now() - t0;
    return {
      ids: outIds,
      tokens: outTokens,
      logprobs: anyLogprobs ? logprobs : null,
      kvUsedTokens: this.kv.usedTokens,
    };
  }

  #addRequest(req: NewRequest): void {
    const p = req.sampling;
    const { need, k } = samplingNeed(p, this.topK);
    const history = need === 'argmax' ? null : new TokenHistory(this.spec.vocabSize);
    const rng = requestRng(p.seed, this.#rng);
    const promptLength = req.promptLength ?? Number.POSITIVE_INFINITY;
    this.#requests.set(req.id, {
      id: req.id,
      sampling: p,
      need,
      k,
      rng,
      history,
      promptLength,
      lastToken: -1,
    });
    this.kv.open(req.id);
  }

  /**
   * One session run over `rows`. prefill: no past, right padded; chunk: one
   * row with past; decode: one new token per row over the batch's past.
   */
  async #run(
    rows: Row[],
    kind: 'prefill' | 'chunk' | 'decode',
    sink: { tokens: Int32Array; logprobs: (TokenLogprobs | null)[] },
  ): Promise<void> {
    const spec = this.spec;
    const io = spec.io;
    const H = spec.numKvHeads;
    const D = spec.headDim;
    const B = rows.length;
    let S = 0;
    let maxPast = 0;
    for (const r of rows) {
      if (r.tokens.length > S) S = r.tokens.length;
      if (r.past > maxPast) maxPast = r.past;
    }
    const optimum = spec.layout === 'optimum';

    // Past feed.
    let P = 0;
    let pastK: KvArray[] = [];
    let pastV: KvArray[] = [];
    const ids = rows.map((r) => r.req.id);
    if (kind === 'chunk') {
      P = maxPast;
      this.#chunkFeed.ensure(B * H * P * D);
      ({ keys: pastK, values: pastV } = this.#chunkFeed.views(B * H * P * D));
      this.kv.gather(ids, [rows[0]?.past ?? 0], P, pastK, pastV);
    } else if (kind === 'decode') {
      const cache = this.#decodeCache;
      if (
        cache !== null &&
        cache.P >= maxPast &&
        this.#opts.reuseDecodeFeed !== false &&
        sameReqs(cache.reqs, rows)
      ) {
        P = cache.P;
        ({ keys: pastK, values: pastV } = this.#decodeFeed.views(B * H * P * D));
      } else {
        const pad = this.#opts.decodePastPadding ?? 32;
        P = Math.min(Math.ceil((maxPast + 1) / pad) * pad, spec.contextLength - 1);
        this.#decodeFeed.ensure(B * H * P * D);
        ({ keys: pastK, values: pastV } = this.#decodeFeed.views(B * H * P * D));
        this.kv.gather(
          ids,
          rows.map((r) => r.past),
          P,
          pastK,
          pastV,
        );
        this.#decodeCache = { reqs: rows.map((r) => r.req), P };
      }
    }
    const T = P + S;

    const feeds: Record<string, ort.Tensor> = {};
    // input_ids [B, S], right padded with each row's last token.
    {
      const { big, words } = this.#ids.take(B * S);
      for (let b = 0; b < B; b++) {
        const t = (rows[b] as Row).tokens;
        const n = t.length;
        for (let s = 0; s < S; s++) setI64(words, b * S + s, t[s < n ? s : n - 1] as number);
      }
      feeds[io.inputIds] = intTensor(big, io.inputIdsType, [B, S]);
    }
    // attention_mask [B, P + S].
    {
      const { big } = this.#mask.take(B * T);
      big.fill(0n);
      for (let b = 0; b < B; b++) {
        const r = rows[b] as Row;
        const n = r.tokens.length;
        const base = b * T;
        if (optimum) {
          // Past keys 0..past-1 valid, then the new tokens after the (padded) past.
          big.fill(1n, base, base + r.past);
          big.fill(1n, base + P, base + P + n);
        } else {
          // GroupQueryAttention reads only the row sum: seqlens_k = past + n - 1, total = P + S.
          big.fill(1n, base, base + r.past + n);
        }
      }
      feeds[io.attentionMask] = intTensor(big, io.attentionMaskType, [B, T]);
    }
    if (io.positionIds !== null) {
      const { big, words } = this.#pos.take(B * S);
      const maxPos = spec.contextLength - 1;
      for (let b = 0; b < B; b++) {
        const r = rows[b] as Row;
        for (let s = 0; s < S; s++)
          setI64(words, b * S + s, Math.min(r.past + Math.min(s, r.tokens.length - 1), maxPos));
      }
      feeds[io.positionIds] = intTensor(big, io.positionIdsType, [B, S]);
    }
    if (io.useCacheBranch !== null) feeds[io.useCacheBranch] = USE_CACHE_TRUE;
    if (io.logitsToKeep !== null) feeds[io.logitsToKeep] = KEEP_ALL_LOGITS;
    for (let l = 0; l < spec.numLayers; l++) {
      feeds[io.pastKeys[l] as string] = new ort.Tensor(
        this.#kvType,
        P === 0 ? emptyKv(this.#fp16) : (pastK[l] as KvArray),
        [B, H, P, D],
      );
      feeds[io.pastValues[l] as string] = new ort.Tensor(
        this.#kvType,
        P === 0 ? emptyKv(this.#fp16) : (pastV[l] as KvArray),
        [B, H, P, D],
      );
    }
    // Augmentation inputs.
    {
      const { big, words } = this.#rows.take(B);
      for (let b = 0; b < B; b++) setI64(words, b, b * S + (rows[b] as Row).tokens.length - 1);
      feeds[AUG.logitRows] = new ort.Tensor('int64', big, [B]);
    }
    {
      const { big, words } = this.#kvIndex.take(B * S);
      for (let b = 0; b < B; b++) {
        const r = rows[b] as Row;
        const base = optimum ? P : r.past;
        for (let s = 0; s < S; s++) setI64(words, b * S + s, base + s);
      }
      feeds[AUG.kvIndex] = new ort.Tensor('int64', big, [B, 1, S, 1]);
    }

    // Fetch only what this run needs.
    let needFull = this.#opts.debugLastLogits === true;
    let needTopK = false;
    let needArgmax = false;
    for (const r of rows) {
      if (r.out < 0) continue;
      if (r.req.need === 'full') needFull = true;
      else if (r.req.need === 'topk') needTopK = true;
      else needArgmax = true;
    }
    const fetches: string[] = [];
    for (let l = 0; l < spec.numLayers; l++) fetches.push(AUG.newKey(l), AUG.newValue(l));
    if (needArgmax) fetches.push(AUG.argmax);
    if (needTopK) fetches.push(AUG.topkValues, AUG.topkIndices);
    if (needFull) fetches.push(AUG.lastLogits);

    const ts = performance.now();
    const res = await this.#session.run(feeds, fetches);
    this.lastStep.sessionMs += performance.now() - ts;
    this.lastStep.runs++;

    // Write the new K/V rows into the store (and into the decode feed, which then stays valid).
    const newK: KvArray[] = [];
    const newV: KvArray[] = [];
    for (let l = 0; l < spec.numLayers; l++) {
      newK.push((res[AUG.newKey(l)] as ort.Tensor).data as KvArray);
      newV.push((res[AUG.newValue(l)] as ort.Tensor).data as KvArray);
    }
    this.kv.write(
      ids,
      rows.map((r) => r.past),
      rows.map((r) => r.tokens.length),
      S,
      newK,
      newV,
    );
    if (kind === 'decode') {
      for (let b = 0; b < B; b++) {
        const past = (rows[b] as Row).past;
        if (past >= P) {
          this.#decodeCache = null;
          break;
        }
        for (let h = 0; h < H; h++) {
          const src = (b * H + h) * D;
          const dst = ((b * H + h) * P + past) * D;
          for (let l = 0; l < spec.numLayers; l++) {
            (pastK[l] as KvArray).set((newK[l] as KvArray).subarray(src, src + D), dst);
            (pastV[l] as KvArray).set((newV[l] as KvArray).subarray(src, src + D), dst);
          }
        }
      }
    }

    // Sample.
    const V = spec.vocabSize;
    const K = this.topK;
    const argmax = needArgmax ? ((res[AUG.argmax] as ort.Tensor).data as BigInt64Array) : null;
    const topVals = needTopK ? ((res[AUG.topkValues] as ort.Tensor).data as Float32Array) : null;
    const topIds = needTopK ? ((res[AUG.topkIndices] as ort.Tensor).data as BigInt64Array) : null;
    const full = needFull ? ((res[AUG.lastLogits] as ort.Tensor).data as Float32Array) : null;
    for (let b = 0; b < B; b++) {
      const r = rows[b] as Row;
      if (r.out < 0) continue;
      const req = r.req;
      let token: number;
      if (req.need === 'argmax') {
        token = Number((argmax as BigInt64Array)[b]);
      } else if (req.need === 'topk') {
        token = this.#sampler.sampleTopK(
          (topVals as Float32Array).subarray(b * K, (b + 1) * K),
          (topIds as BigInt64Array).subarray(b * K, (b + 1) * K),
          req.sampling,
          req.rng,
        );
      } else {
        token = this.#sampler.sampleFull(
          (full as Float32Array).subarray(b * V, (b + 1) * V),
          req.sampling,
          req.history,
          req.rng,
        );
      }
      if (req.need !== 'argmax' && req.sampling.logprobs !== 0)
        sink.logprobs[r.out] = this.#sampler.lastLogprobs(req.sampling);
      if (full !== null && this.#opts.debugLastLogits)
        this.lastLogits.set(req.id, full.slice(b * V, (b + 1) * V));
      req.history?.addGenerated(token);
      req.lastToken = token;
      sink.tokens[r.out] = token;
    }
  }
}

function validateOptions(o: OnnxRunnerOptions): void {
  const posInt = (flag: string, v: number | undefined, min = 1) => {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= min)) {
      throw new InvalidConfigError(flag, `must be an integer >= ${min}, got ${v}`);
    }
  };
  posInt('--max-total-tokens', o.maxTotalTokens);
  posInt('--intra-op-threads', o.intraOpThreads, 0);
  posInt('maxRequests', o.maxRequests);
  posInt('maxTopK', o.maxTopK);
  posInt('kvBlockSize', o.kvBlockSize);
  posInt('decodePastPadding', o.decodePastPadding);
  const f = o.memFractionStatic;
  if (f !== undefined && !(f > 0 && f <= 1))
    throw new InvalidConfigError('--mem-fraction-static', `must be in (0, 1], got ${f}`);
}

function sameReqs(a: readonly ReqState[], rows: readonly Row[]): boolean {
  if (a.length !== rows.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== (rows[i] as Row).req) return false;
  return true;
}

const USE_CACHE_TRUE = new ort.Tensor('bool', Uint8Array.of(1), [1]);
const KEEP_ALL_LOGITS = new ort.Tensor('int64', BigInt64Array.of(0n), []);
const EMPTY_F32 = new Float32Array(0);
const EMPTY_F16 = new Uint16Array(0);
function emptyKv(fp16: boolean): KvArray {
  return fp16 ? EMPTY_F16 : EMPTY_F32;
}

function intTensor(big: BigInt64Array, type: 'int64' | 'int32', dims: number[]): ort.Tensor {
  if (type === 'int64') return new ort.Tensor('int64', big, dims);
  return new ort.Tensor(
    'int32',
    Int32Array.from(big, (v) => Number(v)),
    dims,
  );
}

/**
 * Splits fresh prompts into right-padded ragged batches: longest first, a
 * prompt joins the current batch while the padded size stays within 1.5× the
 * real tokens + 16 (padding is computed and thrown away; the slack lets short
 * prompts share a run).
 */
export function groupRagged<T extends { tokens: { length: number } }>(rows: readonly T[]): T[][] {
  const sorted = [...rows].sort((a, b) => b.tokens.length - a.tokens.length);
  const groups: T[][] = [];
  let cur: T[] = [];
  let width = 0;
  let real = 0;
  for (const r of sorted) {
    const n = r.tokens.length;
    if (cur.length > 0 && (cur.length + 1) * width > 1.5 * (real + n) + 16) {
      groups.push(cur);
      cur = [];
    }
    if (cur.length === 0) {
      width = n;
      real = 0;
    }
    cur.push(r);
    real += n;
  }
  if (cur.length > 0) groups.push(cur);
  return groups;
}
