/**
 * `createEngine(options)`: the main thread's side of serving.
 *
 * - Tokenization and validation happen here (context length, token ids,
 *   queue bound), before anything is dispatched.
 * - The DP controller is `@tsinfer/scheduler`'s `DpDispatcher` over the
 *   ranks' load snapshot board (shared memory; the ranks publish, the
 *   controller reads, nobody messages anybody for loads). Each dispatch's
 *   sequence number travels with the request; the rank acknowledges it in
 *   its next snapshot.
 * - Each rank is a worker thread (`rank-worker.ts`). The adds and aborts of
 *   one event-loop turn go to a rank as one message each; the rank answers
 *   with one message per pass carrying every token of every request.
 * - A rank whose worker errors or exits is marked dead in the dispatcher at
 *   once; its requests end with `finish` reason `abort` and error
 *   TSI_ERR_RANK_FAILED; `health()` reports it.
 * - `shutdown()` refuses new requests (TSI_ERR_SHUTTING_DOWN), waits for the
 *   in-flight ones up to its timeout, aborts the rest with that error, and
 *   stops the workers.
 *
 * See docs/engine.md.
 */
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { ERROR_CODES, startWorker, systemClock, TsinferError, type TsinferErrorCode } from '@tsinfer/core';
import {
  abandonSharedAllGather,
  createSharedAllGatherInit,
  DELAYER_ROW_WIDTH,
  type PrefillDelayerMetricsSnapshot,
  type SharedAllGatherInit,
} from '@tsinfer/delayer';
import { loadSimProfile, type TokenLogprobs } from '@tsinfer/runtime';
import {
  collectLoads,
  createLoadSnapshot,
  createSharedWakeInit,
  DpDispatcher,
  LOCKSTEP_ROW_WIDTH,
  type LoadSnapshot,
  LoadSnapshotBoard,
} from '@tsinfer/scheduler';
import { EventStream } from './event-stream.js';
import { type EngineConfig, type EngineOptions, resolveEngineOptions } from './options.js';
import type {
  AddItem,
  FromRank,
  PassMessage,
  RankReady,
  RankStatsReply,
  RankWorkerInit,
} from './protocol.js';
import { type EngineTokenizer, loadEngineTokenizer } from './tokenizer.js';
import type {
  Engine,
  EngineHealth,
  EngineInfo,
  EngineRequestCounts,
  GenerateEvent,
  GenerateRequest,
  RankStats,
} from './types.js';

type FinishEvent = Extract<GenerateEvent, { type: 'finish' }>;

/** Milliseconds a stopping rank gets to leave its loop before it is terminated. */
const STOP_GRACE_MS = 10_000;

function toError(e: { code: string; message: string }): TsinferError {
  const code = (e.code in ERROR_CODES ? e.code : 'TSI_ERR_WORKER_CRASHED') as TsinferErrorCode;
  return new TsinferError(code, e.message);
}

interface Pending {
  readonly id: number;
  readonly rank: Rank;
  readonly promptTokens: number;
  readonly stream: EventStream;
  started: boolean;
  completionTokens: number;
  aborted: boolean;
  signal: AbortSignal | null;
  onAbort: (() => void) | null;
}

class Rank {
  readonly index: number;
  readonly worker: Worker;
  alive = true;
  ready = false;
  reason: string | undefined;
  /** Exit was asked for (shutdown): not a failure. */
  stopping = false;
  readonly exited: Promise<void>;
  readonly pending = new Map<number, Pending>();
  readonly statsWaiters = new Map<number, (r: RankStatsReply | null) => void>();
  /** The newest stats the rank pushed or answered. */
  lastStats: RankStatsReply | null = null;
  outAdds: AddItem[] = [];
  outAborts: number[] = [];
  flushScheduled = false;

  constructor(index: number, worker: Worker) {
    this.index = index;
    this.worker = worker;
    this.exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  }
}

/** The engine's version (the server package's). */
export const ENGINE_VERSION = '0.1.0';

