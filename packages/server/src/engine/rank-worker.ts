/**
 * One data-parallel rank on its worker thread: the model runner (OnnxRunner
 * for a model directory, SimRunner for `sim:`), the rank's Scheduler, its
 * tokenizer's detokenizer and stop strings, and the pass loop — the
 * scheduler package's `runRankLoop`, the same loop the virtual-time driver
 * runs.
 *
 * Adds and aborts are applied to the scheduler as their (batched) messages
 * arrive — between passes, or while a pass awaits its forward, which the
 * scheduler allows — and then wake the loop. After each pass the rank
 * publishes its load snapshot when the cadence says so (the snapshot's
 * counts and its acknowledged dispatch sequence come from the same
 * synchronous stretch, so every request it acknowledges is counted in it),
 * and posts one `pass` message with every token, text delta and finish of
 * the pass. An idle rank waits on its wake signal and keeps its snapshot
 * fresh with a heartbeat timer. Under DP attention the ranks step together
 * through the lockstep all-gather and share one `SharedWake`, whose
 * generation travels in the lockstep row, so the group goes idle (and
 * wakes) together.
 *
 * A fatal error (a runner failure, a failed collective, the fault
 * injection) posts `fatal` and is rethrown, so the worker ends with an
 * error; the main thread then fails this rank's requests.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { systemClock, TsinferError } from '@tsinfer/core';
import { SharedMemoryAllGather } from '@tsinfer/delayer';
import {
  createRunner,
  loadSimProfile,
  type ModelRunner,
  NativeRunner,
  OnnxRunner,
  SimRunner,
  type TokenLogprobs,
} from '@tsinfer/runtime';
import {
  createLoadSnapshot,
  LoadSnapshotBoard,
  LocalWake,
  type PassStats,
  PublishCadence,
  type RankLoopEnv,
  type Request,
  runRankLoop,
  Scheduler,
  SharedWake,
  type WakeSignal,
} from '@tsinfer/scheduler';
import type { FinishItem, FromRank, PassMessage, RankReady, RankWorkerInit, ToRank } from './protocol.js';
import { RequestText } from './request-text.js';
import { loadEngineTokenizer } from './tokenizer.js';

interface WorkerReq {
  readonly id: number;
  readonly text: RequestText;
  readonly logprobs: boolean;
  /** Flush number of this request's current entry, and the entry's index. */
  entryFlush: number;
  entry: number;
}

function errorInfo(err: unknown): { code: string; message: string } {
  if (err instanceof TsinferError) return { code: err.code, message: err.message };
  return { code: 'TSI_ERR_WORKER_CRASHED', message: String((err as Error)?.stack ?? err) };
}

const init = workerData as RankWorkerInit;
const port = parentPort!;
const post = (m: FromRank, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer ?? []);

/** Messages that arrive before the scheduler exists (applied once it does). */
const early: ToRank[] = [];
let apply: ((m: ToRank) => void) | null = null;
let stopping = false;
let wakeSignal: WakeSignal | null = null;
let scheduler: Scheduler | null = null;
let runner: ModelRunner | null = null;

function runnerKv(): { used: number; held: number } {
  if (runner instanceof SimRunner) return { used: runner.kvUsedTokens, held: runner.heldRequests };
  if (runner instanceof OnnxRunner || runner instanceof NativeRunner) {
    const s = runner.stats();
    return { used: s.kvUsedTokens, held: s.heldRequests };
  }
  return { used: 0, held: 0 };
}

/** Posts the scheduler's stats and delayer metrics (reqId 0: an unasked push the main thread caches). */
function postStats(reqId: number): void {
  const s = scheduler;
  if (s === null) return;
  const kv = runnerKv();
  post({
    t: 'stats',
    reqId,
    stats: structuredClone(s.stats as PassStats),
    delayer: s.delayer?.metrics?.snapshot() ?? null,
    runnerKvUsedTokens: kv.used,
    runnerHeldRequests: kv.held,
  });
}

/** Least time between two unasked stats pushes of a busy rank. */
const STATS_PUSH_MS = 1000;

/** Stats requests of a busy rank, answered after its current pass (so they see a pass boundary). */
const statsAsked: number[] = [];
/** True from the moment the rank gets work until a pass leaves it with none. */
let busy = false;

port.on('message', (m: ToRank) => {
  if (m.t === 'stats') {
    if (busy) statsAsked.push(m.reqId);
    else postStats(m.reqId);
  } else if (m.t === 'stop') {
    stopping = true;
    wakeSignal?.notify();
  } else if (apply !== null) apply(m);
  else early.push(m);
});

