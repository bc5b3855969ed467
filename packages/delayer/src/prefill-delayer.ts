/**
 * `PrefillDelayer`: one per rank. Holds the delay state and runs SGLang's
 * single-pass executor contract:
 *
 * ```ts
 * const pass = delayer.beginPass(tokenUsage);      // start of get_new_batch_prefill
 * if (!pass.negotiate({ prefillable: true, runningBatch, maxPrefillBs, maxRunningRequests, waitingQueueLen })) …
 * pass.finalize(batchWasBuilt);                     // always, once per pass
 * ```
 *
 * The first `negotiate` of a pass encodes this rank's row, all-gathers it and
 * decides; later calls in the same pass return the cached verdict and ignore
 * their arguments. `finalize` negotiates with `prefillable = false` and zeros
 * if nobody did, then records the metrics once. So every rank gathers exactly
 * once per pass, which the collective requires.
 *
 * The executor object is reused from pass to pass: a pass allocates nothing.
 */
import { type Clock, InvalidConfigError, TsinferError } from '@tsinfer/core';
import type { AllGather } from './collective/all-gather.js';
import {
  type DelayerParallelConfig,
  type PrefillDelayerConfig,
  toDecisionConfig,
  validatePrefillDelayerConfig,
} from './config.js';
import {
  createDecisionRecord,
  type DecisionConfig,
  type DecisionRecord,
  type DelayerReason,
  type DelayerState,
  decidePrefillInto,
  type InputEstimation,
} from './decide.js';
import { PrefillDelayerMetrics } from './metrics.js';
import { DELAYER_ROW_WIDTH, encodeDelayerRowInto } from './row.js';

/** The delayer or its collective was driven against its contract (TSI_ERR_DELAYER_PROTOCOL). */
export class DelayerProtocolError extends TsinferError {
  constructor(message: string) {
    super('TSI_ERR_DELAYER_PROTOCOL', message);
    this.name = 'DelayerProtocolError';
  }
}

/**
 * Which time the queue deadline is judged on, and a new episode starts at.
 * `'shared'` (default): the all-gather round's `timestampMs`, equal on every
 * rank, so ranks cannot split on the deadline. `'local'`: this rank's Clock
 * read after the gather, as SGLang does (ranks may split near the deadline;
 * kept to reproduce SGLang and to show the flaw in tests).
 */
export type DeadlineClock = 'shared' | 'local';

export interface PrefillDelayerOptions extends DelayerParallelConfig {
  /** Delayer config; absent fields take their defaults; validated as flags are. */
  config?: Partial<PrefillDelayerConfig>;
  /** Ranks per DP group in the gather (rows of one DP group are replicas; its first row is used). Default 1. */
  attnTpSize?: number;
  allGather: AllGather;
  clock: Clock;
  /** Metrics to record into; absent: the delayer makes its own; null: no metrics. */
  metrics?: PrefillDelayerMetrics | null;
  deadlineClock?: DeadlineClock;
}

/** Arguments of `negotiate`; the four integers default to 0 when omitted (SGLang's defaults). */
export interface NegotiateInput {
  prefillable: boolean;
  runningBatch?: number;
  maxPrefillBs?: number;
  maxRunningRequests?: number;
  waitingQueueLen?: number;
}

/** The per-pass executor. */
export interface PrefillDelayerPass {
  /** First call of the pass: gather + decide, returns allow. Later calls: the cached allow. */
  negotiate(input: NegotiateInput): boolean;
  /** Ends the pass: negotiates (not prefillable, zeros) if nobody did, then records metrics once. */
  finalize(actualPrefill: boolean): void;
}

/** The last negotiation of this delayer, for logs and metrics. */
export interface LastNegotiation {
  readonly round: number;
  /** The time the decision used (round timestamp or local clock, see {@link DeadlineClock}). */
  readonly nowMs: number;
  readonly allow: boolean;
  readonly reason: DelayerReason;
  readonly inputEstimation: InputEstimation;
  readonly numPrefillable: number;
  readonly numTokenWatermarkForceAllow: number;
  readonly waitForwardPasses: number;
  readonly waitMs: number;
  /** Whether the pass produced a prefill batch; null until the pass is finalized. */
  readonly actualExecution: boolean | null;
  /** What this rank negotiated with. */
  readonly local: {
    readonly prefillable: boolean;
    readonly tokenUsage: number;
    readonly runningBatch: number;
    readonly maxPrefillBs: number;
    readonly maxRunningRequests: number;
    readonly waitingQueueLen: number;
  };
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends object ? Mutable<T[K]> : T[K] };

