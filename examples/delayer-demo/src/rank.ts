/**
 * One simulated data-parallel rank (runs in a worker thread). It is a toy
 * scheduler, not tsinfer's: requests arrive at random, each decodes for a
 * random number of passes, and every pass the rank asks the real
 * PrefillDelayer (over the real shared-memory all-gather) whether it may
 * admit waiting requests. A "forward" is a fixed wait of `passMs`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createRng, systemClock } from '@tsinfer/core';
import {
  MaxPrefillBsTracker,
  PrefillDelayer,
  type PrefillDelayerConfig,
  type SharedAllGatherInit,
  SharedMemoryAllGather,
} from '@tsinfer/delayer';

export interface RankParams {
  init: SharedAllGatherInit;
  rank: number;
  dpSize: number;
  passes: number;
  passMs: number;
  seed: number;
  maxRunningRequests: number;
  prefillMaxRequests: number;
  arrivalsPerPass: number;
  minOutputPasses: number;
  maxOutputPasses: number;
  delayer: Partial<PrefillDelayerConfig>;
}

export interface RankReport {
  rank: number;
  passes: number;
  prefillPasses: number;
  admitted: number;
  finished: number;
  meanRunning: number;
  p99QueueWaitPasses: number;
  outcomes: Record<string, number>;
  /** 1 for each pass in which this rank prefilled. */
  prefillMask: Uint8Array;
}

export function runRank(p: RankParams): RankReport {
  const rng = createRng(p.seed * 1000 + p.rank);
  const gather = new SharedMemoryAllGather(p.init, p.rank, systemClock);
  // As the server does: no delayer at all unless --enable-prefill-delayer.
  const delayer = p.delayer.enabled
    ? new PrefillDelayer({
        config: p.delayer,
        allGather: gather,
        clock: systemClock,
        dpSize: p.dpSize,
        enableDpAttention: true,
      })
    : null;
  const tracker = new MaxPrefillBsTracker(0);
  const remaining: number[] = []; // decode passes left per running request
  const waitingSince: number[] = []; // arrival pass per waiting request (FIFO)
  const waits: number[] = [];
  const tick = new Int32Array(new SharedArrayBuffer(4));
  const prefillMask = new Uint8Array(p.passes);
  let prefillPasses = 0;
  let admitted = 0;
  let finished = 0;
  let runningSum = 0;

  for (let pass = 0; pass < p.passes; pass++) {
    // Poisson arrivals (Knuth).
    const limit = Math.exp(-p.arrivalsPerPass);
    for (let u = rng.next(); u > limit; u *= rng.next()) waitingSince.push(pass);

    const run = delayer?.beginPass(remaining.length / p.maxRunningRequests);
    let admit = 0;
    const free = p.maxRunningRequests - remaining.length;
    if (waitingSince.length > 0 && free > 0) {
      const allow =
        !run ||
        run.negotiate({
          prefillable: true,
          runningBatch: remaining.length,
          maxPrefillBs: tracker.value,
          maxRunningRequests: p.maxRunningRequests,
          waitingQueueLen: waitingSince.length,
        });
      if (allow) admit = Math.min(waitingSince.length, free, p.prefillMaxRequests);
    }
    run?.finalize(admit > 0);
    if (admit > 0) {
      tracker.record(admit);
      prefillPasses++;
      prefillMask[pass] = 1;
      admitted += admit;
      for (const since of waitingSince.splice(0, admit)) waits.push(pass - since);
      for (let i = 0; i < admit; i++) remaining.push(rng.int(p.minOutputPasses, p.maxOutputPasses));
    } else {
      for (let i = remaining.length - 1; i >= 0; i--) {
        const left = (remaining[i] ?? 1) - 1;
        if (left === 0) {
          remaining.splice(i, 1);
          finished++;
        } else remaining[i] = left;
      }
    }
    runningSum += remaining.length;
    Atomics.wait(tick, 0, 0, p.passMs); // the "forward"
  }
  gather.close();

  waits.sort((a, b) => a - b);
  const outcomes: Record<string, number> = {};
  for (const o of delayer?.metrics?.snapshot().outcomes.samples ?? []) {
    const key = o.labels.output_reason === '' ? '(none)' : o.labels.output_reason;
    outcomes[key] = (outcomes[key] ?? 0) + o.value;
  }
  return {
    rank: p.rank,
    passes: p.passes,
    prefillPasses,
    admitted,
    finished,
    meanRunning: runningSum / p.passes,
    p99QueueWaitPasses: waits[Math.min(waits.length - 1, Math.floor(waits.length * 0.99))] ?? 0,
    outcomes,
    prefillMask,
  };
}

if (parentPort && workerData) {
  parentPort.postMessage(runRank(workerData as RankParams));
}
