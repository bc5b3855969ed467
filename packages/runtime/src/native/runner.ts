/**
 * NativeRunner: the ModelRunner over the native backend (../../native), whose
 * KV cache stays in buffers owned by onnxruntime (device memory under CUDA,
 * host memory on CPU) and is bound in place as past and present of
 * GroupQueryAttention (share-buffer mode), so no step copies the cache
 * through JavaScript.
 *
 * One forward = frees, adds, then
 *   1. each prefill chunk as a batch-1 run straight into its request's cache
 *      row (GroupQueryAttention requires batch 1 when there is past; a first
 *      chunk runs with total = S, i.e. as a first prompt),
 *   2. decode runs over contiguous slot ranges covering every decode row;
 *      idle rows inside a range get a dummy token whose K/V lands where
 *      nothing valid is (a free row's position 0, a held row's first unused
 *      position).
 * Every run returns only the reduced last-position outputs the batch needs
 * (ArgMax / TopK / logits rows, the JS backend's graph augmentation), and the
 * JS Sampler samples exactly as OnnxRunner does. The run itself executes on
 * libuv's thread pool, so the thread owning the runner stays responsive.
 */
import { freemem } from 'node:os';
import { createRng, InvalidConfigError, type Rng } from '@tsinfer/core';
import type {
  ForwardBatch,
  ForwardOutput,
  ModelInfo,
  ModelRunner,
  NewRequest,
  SamplingParams,
  TokenLogprobs,
} from '../contract.js';
import type { Device } from '../execution/device.js';
import { checkCudaProvider, DeviceUnavailableError } from '../execution/device.js';
import { ForwardGate } from '../execution/forward-gate.js';
import type { OnnxRunnerOptions, RunnerStepStats } from '../execution/onnx-runner.js';
import { validateForwardBatch } from '../execution/validate-batch.js';
import { kvBytesPerToken, kvCapacityTokens } from '../kv/store.js';
import { augmentGraph } from '../model/augment.js';
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
import { stripNewKvOutputs } from './graph.js';
import {
  type NativeBinding,
  type NativeEngine,
  type NativeRunResult,
  NativeUnavailableError,
  requireNativeBackend,
} from './loader.js';
import { SlotKvStore } from './slot-store.js';

export interface NativeRunnerOptions extends OnnxRunnerOptions {
  /**
   * Cache rows = requests held at once (default: min(maxRequests, capacity / maxSeqLen), at least 1).
   * The cache takes maxSlots × maxSeqLen × (K+V bytes per token) of device memory.
   */
  maxSlots?: number;
  /** Positions per cache row = the longest sequence a request may reach (default: min(context length, capacity)). */
  maxSeqLen?: number;
  /** Idle rows a decode run may span between two decode rows before it is split in two runs (default 8). */
  decodeGap?: number;
  /** The binding to use (default: loadNativeBackend()). */
  binding?: NativeBinding;
}

interface ReqState {
  readonly id: number;
  readonly sampling: SamplingParams;
  readonly need: SamplingNeed;
  readonly rng: Rng;
  readonly history: TokenHistory | null;
  /** `NewRequest.promptLength`, or Infinity (the whole fill is prompt). */
  readonly promptLength: number;
  lastToken: number;
}

/** One row of a run that samples: its request and its output index. */
interface SampleRow {
  readonly req: ReqState;
  /** Index among the run's logit rows. */
  readonly row: number;
  readonly out: number;
}

export class NativeRunner implements ModelRunner {
  readonly info: ModelInfo;
  readonly spec: ModelSpec;
  readonly kv: SlotKvStore;
  readonly topK: number;
  readonly device: Device;
  /** With `debugLastLogits`: the last-position logits of every row sampled by the last forward. */
  readonly lastLogits = new Map<number, Float32Array>();
  lastStep: RunnerStepStats = { runs: 0, sessionMs: 0, totalMs: 0 };