export class LocalEngine implements Engine {
  readonly info: EngineInfo;
  readonly version = ENGINE_VERSION;
  readonly config: EngineConfig;
  readonly #ranks: Rank[];
  /** The shared-memory all-gather groups of DP attention (closed for a rank that dies). */
  readonly #groups: readonly SharedAllGatherInit[];
  readonly #board: LoadSnapshotBoard;
  readonly #records: LoadSnapshot[];
  readonly #dispatcher: DpDispatcher;
  readonly #tokenizer: EngineTokenizer;
  #nextId = 1;
  #nextStatsId = 1;
  #queued = 0;
  #inFlight = 0;
  #state: 'running' | 'draining' | 'stopped' = 'running';
  #shutdown: Promise<void> | null = null;
  #drainWaiters: Array<() => void> = [];
  readonly #transport = { addMessages: 0, abortMessages: 0, passMessages: 0, tokens: 0 };

  /** @internal use `createEngine`. */
  constructor(
    config: EngineConfig,
    ranks: Rank[],
    board: LoadSnapshotBoard,
    tokenizer: EngineTokenizer,
    ready: RankReady,
    groups: readonly SharedAllGatherInit[] = [],
  ) {
    this.#groups = groups;
    this.config = config;
    this.#ranks = ranks;
    this.#board = board;
    this.#records = ranks.map(() => createLoadSnapshot());
    this.#tokenizer = tokenizer;
    this.#dispatcher = new DpDispatcher({
      dpSize: config.dpSize,
      method: config.loadBalance.loadBalanceMethod,
      loads: board,
      clock: systemClock,
      staleAfterMs: config.loadBalance.loadSnapshotStaleMs,
    });
    this.info = Object.freeze({
      modelName: config.servedModelName ?? ready.info.name,
      modelPath: config.modelPath,
      contextLength: ready.info.contextLength,
      vocabSize: tokenizer.vocabSize,
      dpSize: config.dpSize,
      device: config.model.kind === 'sim' ? 'sim' : config.device,
      kvCapacityTokens: ready.kvCapacity,
      maxRunningRequests: ready.maxRunningRequests,
      maxReqLen: ready.maxReqLen,
      loadBalanceMethod: this.#dispatcher.method,
      prefillDelayer: ready.delayer,
      runtimeBackend: ready.backend.name,
      runtimeBackendReason: ready.backend.reason,
      tokenizer: tokenizer.kind,
    });
    for (const r of ranks) this.#watch(r);
  }

  // ---- requests ---------------------------------------------------------

  generate(request: GenerateRequest): AsyncIterable<GenerateEvent> {
    if (this.#state !== 'running') {
      throw new TsinferError(
        'TSI_ERR_SHUTTING_DOWN',
        'the engine is shutting down and accepts no new request',
      );
    }
    const prompt = this.#promptIds(request);
    const n = prompt.length;
    if (n === 0) throw new TsinferError('TSI_ERR_INVALID_REQUEST', 'the prompt is empty');
    const m = request.maxNewTokens;
    if (!Number.isSafeInteger(m) || m < 1) {
      throw new TsinferError('TSI_ERR_INVALID_REQUEST', `max_new_tokens must be an integer >= 1; got ${m}`);
    }
    const { contextLength, maxReqLen, kvCapacityTokens } = this.info;
    if (n >= maxReqLen) {
      throw new TsinferError(
        'TSI_ERR_CONTEXT_LENGTH',
        `the prompt has ${n} tokens; at most ${maxReqLen - 1} fit, leaving room for one new token (context length ${contextLength}, KV capacity ${kvCapacityTokens})`,
      );
    }
    if (n + m > contextLength) {
      throw new TsinferError(
        'TSI_ERR_CONTEXT_LENGTH',
        `Requested token count exceeds the model's maximum context length of ${contextLength} tokens. You requested a total of ${n + m} tokens: ${n} tokens from the input and ${m} tokens for the completion. Please reduce the input or max_tokens.`,
      );
    }
    const limit = this.config.maxQueuedRequests;
    if (limit !== null && this.#queued >= limit) {
      throw new TsinferError(
        'TSI_ERR_QUEUE_FULL',
        `${this.#queued} requests are already waiting for a rank to start them (--max-queued-requests ${limit}); retry later`,
      );
    }
    const signal = request.signal ?? null;
    if (signal?.aborted) {
      const s = new EventStream(() => undefined);
      s.pushFinish({
        type: 'finish',
        reason: 'abort',
        text: '',
        matchedStop: null,
        promptTokens: n,
        completionTokens: 0,
        dpRank: -1,
      });
      return s;
    }
    // Throws InvalidDpRankError (400), RankFailedError (503) or NoLiveRankError (503).
    const rankIndex = this.#dispatcher.dispatch(n, request.routedDpRank ?? null);
    const seq = this.#dispatcher.lastSeq;
    const rank = this.#ranks[rankIndex]!;
    const id = this.#nextId++;
    const p: Pending = {
      id,
      rank,
      promptTokens: n,
      stream: new EventStream(() => this.#abort(p)),
      started: false,
      completionTokens: 0,
      aborted: false,
      signal,
      onAbort: null,
    };
    if (signal !== null) {
      p.onAbort = () => this.#abort(p);
      signal.addEventListener('abort', p.onAbort, { once: true });
    }
    rank.pending.set(id, p);
    this.#queued++;
    this.#inFlight++;
    rank.outAdds.push({
      id,
      seq,
      prompt,
      maxNewTokens: m,
      sampling: request.sampling,
      stop: request.stop,
      stopTokenIds: request.stopTokenIds,
      ignoreEos: request.ignoreEos,
    });
    this.#scheduleFlush(rank);
    return p.stream;
  }

  #promptIds(request: GenerateRequest): Int32Array {
    const pr = request.prompt;
    if ('tokenIds' in pr) {
      this.#tokenizer.checkIds(pr.tokenIds);
      return Int32Array.from(pr.tokenIds);
    }
    return this.#tokenizer.encode(pr.text, pr.addSpecialTokens ?? true);
  }

  #abort(p: Pending): void {
    if (p.aborted || p.stream.ended) return;
    p.aborted = true;
    if (!p.rank.alive) return;
    p.rank.outAborts.push(p.id);
    this.#scheduleFlush(p.rank);
  }

  #scheduleFlush(rank: Rank): void {
    if (rank.flushScheduled) return;
    rank.flushScheduled = true;
    queueMicrotask(() => {
      rank.flushScheduled = false;
      if (!rank.alive) return;
      if (rank.outAdds.length > 0) {
        const items = rank.outAdds;
        rank.outAdds = [];
        this.#transport.addMessages++;
        rank.worker.postMessage(
          { t: 'add', items },
          items.map((it) => it.prompt.buffer as ArrayBuffer),
        );
      }
      if (rank.outAborts.length > 0) {
        const ids = rank.outAborts;
        rank.outAborts = [];
        this.#transport.abortMessages++;
        rank.worker.postMessage({ t: 'abort', ids });
      }
    });
  }

  #end(p: Pending, ev: FinishEvent): void {
    if (p.stream.ended) return;
    p.rank.pending.delete(p.id);
    if (!p.started) this.#queued--;
    this.#inFlight--;
    if (p.signal !== null && p.onAbort !== null) p.signal.removeEventListener('abort', p.onAbort);
    p.stream.pushFinish(ev);
    if (this.#inFlight === 0 && this.#drainWaiters.length > 0) {
      const w = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const f of w) f();
    }
  }

  #onPass(rank: Rank, m: PassMessage): void {
    this.#transport.passMessages++;
    this.#transport.tokens += m.tokens.length;
    let off = 0;
    let toff = 0;
    const { ids, counts, tokens, textLens, text } = m;
    for (let i = 0; i < ids.length; i++) {
      const c = counts[i]!;
      const tl = textLens[i]!;
      const p = rank.pending.get(ids[i]!);
      if (p !== undefined) {
        if (!p.started) {
          p.started = true;
          this.#queued--;
        }
        p.completionTokens += c;
        const tok: number[] = new Array(c);
        for (let k = 0; k < c; k++) tok[k] = tokens[off + k]!;
        const lp = m.logprobs?.[i] ?? null;
        p.stream.pushTokens(
          tok,
          tl === 0 ? '' : text.slice(toff, toff + tl),
          lp as (TokenLogprobs | null)[] | null,
        );
      }
      off += c;
      toff += tl;
    }
    for (const f of m.finishes) {
      const p = rank.pending.get(f.id);
      if (p === undefined) continue;
      this.#end(p, {
        type: 'finish',
        reason: f.reason,
        text: f.text,
        matchedStop: f.matchedStop,
        promptTokens: f.promptTokens,
        completionTokens: f.completionTokens,
        dpRank: rank.index,
        ...(f.error !== undefined ? { error: f.error } : {}),
      });
    }
  }

  // ---- ranks ------------------------------------------------------------

  #watch(rank: Rank): void {
    const w = rank.worker;
    w.on('message', (m: FromRank) => {
      switch (m.t) {
        case 'pass':
          this.#onPass(rank, m);
          break;
        case 'stats': {
          rank.lastStats = m;
          if (m.reqId === 0) break;
          const f = rank.statsWaiters.get(m.reqId);
          rank.statsWaiters.delete(m.reqId);
          f?.(m);
          break;
        }
        case 'fatal':
          this.#failRank(rank, `${m.error.code}: ${m.error.message.split('\n')[0]}`);
          break;
        default:
          break;
      }
    });
    w.on('error', (err) => {
      // A worker's uncaught error keeps its `code` across the thread boundary: name it in the reason.
      const code = (err as { code?: unknown })?.code;
      const message = String((err as Error)?.message ?? err);
      this.#failRank(rank, `worker error: ${typeof code === 'string' ? `${code}: ` : ''}${message}`);
    });
    w.on('exit', (code) => this.#failRank(rank, `worker exited with code ${code}`));
  }

  /** The rank's worker is gone: out of dispatch at once; its requests fail with TSI_ERR_RANK_FAILED. */
  #failRank(rank: Rank, reason: string): void {
    if (!rank.alive) return;
    rank.alive = false;
    if (rank.stopping) {
      rank.reason = 'stopped';
    } else {
      rank.reason = reason;
      this.#dispatcher.markDead(rank.index);
    }
    for (const f of rank.statsWaiters.values()) f(null);
    rank.statsWaiters.clear();
    rank.outAdds = [];
    rank.outAborts = [];
    const error = rank.stopping
      ? { code: 'TSI_ERR_SHUTTING_DOWN', message: 'the engine stopped its ranks' }
      : { code: 'TSI_ERR_RANK_FAILED', message: `DP rank ${rank.index} failed: ${reason}` };
    for (const p of [...rank.pending.values()]) this.#failPending(p, error);
    if (!rank.stopping) {
      // Lockstep peers cannot pass a round without this rank: close its groups so they fail now, not at the timeout.
      for (const g of this.#groups) abandonSharedAllGather(g, rank.index);
      void rank.worker.terminate();
    }
  }

  #failPending(p: Pending, error: { code: string; message: string }): void {
    this.#end(p, {
      type: 'finish',
      reason: 'abort',
      text: '',
      matchedStop: null,
      promptTokens: p.promptTokens,
      completionTokens: p.completionTokens,
      dpRank: p.rank.index,
      error,
    });
  }

  // ---- observability ----------------------------------------------------

  tokenize(text: string): number[] {
    return Array.from(this.#tokenizer.encode(text, true));
  }

  applyChatTemplate(messages: ReadonlyArray<{ role: string; content: string }>): string {
    return this.#tokenizer.applyChatTemplate(messages);
  }

  health(): EngineHealth {
    const ranks = this.#ranks.map((r) =>
      r.alive
        ? { dpRank: r.index, alive: true }
        : { dpRank: r.index, alive: false, reason: r.reason ?? 'dead' },
    );
    return { ok: this.#state === 'running' && ranks.every((r) => r.alive), ranks };
  }

  loads(dpRank: number | null = null): LoadSnapshot[] {
    return collectLoads(this.#board, this.#records, dpRank).map((s: LoadSnapshot) => ({ ...s }));
  }

  delayerMetrics(): (PrefillDelayerMetricsSnapshot | null)[] {
    return this.#ranks.map((r) => r.lastStats?.delayer ?? null);
  }

  decode(tokenIds: readonly number[]): string {
    return this.#tokenizer.decode(tokenIds);
  }

  encodeChat(messages: ReadonlyArray<{ role: string; content: string }>): number[] {
    return Array.from(this.#tokenizer.encodeChat(messages));
  }

  requestCounts(): EngineRequestCounts {
    return { queued: this.#queued, inFlight: this.#inFlight };
  }

  /**
   * Messages between the main thread and the ranks so far: `add` and `abort`
   * messages sent (each carries every add / abort of one event-loop turn for
   * one rank), `pass` messages received (at most one per rank pass, plus one
   * for finishes that need no pass) and the tokens they carried.
   */
  transportStats(): { addMessages: number; abortMessages: number; passMessages: number; tokens: number } {
    return { ...this.#transport };
  }

  /** Requests the DP controller has sent to each rank (pinned included). */
  dispatchCounts(): number[] {
    return Array.from(this.#dispatcher.dispatched);
  }

  async rankStats(options: { timeoutMs?: number } = {}): Promise<RankStats[]> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const replies = await Promise.all(
      this.#ranks.map(
        (r) =>
          new Promise<RankStatsReply | null>((resolve) => {
            if (!r.alive) {
              resolve(null);
              return;
            }
            const reqId = this.#nextStatsId++;
            const timer = setTimeout(() => {
              r.statsWaiters.delete(reqId);
              resolve(null);
            }, timeoutMs);
            r.statsWaiters.set(reqId, (m) => {
              clearTimeout(timer);
              resolve(m);
            });
            r.worker.postMessage({ t: 'stats', reqId });
          }),
      ),
    );
    return replies.map((m, i) => ({
      dpRank: i,
      alive: this.#ranks[i]!.alive,
      stats: m?.stats ?? null,
      delayer: m?.delayer ?? null,
      runnerKvUsedTokens: m?.runnerKvUsedTokens ?? null,
    }));
  }

  /** There is no prefix cache yet: every KV slot belongs to a live request, so there is nothing to free. */
  async flushCache(): Promise<void> {}

  // ---- shutdown ---------------------------------------------------------

  shutdown(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#shutdown ??= this.#doShutdown(options.timeoutMs ?? 30_000);
    return this.#shutdown;
  }

  async #doShutdown(timeoutMs: number): Promise<void> {
    this.#state = 'draining';
    if (this.#inFlight > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#drainWaiters.push(resolve)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.max(0, timeoutMs));
        }),
      ]);
      clearTimeout(timer);
    }
    this.#state = 'stopped';
    const error = {
      code: 'TSI_ERR_SHUTTING_DOWN',
      message: `aborted: the engine shut down and the request did not finish within the ${timeoutMs} ms shutdown timeout`,
    };
    for (const r of this.#ranks) {
      const ids = [...r.pending.keys()];
      // The rank frees their KV and (lockstep ranks) drains to an idle pass before it leaves.
      if (ids.length > 0 && r.alive) r.worker.postMessage({ t: 'abort', ids });
      for (const p of [...r.pending.values()]) this.#failPending(p, error);
    }
    await Promise.all(this.#ranks.map((r) => stopRank(r)));
  }
}

