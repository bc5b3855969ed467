/**
 * The per-rank Scheduler: drives its model runner pass by pass with
 * continuous batching (SGLang's scheduler + PrefillAdder semantics, in vLLM
 * v1's shape: the scheduler decides, the runner executes, and one
 * `ForwardBatch` / `ForwardOutput` pair is the whole contract).
 *
 * One pass = one `step()`:
 *  1. take in aborts (requests are queued by `addRequest` as they come);
 *  2. build a prefill batch with the PrefillAdder: first the chunked
 *     request's next chunk, then waiting requests in policy order under the
 *     budgets (KV with the new-token-ratio reservation, `--max-prefill-tokens`,
 *     `--chunked-prefill-size`, `--max-running-requests`,
 *     `--prefill-max-requests`) and the delayer's verdict;
 *  3. if nothing was admitted, decode the running batch, first retracting
 *     requests (requeued with their progress as prompt) if one more token
 *     each would overflow the KV cache;
 *  4. DP attention: agree on the forward mode with the other ranks (a
 *     decode rank runs idle while any rank prefills);
 *  5. run the forward; apply the results: append tokens, stop checks,
 *     finish, free (the KV of a request is released in the pass it finishes
 *     or is aborted; the runner is told in the next batch's `free`), stream
 *     tokens to the sink;
 *  6. fill the per-pass stats once.
 *
 * The cost of a pass is O(admitted + running): the waiting queue is touched
 * only at its front, counters are incremental, arrays are reused.
 */
import type { Clock } from '@tsinfer/core';
import {
  DELAYER_ROW_WIDTH,
  encodeDelayerRowInto,
  LocalAllGather,
  MaxPrefillBsTracker,
  PrefillDelayer,
  type PrefillDelayerMetrics,
} from '@tsinfer/delayer';
import type { ForwardOutput, ModelRunner, NewRequest, PrefillChunk, TokenLogprobs } from '@tsinfer/runtime';
import { NewTokenRatio, ratioAfterRetraction, runningReservation } from './budget.js';
import { type GroupGather, PrefetchedAllGather } from './collective.js';
import { newTokenRatioParams, rankLimits, resolveSchedulerConfig, type SchedulerConfig } from './config.js';
import { InvalidRequestError, SchedulerStateError } from './errors.js';
import { ADD_CONTINUE, ADD_NO_TOKEN, PrefillAdder } from './prefill-adder.js';
import { type PrefixMatcher, WaitingQueue } from './queue.js';
import { Request, type RequestInput } from './request.js';
import { createPassStats, type ForwardMode, type PassStats, ThroughputWindow } from './stats.js';

/** Where tokens and finishes go. Called synchronously inside `step()`; keep it cheap. */
export interface OutputSink {
  /** A sampled token (every token, stop tokens included). */
  onToken?(req: Request, token: number, logprobs: TokenLogprobs | null): void;
  /** The request finished (`req.finishReason` says why); its KV is already released. */
  onFinish?(req: Request): void;
  /** End of a pass. The stats object is reused: copy what you keep. */
  onPass?(stats: Readonly<PassStats>): void;
}

/** Lockstep row: [forward mode, has work, wake generation read by this rank]. */
export const LOCKSTEP_ROW_WIDTH = 3;
const MODE_IDLE = 0;
const MODE_DECODE = 1;
const MODE_PREFILL = 2;

