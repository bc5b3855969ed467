/**
 * `runSim`: `tsinfer bench` against a whole simulated server in virtual
 * time, in one thread. The clients are the bench's (its datasets, its
 * Poisson arrivals or bench_serving's gamma `--burstiness`, its concurrency
 * gate); the server is the real one minus HTTP and worker threads: the DP
 * controller (`DpDispatcher` over a `LoadSnapshotBoard` that every rank
 * publishes to on the `PublishCadence`, exactly as a rank worker does) and
 * N real `Scheduler`s (with the real prefill delayer and the DP-attention
 * lockstep) driving `SimRunner`s, all on one `VirtualTimeline`
 * (`VirtualCluster`). A request dispatched while its rank's pass is in
 * flight reaches the rank when the pass ends (after that pass's snapshot),
 * as in the real engine, whose rank thread takes messages between passes.
 * Each request's start, first token, token gaps and end
 * are taken in virtual time into the bench's `RequestOutput`, so the bench's
 * `calculateMetrics`, table and JSONL line apply unchanged; sim-only stats
 * (prefill passes, decode gaps, per-rank load, delayer outcomes) go into the
 * line's `sim` object.
 */
import { appendFile } from 'node:fs/promises';
import { createRng, InvalidConfigError } from '@tsinfer/core';
import { type PrefillDelayerConfig, validatePrefillDelayerConfig } from '@tsinfer/delayer';
import { loadSimProfile, parseModelPath, type SimProfile, VirtualTimeline } from '@tsinfer/runtime';
import {
  createLoadSnapshot,
  DEFAULT_DP_REFRESH_INTERVAL_MS,
  DEFAULT_LOAD_SNAPSHOT_HEARTBEAT_MS,
  DEFAULT_LOAD_SNAPSHOT_PUBLISH_INTERVAL,
  DpDispatcher,
  type LoadBalanceMethod,
  LoadSnapshotBoard,
  type PassStats,
  PublishCadence,
  type Request,
  type RequestInput,
  resolveSchedulerConfig,
  type Scheduler,
  type SchedulerConfig,
  VirtualCluster,
} from '@tsinfer/scheduler';
import type { RequestOutput } from '../backends.js';
import {
  type DatasetName,
  type DatasetRow,
  DEFAULT_SHAREGPT_PATH,
  sampleRandomIdsRequests,
  sampleRandomRequests,
  sampleShareGptRequests,
} from '../datasets.js';
import { buildDetails, buildResult, formatResultTable } from '../format.js';
import type { LoadSample, RankLoad } from '../loads.js';
import { type BenchmarkMetrics, calculateMetrics } from '../metrics.js';
import { PyFloat, pyJsonDumps } from '../pyformat.js';
import { Semaphore } from '../run.js';
import { percentile } from '../stats.js';
import { type BenchTokenizer, ByteTokenizer, resolveTokenizer } from '../tokenizer.js';
import { nextSimArrivalDelayMs } from './arrival.js';

/** The `backend` name a sim run reports (table and JSONL). */
export const SIM_BACKEND = 'tsinfer-sim';

/** The scheduler's config with every field optional, the delayer's included. */
export type SimSchedulerOptions = Partial<Omit<SchedulerConfig, 'delayer'>> & {
  delayer?: Partial<PrefillDelayerConfig>;
};

export interface SimOptions {
  // ---- the bench side (bench_serving's flags) ----
  datasetName: DatasetName;
  /** ShareGPT file for `sharegpt` / `random`; empty = the shipped sharegpt-small.json. */
  datasetPath: string;
  numPrompts: number;
  sharegptOutputLen?: number | undefined;
  sharegptContextLen?: number | undefined;
  randomInputLen: number;
  randomOutputLen: number;
  randomRangeRatio: number;
  /** Requests/s (virtual); Infinity sends everything at once. */
  requestRate: number;
  /** bench_serving `--burstiness`: 1 = Poisson; < 1 burstier (gamma gaps). */
  burstiness: number;
  maxConcurrency?: number | undefined;
  seed: number;
  /** JSONL file one line is appended to; null = none. */
  outputFile: string | null;
  outputDetails: boolean;
  tag?: string | undefined;
  /** Keep per-rank load snapshots every this many virtual seconds in `loads_timeline` (0/undefined: off). */
  loadsInterval?: number | undefined;
  /** Model directory whose tokenizer.json counts tokens; default: the byte tokenizer of `sim:` models. */
  tokenizer?: string | undefined;
  /** Let EOS end generation (only matters for profiles with eosProbability > 0). */
  disableIgnoreEos: boolean;