async function stopRank(r: Rank): Promise<void> {
  r.stopping = true;
  if (r.alive) {
    try {
      r.worker.postMessage({ t: 'stop' });
    } catch {
      // already gone
    }
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    r.exited,
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, STOP_GRACE_MS);
    }),
  ]);
  clearTimeout(timer);
  await r.worker.terminate();
  await r.exited;
}

/**
 * Starts the ranks (one worker thread each), waits until every one has its
 * model loaded and has published its first load snapshot, and returns the
 * engine. Invalid options throw `InvalidConfigError` naming the flag before
 * any thread starts; a rank that fails to start rejects with its error
 * (e.g. TSI_ERR_MODEL_LOAD) after the other ranks are stopped.
 */
export async function createEngine(options: EngineOptions): Promise<LocalEngine> {
  const config = resolveEngineOptions(options);
  const dp = config.dpSize;
  const sc = config.scheduler;
  if (config.model.kind === 'sim') await loadSimProfile(config.model.profilePath); // fail fast on a bad profile
  const board = LoadSnapshotBoard.create(dp);
  const grouped = sc.enableDpAttention && dp > 1;
  const lockInit = grouped
    ? createSharedAllGatherInit(dp, LOCKSTEP_ROW_WIDTH, { timeoutMs: config.collectiveTimeoutMs })
    : null;
  const delayInit =
    grouped && sc.delayer.enabled
      ? createSharedAllGatherInit(dp, DELAYER_ROW_WIDTH, { timeoutMs: config.collectiveTimeoutMs })
      : null;
  const wakeInit = grouped ? createSharedWakeInit() : null;
  const perRankMrr =
    sc.maxRunningRequests === null
      ? 256
      : Math.max(1, Math.floor(sc.maxRunningRequests / (grouped ? dp : 1)));
  const threads = config.intraOpThreads ?? Math.max(1, Math.floor(availableParallelism() / dp));
  const ranks: Rank[] = [];
  const readies: Promise<RankReady>[] = [];
  for (let r = 0; r < dp; r++) {
    const init: RankWorkerInit = {
      rank: r,
      dpSize: dp,
      model:
        config.model.kind === 'sim'
          ? config.model
          : {
              kind: 'dir',
              dir: config.model.dir,
              device: config.device,
              intraOpThreads: threads,
              memFractionStatic: config.memFractionStatic,
              maxRequests: perRankMrr,
              runtimeBackend: config.runtimeBackend,
            },
      scheduler: sc,
      seed: config.seed,
      board: board.buffer,
      publishInterval: config.loadBalance.loadSnapshotPublishInterval,
      heartbeatMs: config.loadBalance.loadSnapshotHeartbeatMs,
      lockInit,
      delayInit,
      wakeInit,
      crashAfterPasses: config.faultInjection?.rank === r ? config.faultInjection.afterPasses : null,
      crashHow: config.faultInjection?.how ?? 'throw',
    };
    const worker = startWorker(import.meta.url, './rank-worker', { workerData: init });
    const rank = new Rank(r, worker);
    ranks.push(rank);
    readies.push(
      new Promise<RankReady>((resolve, reject) => {
        const onMessage = (m: FromRank): void => {
          if (m.t === 'ready') {
            cleanup();
            rank.ready = true;
            resolve(m);
          } else if (m.t === 'fatal') {
            cleanup();
            reject(toError(m.error));
          }
        };
        const onError = (err: unknown): void => {
          cleanup();
          reject(err);
        };
        const onExit = (code: number): void => {
          cleanup();
          reject(
            new TsinferError(
              'TSI_ERR_WORKER_CRASHED',
              `DP rank ${r} exited with code ${code} while starting`,
            ),
          );
        };
        const cleanup = (): void => {
          worker.off('message', onMessage);
          worker.off('error', onError);
          worker.off('exit', onExit);
        };
        worker.on('message', onMessage);
        worker.on('error', onError);
        worker.on('exit', onExit);
      }),
    );
  }
  let ready: RankReady[];
  try {
    ready = await Promise.all(readies);
  } catch (err) {
    await Promise.all(ranks.map((r) => r.worker.terminate()));
    throw err;
  }
  const first = ready[0]!;
  const tokenizer = await loadEngineTokenizer(config.model, first.info).catch(async (err: unknown) => {
    await Promise.all(ranks.map((r) => r.worker.terminate()));
    throw err;
  });
  const groups = [lockInit, delayInit].filter((g): g is SharedAllGatherInit => g !== null);
  return new LocalEngine(config, ranks, board, tokenizer, first, groups);
}