export interface SchedulerOptions {
  runner: ModelRunner;
  clock: Clock;
  /** A resolved config, or a partial one resolved with defaults. */
  config?: Partial<SchedulerConfig>;
  sink?: OutputSink;
  /** This rank's index among the DP ranks (stats and collectives). Default 0. */
  rank?: number;
  /**
   * `--enable-dp-attention` with dp-size > 1: this rank's endpoint of the
   * lockstep group (row width {@link LOCKSTEP_ROW_WIDTH}, world = dp-size).
   */
  lockstep?: GroupGather | null;
  /**
   * The delayer's group (row width 5). Required when the delayer is enabled
   * under DP attention with dp-size > 1 (world = dp-size); otherwise a
   * single-rank `LocalAllGather` is made.
   */
  delayerGather?: GroupGather | null;
  /** Metrics for the delayer (absent: the delayer makes its own; null: none). */
  delayerMetrics?: PrefillDelayerMetrics | null;
  /** lpm's prefix scorer (none: lpm is fcfs). */
  prefixMatcher?: PrefixMatcher | null;
  /** The runner's row limit per pass, when it has one (clamps max-running-requests). */
  maxBatch?: number;
  /**
   * DP attention: reads the group's wake generation (`WakeSignal.generation`,
   * see wake.ts), sent in the lockstep row so that ranks go idle together
   * only when none of them can have missed a wake-up. Default: always 0.
   */
  wakeGeneration?: () => number;
}

export class Scheduler {
  readonly config: Readonly<SchedulerConfig>;
  readonly rank: number;
  readonly runner: ModelRunner;
  /** KV tokens this rank may fill. */
  readonly kvCapacity: number;
  readonly maxRunningRequests: number;
  /** Longest sequence (prompt + output) a request may reach: min(context, KV capacity) − 1. */
  readonly maxReqLen: number;
  readonly delayer: PrefillDelayer | null;

  readonly #clock: Clock;
  readonly #sink: OutputSink;
  readonly #queue = new WaitingQueue();
  readonly #adder = new PrefillAdder();
  readonly #ratio: NewTokenRatio;
  readonly #maxPrefillBs: MaxPrefillBsTracker;
  readonly #prefetch: PrefetchedAllGather | null;
  readonly #lockstep: GroupGather | null;
  readonly #prefixMatcher: PrefixMatcher | null;
  readonly #wakeGeneration: () => number;
  readonly #stats: PassStats;
  readonly #throughput = new ThroughputWindow(32);
  readonly #eos: readonly number[];
  readonly #delayerRow = new Float64Array(DELAYER_ROW_WIDTH);
  readonly #lockRow = new Float64Array(LOCKSTEP_ROW_WIDTH);

  #running: Request[] = [];
  #runningSpare: Request[] = [];
  #chunked: Request | null = null;
  readonly #live = new Map<string, Request>();
  #seq = 0;
  #used = 0;
  #batchIsFull = false;
  #pendingAborts = 0;
  /** Waiting requests aborted since the last pass's stats. */
  #waitingAborts = 0;
  #inStep = false;
  #closed = false;

  // runner ids
  readonly #byRunnerId: (Request | null)[] = [];
  readonly #freeIds: number[] = [];
  #nextId = 0;
  #pendingFree: number[] = [];
  #spareFree: number[] = [];

  // reused batch arrays
  readonly #add: NewRequest[] = [];
  readonly #prefill: PrefillChunk[] = [];
  readonly #decode: number[] = [];
  readonly #batch: { free: number[]; add: NewRequest[]; prefill: PrefillChunk[]; decode: number[] };