  // ---- the server side (tsinfer serve's flags) ----
  /** `sim:<profile>` (a committed profile name or a JSON file). */
  modelPath: string;
  /** Scheduler + delayer flags (dpSize, enableDpAttention, delayer, ...); absent fields take their defaults. */
  scheduler: SimSchedulerOptions;
  /** `--load-balance-method`. */
  loadBalanceMethod: LoadBalanceMethod;
  /** total_tokens: add prompt tokens on dispatch (SGLang PR #22614). false = the seed's "before". */
  incrementTokens: boolean;
  /** `--load-snapshot-publish-interval`. */
  loadSnapshotPublishInterval: number;
  /** `--load-snapshot-heartbeat-ms`. */
  loadSnapshotHeartbeatMs: number;
  /** The DP controller's budget refresh throttle (SGLang 20 ms). */
  dpRefreshIntervalMs: number;
  /** Virtual ms between the sim's exact per-rank load samples (rank-load stats). */
  simSampleMs: number;
  /**
   * true (default): a request dispatched to a rank whose pass is in flight reaches the
   * rank when that pass ends (after the pass's load snapshot), as in the real engine,
   * whose rank worker thread is blocked in onnxruntime's run during the forward and takes
   * its messages between passes (SGLang's scheduler likewise receives at the top of its
   * loop). false: the request is queued at the dispatch instant (no controller → rank delay).
   */
  deliverAtPassEnd: boolean;
}

export const DEFAULT_SIM_OPTIONS: SimOptions = {
  datasetName: 'random',
  datasetPath: '',
  numPrompts: 1000,
  randomInputLen: 1024,
  randomOutputLen: 1024,
  randomRangeRatio: 0.0,
  requestRate: Number.POSITIVE_INFINITY,
  burstiness: 1,
  seed: 42,
  outputFile: null,
  outputDetails: false,
  disableIgnoreEos: false,
  modelPath: 'sim:medium-h100',
  scheduler: {},
  loadBalanceMethod: 'auto',
  incrementTokens: true,
  loadSnapshotPublishInterval: DEFAULT_LOAD_SNAPSHOT_PUBLISH_INTERVAL,
  loadSnapshotHeartbeatMs: DEFAULT_LOAD_SNAPSHOT_HEARTBEAT_MS,
  dpRefreshIntervalMs: DEFAULT_DP_REFRESH_INTERVAL_MS,
  simSampleMs: 50,
  deliverAtPassEnd: true,
};

export interface SimDeps {
  /** Where the run's text goes, a line at a time (default console.log). */
  log?: (line: string) => void;
  /** A profile object instead of reading `modelPath` (tests). */
  profile?: SimProfile;
}

/** Sim-only statistics (the `sim` object of the JSONL line). */
export interface SimStats {
  model: string;
  profileSource: string;
  dpSize: number;
  enableDpAttention: boolean;
  loadBalanceMethod: string;
  incrementTokens: boolean;
  delayer: boolean;
  queueMinRatio: number | null;
  maxDelayMs: number | null;
  /** Real time the run took (profile loading and dataset included), and the benchmark's virtual duration (s). */
  wallS: number;
  virtualS: number;
  /** virtual / wall. */
  speedup: number;
  /** Prefill passes summed over ranks. */
  prefillPasses: number;
  /** Lockstep passes in which at least one rank prefilled (the whole group stops decoding); null without DP attention. */
  groupPrefillPasses: number | null;
  decodePasses: number;
  /** Decode passes turned idle because another rank prefilled (DP attention). */
  forcedIdlePasses: number;
  /**
   * Decode gap: per rank, the virtual time between the ends of two
   * consecutive decode passes while the rank holds running requests (a gap
   * spanning prefill or forced-idle passes counts whole), i.e. how long the
   * rank's running requests wait between two tokens. Pooled over ranks.
   */
  decodeGapMs: { count: number; mean: number; p50: number; p99: number; max: number };
  /** Mean requests admitted per prefill pass (over passes that admitted any). */
  meanAdmittedPerPrefill: number;
  retractedReqs: number;
  /** Delayer verdicts of passes whose rank wanted to prefill (reason → count), summed over ranks. */
  delayerOutcomes: Record<string, number> | null;
  /** Per rank: requests and tokens (prompt + output) the DP controller sent it. */
  dispatchedRequests: number[];
  dispatchedTokens: number[];
  /** Per rank: time-average of num_total_tokens (KV in use + waiting prompt tokens), sampled every simSampleMs. */
  meanRankLoad: number[];
  /** max / mean of meanRankLoad (1 = perfectly even). */
  rankLoadImbalance: number;
  /** max / mean of dispatchedTokens. */
  dispatchedTokenImbalance: number;
  /** Worst pile-up: the most waiting requests one rank held at a sample, and when (virtual s). */
  peakWaitingOneRank: { reqs: number; rank: number; t: number };
  /** The largest num_total_tokens one rank held at a sample, and the mean over ranks at that sample. */
  peakLoadOneRank: { tokens: number; meanAtPeak: number; rank: number; t: number };
}