  readonly #engine: NativeEngine;
  readonly #opts: NativeRunnerOptions;
  readonly #requests = new Map<number, ReqState>();
  readonly #rng: Rng;
  readonly #sampler: Sampler;
  readonly #hasPositions: boolean;
  readonly #gate = new ForwardGate();

  private constructor(
    engine: NativeEngine,
    spec: ModelSpec,
    kv: SlotKvStore,
    topK: number,
    device: Device,
    opts: NativeRunnerOptions,
  ) {
    this.#engine = engine;
    this.spec = spec;
    this.kv = kv;
    this.topK = topK;
    this.device = device;
    this.#opts = opts;
    this.#rng = createRng(opts.seed ?? 0);
    this.#sampler = new Sampler(spec.vocabSize);
    this.#hasPositions = spec.io.positionIds !== null;
    this.info = Object.freeze({
      name: opts.name ?? spec.name,
      vocabSize: spec.vocabSize,
      contextLength: kv.maxSeq,
      eosTokenIds: Object.freeze([...spec.eosTokenIds]),
      kvCapacityTokens: kv.capacityTokens,
    });
  }

  /** Loads the model directory, augments its graph and starts the session and cache in the addon. */
  static async create(opts: NativeRunnerOptions): Promise<NativeRunner> {
    const binding = opts.binding ?? requireNativeBackend();
    const device = opts.device ?? 'cpu';
    if (device !== 'cpu' && device !== 'cuda') {
      throw new DeviceUnavailableError(device, `--device: unknown device ${String(device)} (cpu or cuda)`);
    }
    validateOptions(opts);
    if (device === 'cuda') checkCudaProvider();
    const { spec, proto } = await loadModelDir(opts.modelDir);
    if (spec.layout !== 'genai') {
      throw new NativeUnavailableError(
        `--runtime-backend native: ${spec.configPath} is an ${spec.layout}-layout model; the native backend needs the genai layout (GroupQueryAttention, whose share-buffer mode keeps the cache in place). Use --runtime-backend js.`,
      );
    }
    if (device === 'cuda' && spec.dtype !== 'fp16') {
      // GroupQueryAttention has no fp32 CUDA kernel: it falls back to CPU behind copies of the
      // bound cache, share-buffer mode is lost and decode goes wrong (specs/gpu-measurements.md).
      throw new NativeUnavailableError(
        `--runtime-backend native --device cuda: ${spec.modelPath} is ${spec.dtype}; the device-resident cache needs an fp16 model (GroupQueryAttention has no fp32 CUDA kernel)`,
      );
    }
    const { topK } = augmentGraph(proto, spec, {
      maxTopK: opts.maxTopK ?? 64,
      lastPositionLmHead: opts.lastPositionLmHead ?? true,
    });
    stripNewKvOutputs(proto, spec);
    const bytes = serializeModel(proto);

    const bytesPerToken = kvBytesPerToken(spec);
    const capacity = kvCapacityTokens({
      bytesPerToken,
      maxTotalTokens: opts.maxTotalTokens,
      memFractionStatic: opts.memFractionStatic,
      freeMemoryBytes: freemem(),
    });
    const maxSeq = Math.min(spec.contextLength, opts.maxSeqLen ?? spec.contextLength, capacity);
    const maxSlots =
      opts.maxSlots ?? Math.min(opts.maxRequests ?? 256, Math.max(1, Math.floor(capacity / maxSeq)));
    const io = spec.io;
    let engine: NativeEngine;
    try {
      engine = await binding.createEngine(bytes, {
        device,
        deviceId: opts.deviceId ?? 0,
        intraOpThreads: opts.intraOpThreads ?? 0,
        spinThreads: opts.spinThreads === true,
        // onnxruntime-node turns `extra.session.x` into the session config entry `session.x`; so do we.
        sessionConfig: Object.fromEntries(
          Object.entries(externalDataSessionOptions(spec.modelPath).extra.session).map(([k, v]) => [
            `session.${k}`,
            v,
          ]),
        ),
        numLayers: spec.numLayers,
        numKvHeads: spec.numKvHeads,
        headDim: spec.headDim,
        maxSlots,
        maxSeq,
        dtype: spec.dtype,
        inputIds: io.inputIds,
        attentionMask: io.attentionMask,
        positionIds: io.positionIds ?? '',
        inputIdsInt32: io.inputIdsType === 'int32',
        attentionMaskInt32: io.attentionMaskType === 'int32',
        positionIdsInt32: io.positionIdsType === 'int32',
        pastKeys: io.pastKeys,
        pastValues: io.pastValues,
        presentKeys: io.presentKeys,
        presentValues: io.presentValues,
      });
    } catch (err) {
      if (device === 'cuda') {
        throw new DeviceUnavailableError(
          'cuda',
          `--device cuda: the native CUDA session failed to start (${(err as Error).message}); check that the CUDA 13 and cuDNN 9 libraries are on LD_LIBRARY_PATH and that the provider matches onnxruntime 1.29.0 (\`pnpm gpu:install\`)`,
          { cause: err },
        );
      }
      throw new ModelLoadError(
        spec.modelPath,
        `the native backend could not start: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    const kv = new SlotKvStore(
      {
        capacityTokens: Math.min(capacity, maxSlots * maxSeq),
        maxSlots,
        maxSeq,
        numLayers: spec.numLayers,
        numKvHeads: spec.numKvHeads,
        headDim: spec.headDim,
      },
      engine,
    );
    return new NativeRunner(engine, spec, kv, topK, device, opts);
  }

  /** Tokens cached for a held request, or undefined. */
  seqLen(id: number): number | undefined {
    return this.#requests.has(id) ? this.kv.length(id) : undefined;
  }

  /** Bytes of the device-resident cache. */
  get kvBytes(): number {
    return this.#engine.kvBytes;
  }

  stats(): RunnerStats {
    return {
      kvUsedTokens: this.kv.usedTokens,
      kvCapacityTokens: this.kv.capacityTokens,
      heldRequests: this.#requests.size,
      lastSessionMs: this.lastStep.sessionMs,
      lastTotalMs: this.lastStep.totalMs,
    };
  }

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
    this.#engine.release();
  }

  /** Checks the whole batch against the current state before anything changes (as OnnxRunner does). */
  #validate(batch: ForwardBatch): void {
    validateForwardBatch(batch, {
      requests: this.#requests,
      kvLength: (id) => this.kv.length(id),
      usedTokens: this.kv.usedTokens,
      capacityTokens: this.kv.capacityTokens,
      contextLength: this.info.contextLength,
      vocabSize: this.info.vocabSize,
      maxRequests: this.kv.maxSlots,
      maxRequestsName: 'native cache slots (maxSlots)',
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
    for (const c of batch.prefill) this.kv.reserve(c.id, c.start + c.tokens.length);
    for (const id of batch.decode) this.kv.reserve(id, this.kv.length(id) + 1);

    const nOut = batch.prefill.reduce((k, c) => k + (c.sample ? 1 : 0), 0) + batch.decode.length;
    const outIds = new Int32Array(nOut);
    const outTokens = new Int32Array(nOut);
    const logprobs: (TokenLogprobs | null)[] = new Array(nOut).fill(null);
    let out = 0;
    const sink = { tokens: outTokens, logprobs };

    for (const c of batch.prefill) {
      const req = this.#requests.get(c.id) as ReqState;
      req.history?.addFill(c.tokens, c.start, req.promptLength);
      if (c.sample) skipSampledDraws(req.rng, req.sampling, c.start + c.tokens.length - req.promptLength);
      const o = c.sample ? out++ : -1;
      if (o >= 0) outIds[o] = c.id;
      await this.#prefill(req, c.tokens, c.start, o, sink);
    }
    if (batch.decode.length > 0) {
      const outs = new Map<number, number>();
      for (const id of batch.decode) {
        outIds[out] = id;
        outs.set(id, out++);
      }
      for (const range of this.#decodeRanges(batch.decode)) await this.#decode(range, outs, sink);
    }

    this.lastStep.totalMs = performance.now() - t0;
    return {
      ids: outIds,
      tokens: outTokens,
      logprobs: logprobs.some((l) => l !== null) ? logprobs : null,
      kvUsedTokens: this.kv.usedTokens,
    };
  }

  #addRequest(req: NewRequest): void {
    const p = req.sampling;
    const { need } = samplingNeed(p, this.topK);
    const history = need === 'argmax' ? null : new TokenHistory(this.spec.vocabSize);
    const rng = requestRng(p.seed, this.#rng);
    const promptLength = req.promptLength ?? Number.POSITIVE_INFINITY;
    this.#requests.set(req.id, { id: req.id, sampling: p, need, rng, history, promptLength, lastToken: -1 });
    this.kv.open(req.id);
  }

  /** A batch-1 run of one chunk straight into the request's cache row. */
  async #prefill(
    req: ReqState,
    tokens: Int32Array,
    start: number,
    out: number,
    sink: { tokens: Int32Array; logprobs: (TokenLogprobs | null)[] },
  ): Promise<void> {
    const n = tokens.length;
    const T = start + n;
    const positions = this.#hasPositions ? Int32Array.from({ length: n }, (_, i) => start + i) : undefined;
    const samples: SampleRow[] = out >= 0 ? [{ req, row: 0, out }] : [];
    const res = await this.#run(
      {
        lo: this.kv.slot(req.id),
        rows: 1,
        S: n,
        T,
        ids: tokens,
        mask: new Int32Array(T).fill(1),
        ...(positions ? { positions } : {}),
        // Always one row: the graph's ArgMax / TopK run whether fetched or not, and onnxruntime's
        // CPU TopK divides by the row count (SIGFPE on zero rows).
        logitRows: Int32Array.of(n - 1),
      },
      samples,
    );
    this.kv.setLength(req.id, T);
    this.#sample(samples, res, sink);
  }

  /**
   * Contiguous slot ranges covering every decode row. A range is split where
   * more than `decodeGap` idle rows would sit between two decode rows, or at a
   * held row whose cache is full (its dummy K/V would have nowhere to go).
   */
  #decodeRanges(decode: readonly number[]): { lo: number; hi: number }[] {
    const slots = decode.map((id) => this.kv.slot(id)).sort((a, b) => a - b);
    const gap = this.#opts.decodeGap ?? 8;
    const decoded = new Set(slots);
    const ranges: { lo: number; hi: number }[] = [];
    let lo = slots[0] as number;
    let prev = lo;
    for (let i = 1; i < slots.length; i++) {
      const s = slots[i] as number;
      let split = s - prev - 1 > gap;
      for (let k = prev + 1; k < s && !split; k++) {
        const owner = this.kv.owner(k);
        if (owner >= 0 && !decoded.has(k) && this.kv.length(owner) >= this.kv.maxSeq) split = true;
      }
      if (split) {
        ranges.push({ lo, hi: prev + 1 });
        lo = s;
      }
      prev = s;
    }
    ranges.push({ lo, hi: prev + 1 });
    return ranges;
  }

  /** One decode run over slots [lo, hi): every row one token; only decode rows are reduced and sampled. */
  async #decode(
    range: { lo: number; hi: number },
    outs: Map<number, number>,
    sink: { tokens: Int32Array; logprobs: (TokenLogprobs | null)[] },
  ): Promise<void> {
    const rows = range.hi - range.lo;
    const ids = new Int32Array(rows);
    const lens = new Int32Array(rows);
    const samples: SampleRow[] = [];
    const logitRows: number[] = [];
    let T = 1;
    for (let b = 0; b < rows; b++) {
      const owner = this.kv.owner(range.lo + b);
      // Idle rows: token 0 at position 0 of a free row, or at the first unused position of a held one.
      const len = owner >= 0 ? this.kv.length(owner) : 0;
      const o = owner >= 0 ? outs.get(owner) : undefined;
      lens[b] = len;
      if (o !== undefined) {
        const req = this.#requests.get(owner) as ReqState;
        ids[b] = req.lastToken;
        samples.push({ req, row: logitRows.length, out: o });
        logitRows.push(b);
      }
      if (len + 1 > T) T = len + 1;
    }
    const mask = new Int32Array(rows * T);
    for (let b = 0; b < rows; b++) mask.fill(1, b * T, b * T + (lens[b] as number) + 1);
    const res = await this.#run(
      {
        lo: range.lo,
        rows,
        S: 1,
        T,
        ids,
        mask,
        ...(this.#hasPositions ? { positions: lens } : {}),
        logitRows: Int32Array.from(logitRows),
      },
      samples,
    );
    for (const s of samples) this.kv.setLength(s.req.id, this.kv.length(s.req.id) + 1);
    this.#sample(samples, res, sink);
  }

  async #run(
    spec: Omit<Parameters<NativeEngine['run']>[0], 'argmax' | 'topk' | 'logits'>,
    samples: readonly SampleRow[],
  ): Promise<NativeRunResult> {
    let argmax = false;
    let topk = false;
    let logits = this.#opts.debugLastLogits === true && samples.length > 0;
    for (const s of samples) {
      if (s.req.need === 'full') logits = true;
      else if (s.req.need === 'topk') topk = true;
      else argmax = true;
    }
    const res = await this.#engine.run({ ...spec, argmax, topk, logits });
    this.lastStep.sessionMs += res.sessionMs;
    this.lastStep.runs++;
    return res;
  }

  #sample(
    samples: readonly SampleRow[],
    res: NativeRunResult,
    sink: { tokens: Int32Array; logprobs: (TokenLogprobs | null)[] },
  ): void {
    const V = this.spec.vocabSize;
    const K = res.topk ?? this.topK;
    for (const { req, row, out } of samples) {
      let token: number;
      if (req.need === 'argmax') {
        token = Number((res.argmax as BigInt64Array)[row]);
      } else if (req.need === 'topk') {
        token = this.#sampler.sampleTopK(
          (res.topkValues as Float32Array).subarray(row * K, (row + 1) * K),
          (res.topkIndices as BigInt64Array).subarray(row * K, (row + 1) * K),
          req.sampling,
          req.rng,
        );
      } else {
        token = this.#sampler.sampleFull(
          (res.logits as Float32Array).subarray(row * V, (row + 1) * V),
          req.sampling,
          req.history,
          req.rng,
        );
      }
      if (req.need !== 'argmax' && req.sampling.logprobs !== 0)
        sink.logprobs[out] = this.#sampler.lastLogprobs(req.sampling);
      if (res.logits !== undefined && this.#opts.debugLastLogits)
        this.lastLogits.set(req.id, res.logits.slice(row * V, (row + 1) * V));
      req.history?.addGenerated(token);
      req.lastToken = token;
      sink.tokens[out] = token;
    }
  }
}

function validateOptions(o: NativeRunnerOptions): void {
  const posInt = (flag: string, v: number | undefined, min = 1) => {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= min)) {
      throw new InvalidConfigError(flag, `must be an integer >= ${min}, got ${v}`);
    }
  };
  posInt('--max-total-tokens', o.maxTotalTokens);
  posInt('--intra-op-threads', o.intraOpThreads, 0);
  posInt('maxRequests', o.maxRequests);
  posInt('maxTopK', o.maxTopK);
  posInt('maxSlots', o.maxSlots);
  posInt('maxSeqLen', o.maxSeqLen);
  posInt('decodeGap', o.decodeGap, 0);
  const f = o.memFractionStatic;
  if (f !== undefined && !(f > 0 && f <= 1))
    throw new InvalidConfigError('--mem-fraction-static', `must be in (0, 1], got ${f}`);
}