const IDLE = 0;
const OPEN = 1;
const NEGOTIATED = 2;
const FAILED = 3;

export class PrefillDelayer {
  readonly config: Readonly<PrefillDelayerConfig>;
  readonly decisionConfig: Readonly<DecisionConfig>;
  readonly metrics: PrefillDelayerMetrics | null;
  readonly deadlineClock: DeadlineClock;
  readonly #gather: AllGather;
  readonly #clock: Clock;
  readonly #attnTpSize: number;
  readonly #leaders: Float64Array[] | null;
  readonly #row = new Float64Array(DELAYER_ROW_WIDTH);
  readonly #rec: DecisionRecord = createDecisionRecord();
  readonly #last: Mutable<LastNegotiation>;
  readonly #pass: PrefillDelayerPass;
  #hasLast = false;
  // persistent state, as scalars
  #hasPrev = false;
  #prevCount = 0;
  #prevStartMs = 0;
  #skipFirst = true;
  // per-pass
  #phase = IDLE;
  #tokenUsage = 0;
  #error: unknown = null;

  constructor(options: PrefillDelayerOptions) {
    this.config = Object.freeze(validatePrefillDelayerConfig(options.config ?? {}));
    this.decisionConfig = Object.freeze(toDecisionConfig(this.config, options));
    const attnTpSize = options.attnTpSize ?? 1;
    if (!Number.isInteger(attnTpSize) || attnTpSize < 1) {
      throw new InvalidConfigError(
        '--tp-size',
        `attention TP size must be an integer >= 1; got ${attnTpSize}`,
      );
    }
    const gather = options.allGather;
    if (gather.rowWidth !== DELAYER_ROW_WIDTH) {
      throw new DelayerProtocolError(
        `PrefillDelayer: the all-gather's rowWidth is ${gather.rowWidth}, the delayer needs ${DELAYER_ROW_WIDTH}`,
      );
    }
    const dpDim = options.enableDpAttention ? options.dpSize : 1;
    if (gather.worldSize !== dpDim * attnTpSize) {
      throw new InvalidConfigError(
        '--dp-size',
        `the all-gather group has ${gather.worldSize} ranks but DP groups (${dpDim}${
          options.enableDpAttention ? '' : ', DP attention off'
        }) x attention TP size (${attnTpSize}) = ${dpDim * attnTpSize}`,
      );
    }
    this.#gather = gather;
    this.#clock = options.clock;
    this.#attnTpSize = attnTpSize;
    this.#leaders = attnTpSize === 1 ? null : new Array<Float64Array>(dpDim);
    this.deadlineClock = options.deadlineClock ?? 'shared';
    this.metrics =
      options.metrics === undefined
        ? new PrefillDelayerMetrics({
            maxDelayPasses: this.config.maxDelayPasses,
            forwardPassesBuckets: this.config.forwardPassesBuckets,
            waitSecondsBuckets: this.config.waitSecondsBuckets,
          })
        : options.metrics;
    this.#last = {
      round: 0,
      nowMs: 0,
      allow: true,
      reason: '',
      inputEstimation: 'none',
      numPrefillable: 0,
      numTokenWatermarkForceAllow: 0,
      waitForwardPasses: 0,
      waitMs: 0,
      actualExecution: null,
      local: {
        prefillable: false,
        tokenUsage: 0,
        runningBatch: 0,
        maxPrefillBs: 0,
        maxRunningRequests: 0,
        waitingQueueLen: 0,
      },
    };
    this.#pass = {
      negotiate: (input) => this.#negotiatePass(input),
      finalize: (actualPrefill) => this.#finalizePass(actualPrefill),
    };
  }

  /**
   * Starts a scheduling pass with this pass's token-usage snapshot (max KV
   * usage fraction over the pools). Returns the executor, the same object
   * every pass.
   * @throws DelayerProtocolError if the previous pass was not finalized.
   */
  beginPass(tokenUsage: number): PrefillDelayerPass {
    if (this.#phase === OPEN || this.#phase === NEGOTIATED) {
      throw new DelayerProtocolError('PrefillDelayer.beginPass: the previous pass was not finalized');
    }
    this.#phase = OPEN;
    this.#tokenUsage = tokenUsage;
    this.#error = null;
    return this.#pass;
  }

  /** The current state (a copy). */
  get state(): DelayerState {
    return {
      prev: this.#hasPrev ? { delayedCount: this.#prevCount, startMs: this.#prevStartMs } : null,
      skipFirst: this.#skipFirst,
    };
  }

  /**
   * The last negotiation (null before the first). A view updated in place
   * every pass: copy what you keep.
   */
  get lastNegotiation(): Readonly<LastNegotiation> | null {
    return this.#hasLast ? this.#last : null;
  }

  #negotiatePass(input: NegotiateInput): boolean {
    switch (this.#phase) {
      case NEGOTIATED:
        return this.#rec.allow;
      case OPEN:
        this.#run(
          input.prefillable,
          input.runningBatch ?? 0,
          input.maxPrefillBs ?? 0,
          input.maxRunningRequests ?? 0,
          input.waitingQueueLen ?? 0,
        );
        return this.#rec.allow;
      case FAILED:
        throw this.#error;
      default:
        throw new DelayerProtocolError(
          'PrefillDelayerPass.negotiate: no pass is open (call beginPass first)',
        );
    }
  }

  #finalizePass(actualPrefill: boolean): void {
    if (this.#phase === FAILED) {
      // The gather of this pass threw; the error already reached the caller.
      this.#phase = IDLE;
      return;
    }
    if (this.#phase === IDLE) {
      throw new DelayerProtocolError('PrefillDelayerPass.finalize: no pass is open (call beginPass first)');
    }
    if (this.#phase === OPEN) this.#run(false, 0, 0, 0, 0);
    this.#phase = IDLE;
    const rec = this.#rec;
    this.#last.actualExecution = actualPrefill;
    this.metrics?.recordPass(
      rec.inputEstimation,
      rec.allow,
      rec.reason,
      actualPrefill,
      rec.waitForwardPasses,
      rec.waitMs / 1000,
    );
  }

  #run(
    prefillable: boolean,
    runningBatch: number,
    maxPrefillBs: number,
    maxRunningRequests: number,
    waitingQueueLen: number,
  ): void {
    const row = this.#row;
    encodeDelayerRowInto(
      row,
      prefillable,
      this.#tokenUsage,
      runningBatch,
      maxPrefillBs,
      waitingQueueLen,
      this.decisionConfig.tokenUsageLowWatermark,
    );
    const gather = this.#gather;
    let rows: ReadonlyArray<Float64Array>;
    let nowMs: number;
    let round: number;
    try {
      const result = gather.gather(row);
      rows = result.rows;
      if (rows.length !== gather.worldSize) {
        throw new DelayerProtocolError(
          `PrefillDelayer: the all-gather returned ${rows.length} rows for a group of ${gather.worldSize}`,
        );
      }
      nowMs = this.deadlineClock === 'shared' ? result.timestampMs : this.#clock.nowMs();
      round = result.round;
    } catch (err) {
      this.#phase = FAILED;
      this.#error = err;
      throw err;
    }
    const leaders = this.#leaders;
    if (leaders !== null) {
      const tp = this.#attnTpSize;
      for (let d = 0; d < leaders.length; d++) leaders[d] = rows[d * tp]!;
      rows = leaders;
    }
    const rec = this.#rec;
    decidePrefillInto(
      rec,
      rows,
      maxRunningRequests,
      this.#hasPrev,
      this.#prevCount,
      this.#prevStartMs,
      this.#skipFirst,
      nowMs,
      this.decisionConfig,
    );
    this.#hasPrev = rec.hasPrev;
    this.#prevCount = rec.delayedCount;
    this.#prevStartMs = rec.startMs;
    this.#skipFirst = rec.skipFirst;
    this.#phase = NEGOTIATED;

    const last = this.#last;
    last.round = round;
    last.nowMs = nowMs;
    last.allow = rec.allow;
    last.reason = rec.reason;
    last.inputEstimation = rec.inputEstimation;
    last.numPrefillable = rec.numPrefillable;
    last.numTokenWatermarkForceAllow = rec.numTokenWatermarkForceAllow;
    last.waitForwardPasses = rec.waitForwardPasses;
    last.waitMs = rec.waitMs;
    last.actualExecution = null;
    const local = last.local;
    local.prefillable = prefillable;
    local.tokenUsage = this.#tokenUsage;
    local.runningBatch = runningBatch;
    local.maxPrefillBs = maxPrefillBs;
    local.maxRunningRequests = maxRunningRequests;
    local.waitingQueueLen = waitingQueueLen;
    this.#hasLast = true;
  }
}