export interface SimRunResult {
  result: Record<string, unknown>;
  line: string;
  metrics: BenchmarkMetrics;
  outputs: RequestOutput[];
  rows: DatasetRow[];
  table: string[];
  sim: SimStats;
  loads: LoadSample[] | null;
}

interface Track {
  readonly rank: number;
  readonly startMs: number;
  firstMs: number;
  lastMs: number;
  tokens: number;
  readonly itl: number[];
  done: (ok: boolean, error: string) => void;
  /** The request never reached a scheduler (rejected at delivery). */
  fail: (error: string) => void;
}

function validate(o: SimOptions): void {
  if (!Number.isInteger(o.numPrompts) || o.numPrompts < 1)
    throw new InvalidConfigError('--num-prompts', `must be an integer >= 1, got ${o.numPrompts}`);
  if (!(o.requestRate > 0))
    throw new InvalidConfigError('--request-rate', `must be > 0 or inf, got ${o.requestRate}`);
  if (!(o.burstiness > 0) || !Number.isFinite(o.burstiness))
    throw new InvalidConfigError('--burstiness', `must be a finite number > 0, got ${o.burstiness}`);
  if (o.maxConcurrency !== undefined && (!Number.isInteger(o.maxConcurrency) || o.maxConcurrency < 1))
    throw new InvalidConfigError('--max-concurrency', `must be an integer >= 1, got ${o.maxConcurrency}`);
  if (!(o.randomRangeRatio >= 0 && o.randomRangeRatio <= 1))
    throw new InvalidConfigError('--random-range-ratio', `must be in [0, 1], got ${o.randomRangeRatio}`);
  if (o.loadsInterval !== undefined && !(o.loadsInterval >= 0))
    throw new InvalidConfigError(
      '--loads-interval',
      `must be a number of seconds >= 0, got ${o.loadsInterval}`,
    );
  if (!(o.simSampleMs > 0)) throw new InvalidConfigError('simSampleMs', `must be > 0, got ${o.simSampleMs}`);
  if (!(o.dpRefreshIntervalMs >= 0))
    throw new InvalidConfigError('--dp-refresh-interval-ms', `must be >= 0, got ${o.dpRefreshIntervalMs}`);
  if (!o.modelPath.startsWith('sim:'))
    throw new InvalidConfigError('--model-path', `tsinfer sim runs sim: profiles only, got "${o.modelPath}"`);
}

function buildRows(
  o: SimOptions,
  tokenizer: BenchTokenizer,
  rng: ReturnType<typeof createRng>,
): DatasetRow[] {
  const datasetPath = o.datasetPath || DEFAULT_SHAREGPT_PATH;
  if (o.datasetName === 'sharegpt') {
    return sampleShareGptRequests({
      path: datasetPath,
      numRequests: o.numPrompts,
      tokenizer,
      rng,
      fixedOutputLen: o.sharegptOutputLen,
      contextLen: o.sharegptContextLen,
    });
  }
  // The simulated server takes token ids (bench_serving's --tokenize-prompt), so lengths are exact.
  const ro = {
    inputLen: o.randomInputLen,
    outputLen: o.randomOutputLen,
    numPrompts: o.numPrompts,
    rangeRatio: o.randomRangeRatio,
    tokenizer,
    rng,
    returnText: false,
    datasetPath,
  };
  return o.datasetName === 'random' ? sampleRandomRequests(ro) : sampleRandomIdsRequests(ro);
}