async function main(): Promise<void> {
  const rank = init.rank;
  const clock = systemClock;
  let maxBatch: number | undefined;
  let backend: RankReady['backend'] = { name: 'sim', reason: 'sim: profile' };
  if (init.model.kind === 'sim') {
    const profile = await loadSimProfile(init.model.profilePath);
    runner = new SimRunner({ profile, seed: init.seed + rank });
    maxBatch = profile.model.maxBatch;
  } else {
    const m = init.model;
    const created = await createRunner({
      backend: m.runtimeBackend,
      modelDir: m.dir,
      device: m.device,
      seed: init.seed + rank,
      maxRequests: m.maxRequests,
      ...(m.intraOpThreads !== null ? { intraOpThreads: m.intraOpThreads } : {}),
      ...(m.memFractionStatic !== null ? { memFractionStatic: m.memFractionStatic } : {}),
      ...(init.scheduler.maxTotalTokens !== null ? { maxTotalTokens: init.scheduler.maxTotalTokens } : {}),
    });
    runner = created.runner;
    backend = { name: created.backend, reason: created.reason };
    // The native cache holds one request per slot: never run more than that.
    maxBatch =
      created.runner instanceof NativeRunner
        ? Math.min(m.maxRequests, created.runner.kv.maxSlots)
        : m.maxRequests;
  }
  const tokenizer = await loadEngineTokenizer(init.model, runner.info);
  const board = LoadSnapshotBoard.attach(init.board, init.dpSize);
  const wake: WakeSignal = init.wakeInit !== null ? new SharedWake(init.wakeInit) : new LocalWake();
  wakeSignal = wake;
  const lock = init.lockInit ? new SharedMemoryAllGather(init.lockInit, rank) : null;
  const delay = init.delayInit ? new SharedMemoryAllGather(init.delayInit, rank) : null;

  // ---- per-pass output buffers -------------------------------------------
  let flushNo = 1;
  const entIds: number[] = [];
  const entCounts: number[] = [];
  const entTextLens: number[] = [];
  const entTokens: number[] = [];
  const textParts: string[] = [];
  let entLogprobs: Array<Array<TokenLogprobs | null> | null> | null = null;
  let finishes: FinishItem[] = [];

  const s = new Scheduler({
    runner,
    clock,
    config: init.scheduler,
    rank,
    lockstep: lock,
    delayerGather: delay,
    ...(init.wakeInit !== null ? { wakeGeneration: () => wake.generation() } : {}),
    ...(maxBatch !== undefined ? { maxBatch } : {}),
    sink: {
      onToken(req: Request, token: number, lp: TokenLogprobs | null): void {
        const w = req.userData as WorkerReq;
        // Mirrors Request.checkFinished's order: a token that ends the request as EOS / stop token
        // (and not by length) has no text.
        const textless = req.outputLen < req.maxNewTokens && req.stopTokens.includes(token);
        w.text.onToken(token, textless);
        const delta = w.text.take();
        if (w.entryFlush !== flushNo) {
          w.entryFlush = flushNo;
          w.entry = entIds.length;
          entIds.push(w.id);
          entCounts.push(0);
          entTextLens.push(0);
          if (entLogprobs !== null) entLogprobs.push(null);
        }
        entCounts[w.entry]!++;
        entTokens.push(token);
        if (delta.length > 0) {
          textParts.push(delta);
          entTextLens[w.entry]! += delta.length;
        }
        if (w.logprobs) {
          if (entLogprobs === null) entLogprobs = entIds.map(() => null);
          let a = entLogprobs[w.entry];
          if (a === null || a === undefined) {
            a = [];
            entLogprobs[w.entry] = a;
          }
          a.push(lp);
        }
      },
      onFinish(req: Request): void {
        const w = req.userData as WorkerReq;
        finishes.push({
          id: w.id,
          reason: req.finishReason ?? 'abort',
          matchedStop: req.matchedStop,
          text: w.text.finish(),
          promptTokens: req.prompt.length,
          completionTokens: req.outputLen,
        });
      },
    },
  });
  scheduler = s;

  const flush = (): void => {
    if (entIds.length === 0 && finishes.length === 0) return;
    const msg: PassMessage = {
      t: 'pass',
      ids: Int32Array.from(entIds),
      counts: Int32Array.from(entCounts),
      tokens: Int32Array.from(entTokens),
      textLens: Int32Array.from(entTextLens),
      text: textParts.length === 0 ? '' : textParts.join(''),
      logprobs: entLogprobs,
      finishes,
    };
    post(msg, [msg.ids.buffer, msg.counts.buffer, msg.tokens.buffer, msg.textLens.buffer] as ArrayBuffer[]);
    flushNo++;
    entIds.length = 0;
    entCounts.length = 0;
    entTextLens.length = 0;
    entTokens.length = 0;
    textParts.length = 0;
    entLogprobs = null;
    finishes = [];
  };

  // ---- adds and aborts ------------------------------------------------------
  let maxSeq = 0;
  const applyMessage = (m: ToRank): void => {
    if (m.t === 'add') {
      for (const it of m.items) {
        const text = new RequestText(tokenizer.createDetokenizer(it.prompt.subarray(-4)), it.stop);
        const w: WorkerReq = {
          id: it.id,
          text,
          logprobs: it.sampling.logprobs !== 0,
          entryFlush: 0,
          entry: 0,
        };
        try {
          s.addRequest({
            rid: String(it.id),
            promptTokens: it.prompt,
            maxNewTokens: it.maxNewTokens,
            sampling: it.sampling,
            stopTokenIds: it.stopTokenIds,
            ignoreEos: it.ignoreEos,
            stop: text.hasStops ? text : null,
            userData: w,
          });
        } catch (err) {
          finishes.push({
            id: it.id,
            reason: 'abort',
            matchedStop: null,
            text: '',
            promptTokens: it.prompt.length,
            completionTokens: 0,
            error: errorInfo(err),
          });
        }
        if (it.seq > maxSeq) maxSeq = it.seq;
      }
    } else if (m.t === 'abort') {
      for (const id of m.ids) s.abort(String(id));
    }
    // Finishes that need no pass (a waiting request aborted, a refused add) go out now.
    flush();
    if (s.hasWork) busy = true;
    wake.notify();
  };

  // ---- load snapshots ------------------------------------------------------
  const cadence = new PublishCadence({
    publishInterval: init.publishInterval,
    heartbeatMs: init.heartbeatMs,
  });
  const snap = createLoadSnapshot();
  snap.dpRank = rank;
  snap.maxTotalNumTokens = s.kvCapacity;
  snap.maxRunningRequests = s.maxRunningRequests;
  let prefillTokensTotal = 0;
  let prefillBusyUs = 0;
  const publish = (st: Readonly<PassStats> | null, acked: number): void => {
    snap.timestamp = clock.nowMs();
    snap.ackedDispatchSeq = acked;
    snap.numRunningReqs = s.numRunning;
    snap.numWaitingReqs = s.numWaiting;
    snap.numUsedTokens = s.usedTokens;
    snap.numTotalTokens = st !== null ? st.numTotalTokens : s.usedTokens;
    snap.numActiveTokens = snap.numTotalTokens;
    snap.numWaitingUncachedTokens = st !== null ? st.numWaitingUncachedTokens : 0;
    snap.tokenUsage = Math.round((s.usedTokens / s.kvCapacity) * 1e4) / 1e4;
    snap.genThroughput = Math.round((st?.genThroughput ?? s.stats.genThroughput) * 100) / 100;
    snap.totalPrefillUncachedTokens = prefillTokensTotal;
    snap.totalPrefillBusyUs = Math.round(prefillBusyUs);
    snap.queuesWaiting = s.numWaiting;
    board.publish(rank, snap);
  };

  // The first snapshot goes out before `ready`: a rank is dispatchable as soon as the main thread knows it.
  if (cadence.onStart(clock.nowMs())) publish(null, 0);
  post({
    t: 'ready',
    info: runner.info,
    kvCapacity: s.kvCapacity,
    maxRunningRequests: s.maxRunningRequests,
    maxReqLen: s.maxReqLen,
    delayer: s.delayer !== null,
    backend,
  });
  postStats(0);
  let lastStatsPush = clock.nowMs();
  let passesSincePush = 0;
  const maybePushStats = (idle: boolean): void => {
    if (passesSincePush === 0) return;
    const now = clock.nowMs();
    if (idle || now - lastStatsPush >= STATS_PUSH_MS) {
      postStats(0);
      lastStatsPush = now;
      passesSincePush = 0;
    }
  };

  let forwardPasses = 0;
  const heartbeat = setInterval(() => {
    if (!busy && !s.hasWork && cadence.onIdleTick(clock.nowMs())) publish(null, maxSeq);
  }, init.heartbeatMs);
  apply = applyMessage;
  for (const m of early.splice(0)) applyMessage(m);

  const env: RankLoopEnv = {
    sleep: (ms) => new Promise<void>((r) => setTimeout(r, ms)),
    wake,
    stopped: () => stopping,
    afterPass: async () => {
      const st = s.stats;
      const now = clock.nowMs();
      if (st.forwarded) forwardPasses++;
      passesSincePush++;
      if (st.mode === 'prefill') {
        prefillTokensTotal += st.prefillTokens;
        prefillBusyUs += st.forwardUs;
      }
      if (!s.hasWork) {
        // Idle: everything received has finished, so every sequence number is acknowledged.
        busy = false;
        if (cadence.onIdleTick(now)) publish(null, maxSeq);
      } else if (cadence.afterPass(st.mode === 'prefill', now)) {
        publish(st, maxSeq);
      }
      flush();
      maybePushStats(!busy);
      for (const id of statsAsked.splice(0)) postStats(id);
      if (init.crashAfterPasses !== null && forwardPasses >= init.crashAfterPasses) {
        if (init.crashHow === 'exit') process.exit(3);
        throw new Error(`fault injection: rank ${rank} crashes after ${forwardPasses} forward passes`);
      }
      // A macrotask turn, so that messages are taken in even when forwards resolve without one.
      await new Promise<void>((r) => setImmediate(r));
    },
  };
  try {
    await runRankLoop(s, env, lock !== null);
  } finally {
    busy = false;
    for (const id of statsAsked.splice(0)) postStats(id);
    clearInterval(heartbeat);
    // Leave the collectives first, so peers blocked in a gather wake at once.
    lock?.close();
    delay?.close();
  }
  s.close();
  await runner.close();
  port.close();
}

main().catch((err: unknown) => {
  try {
    post({ t: 'fatal', error: errorInfo(err) });
  } catch {
    // the port is gone
  }
  throw err;
});
