/**
 * TEST HELPERS ONLY (not shipped; not the shared-memory collective).
 *
 * Several ranks' PrefillDelayers driven in one thread: each rank gets a tiny
 * AllGather double whose `gather` returns the rows the test fed to a shared
 * {@link TestRound}. Because ranks run one after another, the test computes
 * the rows up front (from each rank's local inputs with encodeDelayerRow) and
 * `end()` checks that every rank gathered exactly once and contributed
 * exactly the row that was fed for it — so the fed rows are the truth.
 */
import { ManualClock } from '@tsinfer/core';
import type { AllGather, GatherResult } from '../src/collective/all-gather.js';
import type { DelayerReason, DelayerState, InputEstimation } from '../src/decide.js';
import { type NegotiateInput, PrefillDelayer, type PrefillDelayerOptions } from '../src/prefill-delayer.js';
import { DELAYER_ROW_WIDTH, encodeDelayerRow } from '../src/row.js';

export class TestRound {
  readonly worldSize: number;
  #rows: Float64Array[] = [];
  #timestampMs = 0;
  #round = -1;
  #open = false;
  #contributions: Array<Float64Array | null>;

  constructor(worldSize: number) {
    this.worldSize = worldSize;
    this.#contributions = new Array<Float64Array | null>(worldSize).fill(null);
  }

  /** Opens a round with the rows every rank will receive and the round's shared timestamp. */
  feed(rows: ReadonlyArray<ArrayLike<number>>, timestampMs: number): void {
    if (this.#open) throw new Error('TestRound.feed: previous round not ended');
    if (rows.length !== this.worldSize)
      throw new Error(`TestRound.feed: ${rows.length} rows for ${this.worldSize}`);
    this.#rows = rows.map((r) => Float64Array.from(r));
    this.#timestampMs = timestampMs;
    this.#round++;
    this.#open = true;
    this.#contributions.fill(null);
  }

  /** Closes the round; throws unless every rank gathered once with exactly its fed row. */
  end(): void {
    if (!this.#open) throw new Error('TestRound.end: no open round');
    this.#open = false;
    for (let r = 0; r < this.worldSize; r++) {
      const got = this.#contributions[r];
      if (!got) throw new Error(`TestRound.end: rank ${r} did not gather in round ${this.#round}`);
      const want = this.#rows[r]!;
      if (got.some((v, i) => v !== want[i])) {
        throw new Error(`TestRound.end: rank ${r} contributed [${got}] but [${want}] was fed`);
      }
    }
  }

  gatherFor(rank: number): AllGather {
    return {
      rank,
      worldSize: this.worldSize,
      rowWidth: DELAYER_ROW_WIDTH,
      gather: (row: ArrayLike<number>): GatherResult => {
        if (!this.#open) throw new Error(`rank ${rank}: gather outside a round`);
        if (this.#contributions[rank]) throw new Error(`rank ${rank}: second gather in round ${this.#round}`);
        this.#contributions[rank] = Float64Array.from(row);
        return { rows: this.#rows, timestampMs: this.#timestampMs, round: this.#round };
      },
      close: () => {},
    };
  }
}

/** A single-rank AllGather double that records every row it was given (copies) and echoes it back. */
export class RecordingAllGather implements AllGather {
  readonly rank = 0;
  readonly worldSize = 1;
  readonly rowWidth = DELAYER_ROW_WIDTH;
  readonly calls: number[][] = [];
  readonly #clock: { nowMs(): number };
  constructor(clock: { nowMs(): number }) {
    this.#clock = clock;
  }
  gather(row: ArrayLike<number>): GatherResult {
    this.calls.push(Array.from(row));
    return { rows: [Float64Array.from(row)], timestampMs: this.#clock.nowMs(), round: this.calls.length - 1 };
  }
  close(): void {}
}

/** One rank's inputs for a pass. `negotiate: null` = the pass exits early (finalize only). */
export interface RankPass {
  tokenUsage?: number;
  negotiate: NegotiateInput | null;
  /** Whether a batch was built; default: negotiated, prefillable and allowed. */
  actualPrefill?: boolean;
}

export interface RankOutcome {
  allow: boolean;
  reason: DelayerReason;
  inputEstimation: InputEstimation;
  numPrefillable: number;
  numTokenWatermarkForceAllow: number;
  waitForwardPasses: number;
  waitMs: number;
  state: DelayerState;
}

/**
 * N ranks, each with its own PrefillDelayer and its own ManualClock (offset by
 * `skewMs[r]`, to model clock skew), sharing one TestRound.
 */
export class Cluster {
  readonly round: TestRound;
  readonly delayers: PrefillDelayer[];
  readonly clocks: ManualClock[];
  readonly skewMs: readonly number[];
  readonly watermark: number | null;

  constructor(
    worldSize: number,
    options: Omit<PrefillDelayerOptions, 'allGather' | 'clock'>,
    skewMs: readonly number[] = [],
  ) {
    this.round = new TestRound(worldSize);
    this.skewMs = Array.from({ length: worldSize }, (_, r) => skewMs[r] ?? 0);
    this.clocks = this.skewMs.map((s) => new ManualClock(1_000_000 + s));
    this.delayers = this.clocks.map(
      (clock, r) => new PrefillDelayer({ ...options, allGather: this.round.gatherFor(r), clock }),
    );
    this.watermark = this.delayers[0]!.config.tokenUsageLowWatermark;
  }

  /**
   * Runs one pass on every rank at true time `atMs`. Rank r's local clock
   * reads `atMs + skewMs[r] + jitterMs[r]` (jitter: when in the round that
   * rank happens to read it; a clock never goes backwards, so a reading
   * earlier than the previous one is held at the previous one).
   */
  pass(ranks: ReadonlyArray<RankPass>, atMs: number, jitterMs: readonly number[] = []): RankOutcome[] {
    if (ranks.length !== this.delayers.length) throw new Error('Cluster.pass: one RankPass per rank');
    const rows = ranks.map((p) =>
      encodeDelayerRow(
        {
          prefillable: p.negotiate?.prefillable ?? false,
          tokenUsage: p.tokenUsage ?? 0.5,
          runningBatch: p.negotiate?.runningBatch ?? 0,
          maxPrefillBs: p.negotiate?.maxPrefillBs ?? 0,
          waitingQueueLen: p.negotiate?.waitingQueueLen ?? 0,
        },
        this.watermark,
      ),
    );
    this.clocks.forEach((c, r) => {
      c.set(Math.max(c.nowMs(), 1_000_000 + atMs + this.skewMs[r]! + (jitterMs[r] ?? 0)));
    });
    this.round.feed(rows, 1_000_000 + atMs);
    const out = ranks.map((p, r) => {
      const d = this.delayers[r]!;
      const pass = d.beginPass(p.tokenUsage ?? 0.5);
      const allow = p.negotiate ? pass.negotiate(p.negotiate) : null;
      pass.finalize(p.actualPrefill ?? (allow === true && p.negotiate!.prefillable));
      const last = d.lastNegotiation!;
      return {
        allow: last.allow,
        reason: last.reason,
        inputEstimation: last.inputEstimation,
        numPrefillable: last.numPrefillable,
        numTokenWatermarkForceAllow: last.numTokenWatermarkForceAllow,
        waitForwardPasses: last.waitForwardPasses,
        waitMs: last.waitMs,
        state: d.state,
      };
    });
    this.round.end();
    return out;
  }
}