function promptIds(row: DatasetRow, tokenizer: BenchTokenizer, vocab: number): Int32Array {
  const src = typeof row.prompt === 'string' ? tokenizer.encode(row.prompt) : row.prompt;
  const out = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! % vocab;
  return out;
}

function waitingTokens(s: Scheduler): number {
  let n = 0;
  for (const r of s.waitingRequests()) n += r.fill.length;
  return n;
}

/** Runs one simulated benchmark; prints the bench's table; appends the JSONL line when `outputFile` is set. */
export async function runSim(options: SimOptions, deps: SimDeps = {}): Promise<SimRunResult> {
  const o = options;
  validate(o);
  const log = deps.log ?? ((line: string) => console.log(line));
  const wall0 = performance.now();
  let profile = deps.profile;
  if (profile === undefined) {
    const mp = parseModelPath(o.modelPath);
    if (mp.kind !== 'sim') throw new InvalidConfigError('--model-path', `not a sim: path: ${o.modelPath}`);
    profile = await loadSimProfile(mp.profilePath);
  }
  const config = resolveSchedulerConfig({
    ...o.scheduler,
    delayer: validatePrefillDelayerConfig(o.scheduler.delayer ?? {}),
  });
  const dp = config.dpSize;
  const vocab = profile.model.vocabSize;

  let tokenizer: BenchTokenizer = new ByteTokenizer();
  if (o.tokenizer)
    tokenizer = (await resolveTokenizer({ tokenizerDir: o.tokenizer, serverPath: null })).tokenizer;

  const rng = createRng(o.seed);
  const rows = buildRows(o, tokenizer, rng);
  if (rows.length === 0) throw new InvalidConfigError('--dataset-name', 'the dataset gave no request');
  log(`#Input tokens: ${rows.reduce((a, r) => a + r.promptLen, 0)}`);
  log(`#Output tokens: ${rows.reduce((a, r) => a + r.outputLen, 0)}`);

  // ---- the server: board, cadence, DP controller, ranks -------------------
  const timeline = new VirtualTimeline();
  const clock = timeline.clock;
  const board = LoadSnapshotBoard.create(dp);
  const cadences = Array.from(
    { length: dp },
    () =>
      new PublishCadence({
        publishInterval: o.loadSnapshotPublishInterval,
        heartbeatMs: o.loadSnapshotHeartbeatMs,
      }),
  );
  const snap = createLoadSnapshot();

  // sim stats
  const gaps: number[] = [];
  const lastDecodeEnd = new Float64Array(dp).fill(Number.NaN);
  const groupPrefill: Uint8Array[] = [new Uint8Array(1024)];
  let groupPrefillPasses = 0;
  let forcedIdle = 0;
  let admittedSum = 0;
  let admittedPasses = 0;
  const outcomes: Record<string, number> = {};
  const lockstep = config.enableDpAttention && dp > 1;

  let cluster: VirtualCluster | null = null;
  // Requests dispatched while the rank's pass is in flight, delivered when it ends.
  const pending: RequestInput[][] = Array.from({ length: dp }, () => []);
  // True while the rank's loop waits for work (its last pass left it, or its whole lockstep group, idle).
  const parked: boolean[] = new Array<boolean>(dp).fill(true);
  const deliver = (rank: number, input: RequestInput): void => {
    cluster!.submit(clock.nowMs(), rank, input);
  };
  const publish = (rank: number, st: Readonly<PassStats> | null): void => {
    const s = cluster!.schedulers[rank]!;
    snap.dpRank = rank;
    snap.timestamp = clock.nowMs();
    snap.maxTotalNumTokens = s.kvCapacity;
    snap.maxRunningRequests = s.maxRunningRequests;
    snap.ackedDispatchSeq = s.stats.ackedDispatchSeq;
    snap.numRunningReqs = s.numRunning;
    snap.numWaitingReqs = s.numWaiting;
    snap.numUsedTokens = s.usedTokens;
    snap.numTotalTokens = st !== null ? st.numTotalTokens : s.usedTokens + waitingTokens(s);
    snap.numActiveTokens = snap.numTotalTokens;
    snap.numWaitingUncachedTokens = st !== null ? st.numWaitingUncachedTokens : 0;
    snap.tokenUsage = Math.round((s.usedTokens / s.kvCapacity) * 1e4) / 1e4;
    snap.genThroughput = Math.round(s.stats.genThroughput * 100) / 100;
    snap.queuesWaiting = s.numWaiting;
    board.publish(rank, snap);
  };

  const onPass = (st: Readonly<PassStats>): void => {
    const r = st.rank;
    const s = cluster!.schedulers[r]!;
    // load snapshot, as the rank worker publishes it after every pass
    const now = clock.nowMs();
    if (!s.hasWork) {
      if (cadences[r]!.onIdleTick(now)) publish(r, st);
    } else if (cadences[r]!.afterPass(st.mode === 'prefill', now)) publish(r, st);
    // stats
    if (st.mode === 'decode') {
      const prev = lastDecodeEnd[r]!;
      if (!Number.isNaN(prev)) gaps.push(st.endMs - prev);
      lastDecodeEnd[r] = st.endMs;
    }
    if (st.numRunningReqs === 0) lastDecodeEnd[r] = Number.NaN;
    if (st.forcedIdle) forcedIdle++;
    if (st.admittedReqs > 0) {
      admittedSum += st.admittedReqs;
      admittedPasses++;
    }
    if (st.mode === 'prefill' && lockstep) {
      let buf = groupPrefill[0]!;
      if (st.pass >= buf.length) {
        const grown = new Uint8Array(Math.max(buf.length * 2, st.pass + 1));
        grown.set(buf);
        groupPrefill[0] = grown;
        buf = grown;
      }
      if (buf[st.pass] === 0) {
        buf[st.pass] = 1;
        groupPrefillPasses++;
      }
    }
    const d = st.delayer;
    if (d?.prefillable) {
      const k = d.reason === '' ? 'none' : d.reason;
      outcomes[k] = (outcomes[k] ?? 0) + 1;
    }
    // the pass is over: requests that arrived during it reach the rank now
    const q = pending[r]!;
    if (q.length > 0) {
      pending[r] = [];
      for (const input of q) {
        try {
          deliver(r, input);
        } catch (err) {
          (input.userData as Track).fail((err as Error).message);
        }
      }
    }
    if (q.length > 0) {
      // delivering woke the rank (and, under DP attention, its whole group)
      if (lockstep) parked.fill(false);
      else parked[r] = false;
    } else parked[r] = lockstep ? st.groupIdle : !s.hasWork;
  };

  const onToken = (req: Request): void => {
    const t = req.userData as Track;
    const now = clock.nowMs();
    if (t.tokens === 0) t.firstMs = now;
    else t.itl.push((now - t.lastMs) / 1000);
    t.lastMs = now;
    t.tokens++;
  };
  const onFinish = (req: Request): void => {
    const t = req.userData as Track;
    t.done(req.finishReason !== 'abort' && t.tokens > 0, req.finishReason === 'abort' ? 'aborted' : '');
  };

  cluster = new VirtualCluster({
    ranks: dp,
    profile,
    config,
    timeline,
    seed: o.seed,
    sink: { onToken, onFinish, onPass },
  });
  for (let r = 0; r < dp; r++) if (cadences[r]!.onStart(clock.nowMs())) publish(r, null);
  const dispatcher = new DpDispatcher({
    dpSize: dp,
    method: o.loadBalanceMethod,
    loads: board,
    clock,
    refreshIntervalMs: o.dpRefreshIntervalMs,
    // No rank fails in the simulation; idle ranks keep their snapshot fresh with the heartbeat.
    staleAfterMs: Number.POSITIVE_INFINITY,
    incrementTokens: o.incrementTokens,
  });
  const dispatchedTokens = new Array<number>(dp).fill(0);

  // ---- the clients --------------------------------------------------------
  const sem = o.maxConcurrency ? new Semaphore(o.maxConcurrency) : null;
  const ignoreEos = !o.disableIgnoreEos;
  let rid = 0;
  const send = (row: DatasetRow): Promise<RequestOutput> => {
    const startMs = clock.nowMs();
    const ids = promptIds(row, tokenizer, vocab);
    return new Promise<RequestOutput>((resolve) => {
      const finishWith = (t: Track | null, ok: boolean, error: string): void => {
        resolve({
          generatedText: '',
          success: ok,
          latency: ok && t ? (t.lastMs - startMs) / 1000 : 0,
          ttft: ok && t ? (t.firstMs - startMs) / 1000 : 0,
          itl: ok && t ? t.itl : [],
          textChunks: [],
          promptLen: ids.length,
          error,
          outputLen: ok && t ? t.tokens : 0,
          startTime: startMs / 1000,
        });
      };
      let rank: number;
      try {
        rank = dispatcher.dispatch(ids.length);
      } catch (err) {
        finishWith(null, false, (err as Error).message);
        return;
      }
      const track: Track = {
        rank,
        startMs,
        firstMs: -1,
        lastMs: -1,
        tokens: 0,
        itl: [],
        done: (ok, error) => finishWith(track, ok, error),
        fail: (error) => finishWith(null, false, error),
      };
      dispatchedTokens[rank]! += ids.length + row.outputLen;
      const input: RequestInput = {
        rid: String(rid++),
        promptTokens: ids,
        maxNewTokens: row.outputLen,
        ignoreEos,
        dispatchSeq: dispatcher.lastSeq,
        userData: track,
      };
      if (o.deliverAtPassEnd && !parked[rank]) {
        pending[rank]!.push(input);
        return;
      }
      try {
        // Delivered now, and the rank's loop woken (VirtualCluster.submit).
        deliver(rank, input);
        parked[rank] = false;
        if (lockstep) parked.fill(false);
      } catch (err) {
        finishWith(null, false, (err as Error).message);
      }
    });
  };
  const limited = async (row: DatasetRow): Promise<RequestOutput> => {
    if (sem === null) return send(row);
    await sem.acquire();
    try {
      return await send(row);
    } finally {
      sem.release();
    }
  };

  let clientsDone = false;
  let endMs = 0;
  const startMs = clock.nowMs();
  const clients = (async (): Promise<RequestOutput[]> => {
    const tasks: Promise<RequestOutput>[] = [];
    for (const row of rows) {
      tasks.push(limited(row));
      if (o.requestRate === Number.POSITIVE_INFINITY) continue;
      await timeline.sleep(nextSimArrivalDelayMs(rng, o.requestRate, o.burstiness));
    }
    const outs = await Promise.all(tasks);
    endMs = clock.nowMs();
    clientsDone = true;
    return outs;
  })();

  // ---- heartbeat of idle ranks, load samples -------------------------------
  const heartbeat = (async () => {
    while (!clientsDone) {
      await timeline.sleep(o.loadSnapshotHeartbeatMs);
      const now = clock.nowMs();
      for (let r = 0; r < dp; r++) {
        const s = cluster!.schedulers[r]!;
        if (!s.hasWork && cadences[r]!.onIdleTick(now)) publish(r, null);
      }
    }
  })();
  const loadSum = new Float64Array(dp);
  let samples = 0;
  const peakWaiting = { reqs: 0, rank: 0, t: 0 };
  const peakLoad = { tokens: 0, meanAtPeak: 0, rank: 0, t: 0 };
  const exact = (async () => {
    const cur = new Float64Array(dp);
    while (!clientsDone) {
      const t = (clock.nowMs() - startMs) / 1000;
      let sum = 0;
      for (let r = 0; r < dp; r++) {
        const s = cluster!.schedulers[r]!;
        cur[r] = s.usedTokens + waitingTokens(s);
        sum += cur[r]!;
        loadSum[r]! += cur[r]!;
        if (s.numWaiting > peakWaiting.reqs) Object.assign(peakWaiting, { reqs: s.numWaiting, rank: r, t });
      }
      for (let r = 0; r < dp; r++) {
        if (cur[r]! > peakLoad.tokens)
          Object.assign(peakLoad, { tokens: cur[r]!, meanAtPeak: sum / dp, rank: r, t });
      }
      samples++;
      await timeline.sleep(o.simSampleMs);
    }
  })();
  const loads: LoadSample[] | null = o.loadsInterval ? [] : null;
  const sampler = (async () => {
    if (loads === null) return;
    const head = createLoadSnapshot();
    while (!clientsDone) {
      const t = (clock.nowMs() - startMs) / 1000;
      const entry: RankLoad[] = [];
      for (let r = 0; r < dp; r++) {
        if (!board.read(r, head)) continue;
        entry.push({
          dp_rank: r,
          num_running_reqs: head.numRunningReqs,
          num_waiting_reqs: head.numWaitingReqs,
          num_waiting_uncached_tokens: head.numWaitingUncachedTokens,
          num_used_tokens: head.numUsedTokens,
          num_total_tokens: head.numTotalTokens,
          token_usage: head.tokenUsage,
          gen_throughput: head.genThroughput,
        });
      }
      loads.push({ t, loads: entry });
      await timeline.sleep(o.loadsInterval! * 1000);
    }
  })();

  await cluster.run();
  const outputs = await clients;
  await Promise.all([heartbeat, exact, sampler]);
  const wallS = (performance.now() - wall0) / 1000;
  const duration = (endMs - startMs) / 1000;

  // ---- the bench's metrics, table and line ----------------------------------
  const { metrics, outputLens } = calculateMetrics(rows, outputs, duration, () => 0);
  // The simulator produces token ids, not text: "retokenized" counts are the server's counts.
  metrics.totalOutputRetokenized = metrics.totalOutput;
  metrics.outputThroughputRetokenized = metrics.outputThroughput;
  metrics.totalThroughputRetokenized = metrics.totalThroughput;
  const failed = outputs.filter((x) => !x.success);
  if (failed.length > 0) {
    log(
      `${failed.length} of ${outputs.length} requests failed; first error: ${failed[0]!.error.split('\n')[0]}`,
    );
  }
  const table = formatResultTable(metrics, {
    backend: SIM_BACKEND,
    requestRate: o.requestRate,
    maxConcurrency: o.maxConcurrency ?? null,
    duration,
    acceptLength: null,
  });
  for (const l of table) log(l);

  const sched = cluster.schedulers;
  const sortedGaps = gaps.slice().sort((a, b) => a - b);
  const meanRankLoad = Array.from(loadSum, (v) => (samples > 0 ? v / samples : 0));
  const ratio = (xs: readonly number[]): number => {
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    return mean > 0 ? Math.max(...xs) / mean : 1;
  };
  const sim: SimStats = {
    model: profile.model.name,
    profileSource: profile.source,
    dpSize: dp,
    enableDpAttention: config.enableDpAttention,
    loadBalanceMethod: dispatcher.method,
    incrementTokens: o.incrementTokens,
    delayer: config.delayer.enabled,
    queueMinRatio: config.delayer.enabled ? config.delayer.queueMinRatio : null,
    maxDelayMs: config.delayer.enabled ? config.delayer.maxDelayMs : null,
    wallS,
    virtualS: duration,
    speedup: wallS > 0 ? duration / wallS : 0,
    prefillPasses: sched.reduce((a, s) => a + s.stats.totalPrefillPasses, 0),
    groupPrefillPasses: lockstep ? groupPrefillPasses : null,
    decodePasses: sched.reduce((a, s) => a + s.stats.totalDecodePasses, 0),
    forcedIdlePasses: forcedIdle,
    decodeGapMs: {
      count: sortedGaps.length,
      mean: sortedGaps.length > 0 ? sortedGaps.reduce((a, b) => a + b, 0) / sortedGaps.length : 0,
      p50: sortedGaps.length > 0 ? percentile(sortedGaps, 50) : 0,
      p99: sortedGaps.length > 0 ? percentile(sortedGaps, 99) : 0,
      max: sortedGaps.length > 0 ? sortedGaps[sortedGaps.length - 1]! : 0,
    },
    meanAdmittedPerPrefill: admittedPasses > 0 ? admittedSum / admittedPasses : 0,
    retractedReqs: sched.reduce((a, s) => a + s.stats.totalRetractedReqs, 0),
    delayerOutcomes: config.delayer.enabled ? outcomes : null,
    dispatchedRequests: Array.from(dispatcher.dispatched),
    dispatchedTokens,
    meanRankLoad,
    rankLoadImbalance: ratio(meanRankLoad),
    dispatchedTokenImbalance: ratio(dispatchedTokens),
    peakWaitingOneRank: peakWaiting,
    peakLoadOneRank: peakLoad,
  };
  log(formatSimStats(sim));

  const result = buildResult(
    {
      tag: o.tag ?? null,
      backend: SIM_BACKEND,
      datasetName: o.datasetName,
      requestRate: o.requestRate,
      maxConcurrency: o.maxConcurrency ?? null,
      sharegptOutputLen: o.sharegptOutputLen ?? null,
      randomInputLen: o.randomInputLen,
      randomOutputLen: o.randomOutputLen,
      randomRangeRatio: o.randomRangeRatio,
    },
    metrics,
    duration,
    {
      model_path: o.modelPath,
      model: profile.model.name,
      dp_size: dp,
      enable_dp_attention: config.enableDpAttention,
      load_balance_method: dispatcher.method,
      increment_tokens: o.incrementTokens,
      burstiness: o.burstiness,
      seed: o.seed,
      scheduler: { ...config, delayer: { ...config.delayer } },
    },
    null,
  );
  if (loads !== null) {
    result['loads_interval'] = new PyFloat(o.loadsInterval!);
    result['loads_timeline'] = loads;
  }
  // wall time is the one non-deterministic number; kept out of the line so that the same seed gives the same line
  const { wallS: _w, speedup: _s, ...simLine } = sim;
  result['sim'] = simLine;
  if (o.outputDetails) Object.assign(result, buildDetails(outputs, outputLens));
  const line = pyJsonDumps(result);
  if (o.outputFile) await appendFile(o.outputFile, `${line}\n`);
  return { result, line, metrics, outputs, rows, table, sim, loads };
}

