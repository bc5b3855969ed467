/**
 * The virtual-time driver: N ranks, each the real `Scheduler` with a
 * `SimRunner`, in one thread, on one `VirtualTimeline`. Deterministic and
 * faster than real time: the runners' modelled pass times are timeline
 * sleeps, arrivals are timeline sleeps, and the timeline resolves them in
 * deadline order, letting the woken code run to its next sleep in between.
 *
 * Each rank runs {@link runRankLoop} — the same loop a worker thread runs
 * with real time — as an async task. Without DP attention the ranks are
 * independent (each on its own timers). With DP attention the ranks meet in
 * the in-process lockstep group (and the delayer's group) every pass, so
 * the group moves at the pace of its slowest rank, as lockstep ranks do.
 */
import type { Clock } from '@tsinfer/core';
import { DELAYER_ROW_WIDTH } from '@tsinfer/delayer';
import { type SimProfile, SimRunner, VirtualTimeline } from '@tsinfer/runtime';
import { InProcessGatherGroup } from './collective.js';
import type { SchedulerConfig } from './config.js';
import { resolveSchedulerConfig } from './config.js';
import type { RequestInput } from './request.js';
import { LOCKSTEP_ROW_WIDTH, type OutputSink, Scheduler } from './scheduler.js';
import { LocalWake, type WakeSignal } from './wake.js';

/** What a rank loop needs from its environment (real threads or virtual time). */
export interface RankLoopEnv {
  /** Sleeps `ms` of (real or virtual) time. */
  sleep(ms: number): Promise<void>;
  /**
   * Wakes the loop when work may have arrived: whoever queues a request (or an
   * abort) on this rank calls `notify()` after it. Independent ranks: one per
   * rank. DP attention: one for the whole group (`SharedWake` across threads),
   * and the same signal's `generation` must be given to every rank's
   * Scheduler as `wakeGeneration`.
   */
  wake: WakeSignal;
  /**
   * True when the loop should end (call `wake.notify()` after setting it).
   * Independent ranks leave at the next loop turn. Lockstep ranks leave only
   * at a pass where the whole group is idle (they drain their work first).
   */
  stopped(): boolean;
  /** Sleep after a pass that ran no forward while work remains (a delayed or blocked rank), so time moves. Default 1 ms. */
  idleSpinMs?: number;
  /**
   * Called after every pass. On a worker thread give it a macrotask turn
   * (`() => new Promise((r) => setImmediate(r))`): a runner whose forward
   * resolves without one (onnxruntime's run blocks the thread) would
   * otherwise keep the loop in microtasks and the thread's messages (new
   * requests, aborts) would wait until the rank goes idle.
   */
  afterPass?: () => Promise<void>;
}

/**
 * The rank's main loop: step while there is work; sleep when there is none.
 * Under DP attention a rank steps (idle passes included) while any rank of
 * the group has work, and sleeps only when a pass reports the whole group
 * idle — a decision every rank takes on the same gathered rows, waiting on
 * the same wake generation.
 */
export async function runRankLoop(s: Scheduler, env: RankLoopEnv, lockstep: boolean): Promise<void> {
  const spin = env.idleSpinMs ?? 1;
  for (;;) {
    if (!lockstep) {
      if (env.stopped()) return;
      if (!s.hasWork) {
        await env.wake.waitForChange(env.wake.generation());
        continue;
      }
      const st = await s.step();
      if (env.afterPass) await env.afterPass();
      if (!st.forwarded && s.hasWork) await env.sleep(spin);
      continue;
    }
    const st = await s.step();
    if (env.afterPass) await env.afterPass();
    if (st.groupIdle) {
      // A lockstep rank may only leave at a pass where the whole group is idle (else its peers
      // would wait in the next gather for it): stop the group by setting every rank's flag, then
      // notifying the group's wake once.
      if (env.stopped()) return;
      await env.wake.waitForChange(st.groupWakeGen);
      if (env.stopped()) return;
    } else if (!st.forwarded) {
      await env.sleep(spin);
    }
  }
}

export interface VirtualClusterOptions {
  /** DP ranks; default config.dpSize. */
  ranks?: number;
  profile: SimProfile;
  config?: Partial<SchedulerConfig>;
  /** Sink per rank (or one for all). */
  sink?: OutputSink | ((rank: number) => OutputSink);
  /** Seed of the SimRunners (per-rank seed = seed + rank). */
  seed?: number;
  idleSpinMs?: number;
  timeline?: VirtualTimeline;
}

/**
 * N ranks on a virtual timeline. Submit requests at virtual times, then
 * `run()` until every request is done.
 */
export class VirtualCluster {
  readonly timeline: VirtualTimeline;
  readonly clock: Clock;
  readonly schedulers: Scheduler[];
  readonly runners: SimRunner[];
  readonly lockstep: boolean;
  readonly config: Readonly<SchedulerConfig>;
  readonly #idleSpinMs: number;
  readonly #groups: InProcessGatherGroup[] = [];
  /** One per rank (independent), or one shared by every rank (lockstep). */
  readonly #wakes: LocalWake[];
  #stopped = false;
  #loops: Promise<void>[] | null = null;
  #inFlightArrivals = 0;