  constructor(options: SchedulerOptions) {
    this.config = Object.freeze(resolveSchedulerConfig(options.config ?? {}));
    const c = this.config;
    this.rank = options.rank ?? 0;
    this.runner = options.runner;
    this.#clock = options.clock;
    this.#sink = options.sink ?? {};
    const info = options.runner.info;
    const limits = rankLimits(c, info.kvCapacityTokens, options.maxBatch);
    this.kvCapacity = limits.kvCapacity;
    this.maxRunningRequests = limits.maxRunningRequests;
    this.maxReqLen = Math.min(info.contextLength, this.kvCapacity) - 1;
    this.#eos = info.eosTokenIds;
    this.#ratio = new NewTokenRatio(newTokenRatioParams(c));
    this.#maxPrefillBs = new MaxPrefillBsTracker(c.delayer.maxPrefillBsWindow);
    this.#prefixMatcher = options.prefixMatcher ?? null;
    this.#wakeGeneration = options.wakeGeneration ?? (() => 0);

    const grouped = c.enableDpAttention && c.dpSize > 1;
    if (grouped) {
      const ls = options.lockstep;
      if (!ls || ls.worldSize !== c.dpSize || ls.rowWidth !== LOCKSTEP_ROW_WIDTH || ls.rank !== this.rank) {
        throw new SchedulerStateError(
          `--enable-dp-attention with --dp-size ${c.dpSize} needs a lockstep group endpoint (rank ${this.rank}, world ${c.dpSize}, row width ${LOCKSTEP_ROW_WIDTH})`,
        );
      }
      this.#lockstep = ls;
    } else {
      this.#lockstep = null;
    }
    if (c.delayer.enabled) {
      let group = options.delayerGather ?? null;
      if (group === null) {
        if (grouped) {
          throw new SchedulerStateError(
            `--enable-prefill-delayer under --enable-dp-attention with --dp-size ${c.dpSize} needs the delayer's group endpoint`,
          );
        }
        group = new LocalAllGather({ clock: this.#clock });
      }
      this.#prefetch = new PrefetchedAllGather(group);
      this.delayer = new PrefillDelayer({
        config: c.delayer,
        dpSize: c.dpSize,
        enableDpAttention: c.enableDpAttention,
        allGather: this.#prefetch,
        clock: this.#clock,
        ...(options.delayerMetrics !== undefined ? { metrics: options.delayerMetrics } : {}),
      });
    } else {
      this.#prefetch = null;
      this.delayer = null;
    }
    this.#stats = createPassStats(this.rank, this.delayer !== null);
    this.#stats.maxTotalNumTokens = this.kvCapacity;
    this.#stats.maxRunningRequests = this.maxRunningRequests;
    this.#stats.newTokenRatio = this.#ratio.value;
    this.#batch = { free: this.#pendingFree, add: this.#add, prefill: this.#prefill, decode: this.#decode };
  }

  /** The stats of the last pass (one object, updated in place). */
  get stats(): Readonly<PassStats> {
    return this.#stats;
  }

  /** Live waiting requests. */
  get numWaiting(): number {
    return this.#queue.size;
  }

  /** Requests in the running batch. */
  get numRunning(): number {
    return this.#running.length;
  }

  /** KV tokens held by this rank's requests (scheduler accounting). */
  get usedTokens(): number {
    return this.#used;
  }

  get newTokenRatio(): number {
    return this.#ratio.value;
  }

  /** The request being prefilled chunk by chunk, or null. */
  get chunkedRequest(): Request | null {
    return this.#chunked;
  }

  /** True when the rank has anything to run: waiting, running or chunked requests, aborts to act on, or frees to send. */
  get hasWork(): boolean {
    return (
      this.#queue.size > 0 ||
      this.#running.length > 0 ||
      this.#chunked !== null ||
      this.#pendingAborts > 0 ||
      this.#pendingFree.length > 0
    );
  }

  /** A live request by id. */
  getRequest(rid: string): Request | undefined {
    return this.#live.get(rid);
  }

  /** Waiting requests in queue order (allocates; diagnostics and tests). */
  waitingRequests(): Request[] {
    return this.#queue.toArray();
  }

  /** Running requests (a copy). */
  runningRequests(): Request[] {
    return this.#running.slice();
  }

  /**
   * Queues a request. Validates it (SGLang's limits: prompt < min(context,
   * KV) − 1; max_new_tokens clipped so prompt + output ≤ that) and returns
   * its state object.
   * @throws InvalidRequestError (TSI_ERR_INVALID_REQUEST)
   */
  addRequest(input: RequestInput): Request {
    if (this.#closed) throw new SchedulerStateError('addRequest after close');
    const rid = input.rid;
    if (this.#live.has(rid)) throw new InvalidRequestError(rid, 'a request with this id is already live');
    const n = input.promptTokens.length;
    if (n < 1) throw new InvalidRequestError(rid, 'the prompt is empty');
    if (n >= this.maxReqLen) {
      throw new InvalidRequestError(
        rid,
        `the prompt has ${n} tokens; at most ${this.maxReqLen - 1} fit (context length ${this.runner.info.contextLength}, KV capacity ${this.kvCapacity})`,
      );
    }
    if (!Number.isInteger(input.maxNewTokens) || input.maxNewTokens < 1) {
      throw new InvalidRequestError(rid, `max_new_tokens must be an integer >= 1; got ${input.maxNewTokens}`);
    }
    const prompt =
      input.promptTokens instanceof Int32Array ? input.promptTokens : Int32Array.from(input.promptTokens);
    const maxNew = Math.min(input.maxNewTokens, this.maxReqLen - n);
    let stops: Int32Array;
    if (input.ignoreEos === true) {
      stops = new Int32Array(0);
    } else {
      const set = new Set<number>(this.#eos);
      for (const t of input.stopTokenIds ?? []) set.add(t);
      stops = Int32Array.from([...set].sort((a, b) => a - b));
    }
    const req = new Request(input, prompt, maxNew, stops, this.#seq++, this.#clock.nowMs());
    if (input.dispatchSeq !== undefined && input.dispatchSeq > this.#stats.ackedDispatchSeq) {
      this.#stats.ackedDispatchSeq = input.dispatchSeq;
    }
    this.#live.set(rid, req);
    this.#queue.pushBack(req);
    return req;
  }

  /**
   * Aborts a live request. A waiting request leaves the queue at once; one
   * that holds KV (prefilling or running) is finished at the start of the
   * next pass (or right after the pass in flight), which frees its KV.
   * Returns false if no such live request.
   */
  abort(rid: string): boolean {
    const req = this.#live.get(rid);
    if (req === undefined || req.phase === 'finished' || req.abortRequested) return false;
    if (req.phase === 'waiting') {
      // Safe even while a step awaits: admission pops from the queue synchronously.
      this.#queue.remove(req);
      this.#finish(req, 'abort');
      this.#waitingAborts++;
      this.#stats.totalAbortedReqs++;
      return true;
    }
    req.abortRequested = true;
    this.#pendingAborts++;
    return true;
  }

  /** Stops accepting work; releases nothing in the runner (the owner closes it). */
  close(): void {
    this.#closed = true;
    this.#prefetch?.close();
  }

  /**
   * Runs one pass. Returns the pass's stats (the shared stats object).
   * @throws SchedulerStateError if a step is already running.
   */
  async step(): Promise<Readonly<PassStats>> {
    if (this.#inStep) throw new SchedulerStateError('step() while another step is running');
    if (this.#closed) throw new SchedulerStateError('step() after close');
    this.#inStep = true;
    try {
      return await this.#step();
    } finally {
      this.#inStep = false;
    }
  }

  async #step(): Promise<Readonly<PassStats>> {
    const tCpu0 = performance.now();
    const st = this.#stats;
    st.startMs = this.#clock.nowMs();
    st.prefillReqs = 0;
    st.admittedReqs = 0;
    st.prefillTokens = 0;
    st.decodeReqs = 0;
    st.generatedTokens = 0;
    st.finishedReqs = 0;
    st.abortedReqs = this.#waitingAborts;
    this.#waitingAborts = 0;
    st.retractedReqs = 0;
    st.forcedIdle = false;
    st.groupIdle = false;

    if (this.#pendingAborts > 0) this.#sweepAborts();

    // ---- 1. prefill batch -------------------------------------------------
    const adder = this.#adder;
    adder.count = 0;
    const built = await this.#buildPrefill();

    // ---- 2. forward mode --------------------------------------------------
    let mode: ForwardMode = built > 0 ? 'prefill' : this.#running.length > 0 ? 'decode' : 'idle';
    if (this.#lockstep !== null) {
      const row = this.#lockRow;
      row[0] = mode === 'prefill' ? MODE_PREFILL : mode === 'decode' ? MODE_DECODE : MODE_IDLE;
      row[1] = this.hasWork || built > 0 ? 1 : 0;
      row[2] = this.#wakeGeneration();
      const g = await this.#lockstep.gather(row);
      let anyPrefill = false;
      let anyWork = false;
      let sameGen = true;
      const gen0 = g.rows[0]![2]!;
      for (let r = 0; r < g.rows.length; r++) {
        const gr = g.rows[r]!;
        if (gr[0] === MODE_PREFILL) anyPrefill = true;
        if (gr[1] !== 0) anyWork = true;
        if (gr[2] !== gen0) sameGen = false;
      }
      if (mode === 'decode' && anyPrefill) {
        mode = 'idle';
        st.forcedIdle = true;
      }
      st.groupIdle = !anyWork && sameGen;
      st.groupWakeGen = gen0;
    }

    // ---- 3. decode preparation (retraction) -------------------------------
    const decode = this.#decode;
    decode.length = 0;
    if (mode === 'decode') {
      if (this.kvCapacity - this.#used < this.#running.length) this.#retract();
      else this.#ratio.decay();
      const running = this.#running;
      for (let i = 0; i < running.length; i++) {
        const r = running[i]!;
        decode.push(r.runnerId);
        r.kvLen++;
      }
      this.#used += running.length;
      st.decodeReqs = running.length;
    } else if (mode === 'idle' && this.#running.length === 0 && built === 0) {
      this.#ratio.reset();
    }

    // ---- 4. forward -------------------------------------------------------
    const batch = this.#batch;
    batch.free = this.#pendingFree;
    let output: ForwardOutput | null = null;
    let forwardUs = 0;
    if (batch.free.length > 0 || this.#prefill.length > 0 || decode.length > 0) {
      const tf0 = performance.now();
      output = await this.runner.forward(batch);
      forwardUs = (performance.now() - tf0) * 1000;
    }
    // the runner has released the freed ids: they may be reused from now on
    const freed = this.#pendingFree;
    for (let i = 0; i < freed.length; i++) this.#freeIds.push(freed[i]!);
    freed.length = 0;
    this.#pendingFree = this.#spareFree;
    this.#spareFree = freed;

    // ---- 5. apply results -------------------------------------------------
    if (output !== null) this.#applyOutput(output, built);
    if (this.#pendingAborts > 0) this.#sweepAborts();
    this.#add.length = 0;
    this.#prefill.length = 0;

    // ---- 6. stats ---------------------------------------------------------
    st.pass++;
    st.endMs = this.#clock.nowMs();
    st.mode = mode;
    st.forwarded = output !== null;
    if (mode === 'prefill') {
      st.totalPrefillPasses++;
      st.totalPrefillUncachedTokens += st.prefillTokens;
      st.totalPrefillBusyUs += (st.endMs - st.startMs) * 1000;
    } else if (mode === 'decode') st.totalDecodePasses++;
    else st.totalIdlePasses++;
    st.numRunningReqs = this.#running.length;
    st.numWaitingReqs = this.#queue.size;
    st.numUsedTokens = this.#used;
    st.numTotalTokens = this.#used + this.#queue.queuedTokens;
    st.numWaitingUncachedTokens =
      this.#queue.queuedTokens + (this.#chunked !== null ? this.#chunked.extendInputLen : 0);
    st.tokenUsage = this.#used / this.kvCapacity;
    st.genThroughput = this.#throughput.record(st.endMs, st.totalGeneratedTokens);
    st.newTokenRatio = this.#ratio.value;
    st.maxPrefillBs = this.#maxPrefillBs.value;
    st.forwardUs = forwardUs;
    st.schedulingUs = (performance.now() - tCpu0) * 1000 - forwardUs;
    this.#sink.onPass?.(st);
    return st;
  }

  /**
   * Builds this pass's prefill batch into the adder and the batch arrays;
   * runs the delayer's negotiation (exactly one gather per pass). Returns the
   * number of requests with a chunk in the batch.
   */
  async #buildPrefill(): Promise<number> {
    const c = this.config;
    const adder = this.#adder;
    const queue = this.#queue;
    const running = this.#running;
    const runningBs = running.length;
    const allocatable = this.maxRunningRequests - runningBs;
    const pmr = c.prefillMaxRequests;

    // SGLang's early exits: nothing to admit, or the running batch is full.
    let active = !((this.#batchIsFull || queue.size === 0) && this.#chunked === null);
    if (active && allocatable <= 0 && this.#chunked === null) {
      this.#batchIsFull = true;
      active = false;
    }

    let stillChunked = false;
    const prevChunked = this.#chunked;
    if (active) {
      if (c.schedulePolicy !== 'fcfs') queue.applyPolicy(c.schedulePolicy, this.#prefixMatcher);
      adder.reset(
        this.kvCapacity - this.#used,
        runningReservation(running, runningBs, this.#ratio.value, c.clipMaxNewTokensEstimation),
        c.maxPrefillTokens,
        c.chunkedPrefillSize,
        c.clipMaxNewTokensEstimation,
      );
      // The chunked request continues first, without consulting the delayer.
      if (prevChunked !== null) stillChunked = adder.addChunkedReq(prevChunked);
    }

    // Will the admission loop reach a waiting request? Everything that decides
    // it is known now, so the negotiation SGLang makes lazily in the first
    // add_one_req can be made here, with identical inputs.
    if (active && queue.size > 0 && !this.#batchIsFull && adder.count >= allocatable)
      this.#batchIsFull = true;
    const wantsPrefill =
      active &&
      queue.size > 0 &&
      !this.#batchIsFull &&
      adder.count < allocatable &&
      (pmr === null || adder.count < pmr);

    let allow = true;
    const delayer = this.delayer;
    if (delayer !== null) {
      const tokenUsage = this.#used / this.kvCapacity;
      // Captured before the gather's await: requests may arrive (or be aborted) meanwhile,
      // and the delayer must negotiate with exactly the prefetched row.
      const waitingQueueLen = queue.size;
      const maxPrefillBs = this.#maxPrefillBs.value;
      const pass = delayer.beginPass(tokenUsage);
      const row = this.#delayerRow;
      if (wantsPrefill) {
        encodeDelayerRowInto(
          row,
          true,
          tokenUsage,
          runningBs,
          maxPrefillBs,
          waitingQueueLen,
          delayer.decisionConfig.tokenUsageLowWatermark,
        );
      } else {
        encodeDelayerRowInto(row, false, tokenUsage, 0, 0, 0, delayer.decisionConfig.tokenUsageLowWatermark);
      }
      try {
        await this.#prefetch!.prefetch(row);
      } catch (err) {
        pass.finalize(false);
        throw err;
      }
      if (wantsPrefill) {
        allow = pass.negotiate({
          prefillable: true,
          runningBatch: runningBs,
          maxPrefillBs,
          maxRunningRequests: this.maxRunningRequests,
          waitingQueueLen,
        });
      }
      if (wantsPrefill && allow) this.#admit(allocatable, pmr);
      pass.finalize(adder.count > 0);
      const out = this.#stats.delayer!;
      const last = delayer.lastNegotiation!;
      out.inputEstimation = last.inputEstimation;
      out.allow = last.allow;
      out.reason = last.reason;
      out.actualExecution = adder.count > 0;
      out.prefillable = wantsPrefill;
    } else if (wantsPrefill) {
      this.#admit(allocatable, pmr);
    }

    if (active) {
      this.#chunked = adder.newChunkedReq ?? (stillChunked ? prevChunked : null);
      if (adder.count > 0) this.#maxPrefillBs.record(adder.count);
    }
    const count = adder.count;
    if (count === 0) return 0;

    // Emit the batch's add / prefill entries and account KV.
    const st = this.#stats;
    for (let i = 0; i < count; i++) {
      const req = adder.canRun[i]!;
      const n = adder.chunkLens[i]!;
      if (!req.added) {
        // After a retraction the fill ends with generated tokens: say where the prompt ends.
        this.#add.push(
          req.fill.length > req.prompt.length
            ? { id: req.runnerId, sampling: req.sampling, promptLength: req.prompt.length }
            : { id: req.runnerId, sampling: req.sampling },
        );
        req.added = true;
      }
      const start = req.kvLen;
      this.#prefill.push({
        id: req.runnerId,
        tokens: req.fill.subarray(start, start + n),
        start,
        sample: start + n === req.fill.length,
      });
      req.kvLen = start + n;
      this.#used += n;
      st.prefillTokens += n;
    }
    st.prefillReqs = count;
    return count;
  }

  /** The admission loop over the waiting queue (SGLang get_new_batch_prefill's loop). */
  #admit(allocatable: number, pmr: number | null): void {
    const adder = this.#adder;
    const queue = this.#queue;
    let admitted = 0;
    for (;;) {
      if (adder.count >= allocatable) {
        this.#batchIsFull = true;
        break;
      }
      if (pmr !== null && adder.count >= pmr) break;
      const req = queue.peek();
      if (req === null) break;
      const before = adder.count;
      const res = adder.addOneReq(req);
      if (adder.count > before) {
        queue.popFront();
        req.runnerId = this.#allocRunnerId(req);
        req.phase = 'prefilling';
        admitted++;
      }
      if (res !== ADD_CONTINUE) {
        if (res === ADD_NO_TOKEN) this.#batchIsFull = true;
        break;
      }
    }
    this.#stats.admittedReqs = admitted;
  }

  #allocRunnerId(req: Request): number {
    const id = this.#freeIds.length > 0 ? this.#freeIds.pop()! : this.#nextId++;
    this.#byRunnerId[id] = req;
    return id;
  }

  /**
   * Releases a request's KV in the scheduler's accounting; the runner frees it with the next batch.
   * Any release re-opens admission (SGLang's sticky batch_is_full means "until something leaves";
   * a request that leaves before ever reaching the running batch — finished on its prefill,
   * aborted mid-prefill — counts too, or an empty rank could never admit again).
   */
  #releaseKv(req: Request): void {
    this.#batchIsFull = false;
    if (req.runnerId >= 0) {
      this.#used -= req.kvLen;
      this.#byRunnerId[req.runnerId] = null;
      if (req.added) this.#pendingFree.push(req.runnerId);
      else this.#freeIds.push(req.runnerId);
    }
    req.kvLen = 0;
    req.runnerId = -1;
    req.added = false;
  }

  #finish(req: Request, reason: 'stop' | 'length' | 'abort'): void {
    if (reason === 'abort') req.finishReason = 'abort';
    req.phase = 'finished';
    req.finishedMs = this.#clock.nowMs();
    this.#live.delete(req.rid);
    this.#sink.onFinish?.(req);
  }

  /**
   * Decode would overflow the KV cache: retract running requests (fewest
   * generated tokens first, then longest prompt, as SGLang) until one more
   * token each fits, requeue them at the front with their progress, and
   * raise the new-token ratio.
   */
  #retract(): void {
    const st = this.#stats;
    const cands = this.#running.slice();
    cands.sort((a, b) => b.outputLen - a.outputLen || a.prompt.length - b.prompt.length || b.seq - a.seq);
    const retracted: Request[] = [];
    let first = true;
    while (first || this.kvCapacity - this.#used < cands.length) {
      if (cands.length === 1) {
        // One left: make room by retracting the chunked request's partial prefill.
        if (this.kvCapacity - this.#used < 1 && this.#chunked !== null) {
          const ch = this.#chunked;
          this.#chunked = null;
          this.#releaseKv(ch);
          ch.resetForRetract();
          retracted.push(ch);
        }
        break;
      }
      first = false;
      const r = cands.pop()!;
      this.#releaseKv(r);
      r.resetForRetract();
      retracted.push(r);
    }
    this.#running = cands;
    this.#runningSpare.length = 0;
    retracted.sort((a, b) => b.seq - a.seq);
    for (const r of retracted) this.#queue.pushFront(r);
    this.#ratio.set(ratioAfterRetraction(cands, cands.length, this.config.retractDecodeSteps));
    this.#batchIsFull = false;
    st.retractedReqs += retracted.length;
    st.totalRetractedReqs += retracted.length;
  }

  /** Applies a forward's sampled tokens. */
  #applyOutput(out: ForwardOutput, built: number): void {
    const st = this.#stats;
    const ids = out.ids;
    const tokens = out.tokens;
    const lps = out.logprobs;
    const now = this.#clock.nowMs();
    let anyFinished = false;
    for (let i = 0; i < ids.length; i++) {
      const req = this.#byRunnerId[ids[i]!];
      if (req === null || req === undefined || req.abortRequested) continue;
      const token = tokens[i]!;
      req.appendToken(token);
      if (req.firstTokenMs < 0) req.firstTokenMs = now;
      st.generatedTokens++;
      this.#sink.onToken?.(req, token, lps !== null ? (lps[i] ?? null) : null);
      if (req.checkFinished(token)) {
        this.#releaseKv(req);
        this.#finish(req, req.finishReason!);
        anyFinished = true;
        st.finishedReqs++;
      } else if (req.phase === 'prefilling' && req.kvLen === req.fill.length) {
        req.phase = 'running';
      }
    }
    st.totalGeneratedTokens += st.generatedTokens;
    st.totalFinishedReqs += st.finishedReqs;
    // Rebuild the running batch: drop finished, append newly prefilled requests in batch order.
    if (anyFinished || built > 0) {
      const next = this.#runningSpare;
      next.length = 0;
      const running = this.#running;
      for (let i = 0; i < running.length; i++) {
        const r = running[i]!;
        if (r.phase === 'running') next.push(r);
      }
      const adder = this.#adder;
      for (let i = 0; i < built; i++) {
        const r = adder.canRun[i]!;
        // newly running; or aborted while in flight (the abort sweep right after frees it)
        if (r.phase === 'running' || (r.abortRequested && r.phase === 'prefilling' && r !== this.#chunked)) {
          next.push(r);
        }
      }
      if (next.length < running.length) this.#batchIsFull = false;
      this.#runningSpare = running;
      running.length = 0;
      this.#running = next;
    }
  }

  /** Finishes every aborted request that holds KV (running or chunked); frees its KV. */
  #sweepAborts(): void {
    const st = this.#stats;
    const running = this.#running;
    let w = 0;
    let removed = 0;
    for (let i = 0; i < running.length; i++) {
      const r = running[i]!;
      if (r.abortRequested) {
        this.#releaseKv(r);
        this.#finish(r, 'abort');
        removed++;
      } else {
        running[w++] = r;
      }
    }
    running.length = w;
    if (removed > 0) this.#batchIsFull = false;
    const ch = this.#chunked;
    if (ch?.abortRequested) {
      this.#chunked = null;
      this.#releaseKv(ch);
      this.#finish(ch, 'abort');
      removed++;
    }
    this.#pendingAborts = 0;
    st.abortedReqs += removed;
    st.totalAbortedReqs += removed;
  }
}