const f = (x: number, d = 2): string => x.toFixed(d);

/** The sim-only block printed after the bench's table. */
export function formatSimStats(s: SimStats): string {
  const lines = [
    '-'.repeat(18) + 'Simulator stats' + '-'.repeat(17),
    `Model / DP: ${s.model}, dp ${s.dpSize}${s.enableDpAttention ? ' (DP attention)' : ''}, ${s.loadBalanceMethod}${s.loadBalanceMethod === 'total_tokens' && !s.incrementTokens ? ' (no token increment)' : ''}`,
    `Delayer: ${s.delayer ? `on, queue-min-ratio ${s.queueMinRatio ?? 'unset'}, max-delay-ms ${s.maxDelayMs ?? 'unset (5000)'}` : 'off'}`,
    `Virtual / wall time (s): ${f(s.virtualS)} / ${f(s.wallS)} (${f(s.speedup, 1)}x)`,
    `Prefill passes (sum over ranks): ${s.prefillPasses}${s.groupPrefillPasses !== null ? `, lockstep passes with a prefill: ${s.groupPrefillPasses}` : ''}`,
    `Decode passes: ${s.decodePasses}, forced idle: ${s.forcedIdlePasses}, mean admitted per prefill: ${f(s.meanAdmittedPerPrefill)}`,
    `Decode gap (ms): mean ${f(s.decodeGapMs.mean)}, p50 ${f(s.decodeGapMs.p50)}, p99 ${f(s.decodeGapMs.p99)}, max ${f(s.decodeGapMs.max)}`,
    `Rank load max/mean: ${f(s.rankLoadImbalance, 3)} (time-averaged num_total_tokens), dispatched tokens max/mean: ${f(s.dispatchedTokenImbalance, 3)}`,
    `Worst pile-up: ${s.peakWaitingOneRank.reqs} waiting on rank ${s.peakWaitingOneRank.rank} at ${f(s.peakWaitingOneRank.t)} s; peak ${s.peakLoadOneRank.tokens} tokens on rank ${s.peakLoadOneRank.rank} (mean ${f(s.peakLoadOneRank.meanAtPeak, 0)})`,
  ];
  if (s.delayerOutcomes) {
    lines.push(
      `Delayer outcomes: ${Object.entries(s.delayerOutcomes)
        .sort()
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
  }
  lines.push('='.repeat(50));
  return lines.join('\n');
}