  constructor(options: VirtualClusterOptions) {
    this.config = resolveSchedulerConfig(options.config ?? {});
    const n = options.ranks ?? this.config.dpSize;
    const config: Partial<SchedulerConfig> = { ...this.config, dpSize: n };
    this.timeline = options.timeline ?? new VirtualTimeline();
    this.clock = this.timeline.clock;
    this.lockstep = this.config.enableDpAttention && n > 1;
    this.#idleSpinMs = options.idleSpinMs ?? 1;
    const lockGroup = this.lockstep ? new InProcessGatherGroup(n, LOCKSTEP_ROW_WIDTH, this.clock) : null;
    const delayGroup =
      this.lockstep && this.config.delayer.enabled
        ? new InProcessGatherGroup(n, DELAYER_ROW_WIDTH, this.clock)
        : null;
    if (lockGroup) this.#groups.push(lockGroup);
    if (delayGroup) this.#groups.push(delayGroup);
    const groupWake = new LocalWake();
    this.#wakes = Array.from({ length: n }, () => (this.lockstep ? groupWake : new LocalWake()));
    this.runners = [];
    this.schedulers = [];
    for (let r = 0; r < n; r++) {
      const runner = new SimRunner({
        profile: options.profile,
        wait: this.timeline.sleep,
        seed: (options.seed ?? 0) + r,
      });
      const sink = typeof options.sink === 'function' ? options.sink(r) : options.sink;
      const maxBatch = options.profile.model.maxBatch;
      this.runners.push(runner);
      this.schedulers.push(
        new Scheduler({
          runner,
          clock: this.clock,
          config,
          rank: r,
          ...(sink ? { sink } : {}),
          lockstep: lockGroup?.endpoint(r) ?? null,
          delayerGather: delayGroup?.endpoint(r) ?? null,
          ...(maxBatch !== undefined ? { maxBatch } : {}),
          ...(this.lockstep ? { wakeGeneration: () => groupWake.generation() } : {}),
        }),
      );
    }
  }

  /** Virtual now (ms). */
  nowMs(): number {
    return this.clock.nowMs();
  }

  /** Queues `input` on `rank` at virtual time `atMs` (now if in the past). */
  submit(atMs: number, rank: number, input: RequestInput): void {
    const delay = atMs - this.clock.nowMs();
    if (delay <= 0) {
      this.#deliver(rank, input);
      return;
    }
    this.#inFlightArrivals++;
    void this.timeline.sleep(delay).then(() => {
      this.#inFlightArrivals--;
      this.#deliver(rank, input);
    });
  }

  /** Aborts `rid` on `rank` at virtual time `atMs`. */
  abortAt(atMs: number, rank: number, rid: string): void {
    const delay = atMs - this.clock.nowMs();
    const go = (): void => {
      this.schedulers[rank]!.abort(rid);
      this.#notify(rank);
    };
    if (delay <= 0) go();
    else void this.timeline.sleep(delay).then(go);
  }

  #deliver(rank: number, input: RequestInput): void {
    const s = this.schedulers[rank];
    if (!s) throw new RangeError(`no rank ${rank}`);
    s.addRequest(input);
    this.#notify(rank);
  }

  #notify(rank: number): void {
    this.#wakes[rank]!.notify();
  }

  #env(rank: number): RankLoopEnv {
    return {
      sleep: this.timeline.sleep,
      stopped: () => this.#stopped,
      idleSpinMs: this.#idleSpinMs,
      wake: this.#wakes[rank]!,
    };
  }

  /** Starts the rank loops (once). */
  start(): void {
    if (this.#loops !== null) return;
    this.#loops = this.schedulers.map((s, r) => runRankLoop(s, this.#env(r), this.lockstep));
  }

  /**
   * Runs until no timer is left (every submitted request delivered and every
   * rank out of work), then stops the loops. Rejects with the first error a
   * rank loop threw.
   */
  async run(options: { maxEvents?: number } = {}): Promise<void> {
    this.start();
    const loops = this.#loops!;
    let failure: unknown = null;
    const watched = loops.map((p) =>
      p.catch((err: unknown) => {
        failure ??= err;
        for (const g of this.#groups) g.close(`a rank failed: ${String(err)}`);
      }),
    );
    await this.timeline.runUntilIdle(options);
    if (failure !== null) throw failure;
    const busy = this.schedulers.filter((s) => s.hasWork).map((s) => s.rank);
    if (busy.length > 0 || this.#inFlightArrivals > 0) {
      throw new Error(
        `VirtualCluster: no timer left but ranks [${busy.join(',')}] still have work (a stuck loop)`,
      );
    }
    await this.stop();
    await Promise.all(watched);
    if (failure !== null) throw failure;
  }

  /** Ends the loops (they are all waiting for work). */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const w of new Set(this.#wakes)) w.notify();
    await Promise.all(this.#loops ?? []);
  }
}
