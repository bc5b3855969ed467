/**
 * The same Scheduler code on real worker threads: two DP ranks with
 * `--enable-dp-attention` and the delayer, meeting in the shared-memory
 * all-gathers (synchronous, blocking). The lockstep holds across threads, and
 * the outputs equal the virtual-time driver's.
 */
import type { Worker } from 'node:worker_threads';
import { startWorker } from '@tsinfer/core';
import { createSharedAllGatherInit, DELAYER_ROW_WIDTH } from '@tsinfer/delayer';
import { describe, expect, it } from 'vitest';
import type { LockstepRankJob, LockstepRankReport } from '../test/fixtures/lockstep-rank.worker.js';
import type { ServingMessage, ServingRankJob, ServingReport } from '../test/fixtures/serving-rank.worker.js';
import { profile, prompt, Recorder } from '../test/helpers.js';
import type { SchedulerConfig } from './config.js';
import { LOCKSTEP_ROW_WIDTH } from './scheduler.js';
import { VirtualCluster } from './virtual.js';
import { createSharedWakeInit, SharedWake } from './wake.js';

function requestsFor(rank: number): LockstepRankJob['requests'] {
  if (rank === 0) {
    return Array.from({ length: 6 }, (_, i) => ({
      rid: `d${i}`,
      prompt: Array.from(prompt(16, i)),
      maxNewTokens: 60,
    }));
  }
  return Array.from({ length: 3 }, (_, i) => ({
    rid: `p${i}`,
    prompt: Array.from(prompt(300, 40 + i)),
    maxNewTokens: 8,
  }));
}

describe('worker threads + SharedMemoryAllGather', () => {
  it('two lockstep ranks on threads agree every pass and produce the virtual-time outputs', async () => {
    const p = profile();
    const config: Partial<SchedulerConfig> = {
      enableDpAttention: true,
      dpSize: 2,
      chunkedPrefillSize: 64,
      delayer: { enabled: true, maxDelayPasses: 3 } as never,
    };
    const lockInit = createSharedAllGatherInit(2, LOCKSTEP_ROW_WIDTH, { timeoutMs: 20_000 });
    const delayInit = createSharedAllGatherInit(2, DELAYER_ROW_WIDTH, { timeoutMs: 20_000 });
    const workers: Worker[] = [];
    const reports = await Promise.all(
      [0, 1].map(
        (rank) =>
          new Promise<LockstepRankReport>((resolve, reject) => {
            const job: LockstepRankJob = {
              rank,
              lockInit,
              delayInit,
              profile: p,
              config,
              requests: requestsFor(rank),
            };
            const w = startWorker(import.meta.url, '../test/fixtures/lockstep-rank.worker', {
              workerData: job,
            });
            workers.push(w);
            w.once('message', (m: LockstepRankReport) => resolve(m));
            w.once('error', reject);
          }),
      ),
    );
    await Promise.all(workers.map((w) => w.terminate()));
    const [a, b] = reports as [LockstepRankReport, LockstepRankReport];
    expect(a.error).toBeNull();
    expect(b.error).toBeNull();
    expect(a.modes.length).toBe(b.modes.length);
    let forced = 0;
    for (let i = 0; i < a.modes.length; i++) {
      const pair = [a.modes[i], b.modes[i]];
      if (pair.includes('prefill')) expect(pair).not.toContain('decode');
      expect(a.reasons[i]).toBe(b.reasons[i]);
      if (a.forcedIdle[i]) forced++;
    }
    expect(forced).toBeGreaterThan(0);

    // the virtual-time driver, same config and requests
    const rec = new Recorder();
    const c = new VirtualCluster({ profile: p, config, sink: (r) => rec.sink(r) });
    for (const rank of [0, 1]) {
      for (const r of requestsFor(rank)) {
        c.submit(0, rank, { rid: r.rid, promptTokens: r.prompt, maxNewTokens: r.maxNewTokens });
      }
    }
    await c.run();
    for (const rep of reports) {
      for (const [rid, tokens] of Object.entries(rep.outputs))
        expect(tokens, rid).toEqual(rec.finished.get(rid)!.tokens);
    }
    // pass for pass, the threads made the virtual-time driver's decisions
    for (const rep of reports) {
      const virt = rec.passes.filter((st) => st.rank === rep.rank);
      expect(rep.modes).toEqual(virt.map((st) => st.mode));
      expect(rep.reasons).toEqual(virt.map((st) => st.delayer!.reason));
    }
    expect(Object.keys(a.outputs)).toHaveLength(6);
    expect(Object.keys(b.outputs)).toHaveLength(3);
  }, 60_000);
});

describe('serving on worker threads: runRankLoop + SharedWake', () => {
  it('lockstep ranks go idle together between bursts, wake together on a request to any rank, and stop cleanly', async () => {
    const p = profile();
    const config: Partial<SchedulerConfig> = { enableDpAttention: true, dpSize: 2, chunkedPrefillSize: 64 };
    const lockInit = createSharedAllGatherInit(2, LOCKSTEP_ROW_WIDTH, { timeoutMs: 20_000 });
    const wakeInit = createSharedWakeInit();
    const finished = new Map<string, { tokens: number[]; rank: number }>();
    const done: Array<Extract<ServingReport, { type: 'done' }>> = [];
    const groupWake = new SharedWake(wakeInit);
    let stopping = 0;
    const workers = [0, 1].map((rank) => {
      const job: ServingRankJob = { rank, lockInit, wakeInit, profile: p, config };
      return startWorker(import.meta.url, '../test/fixtures/serving-rank.worker', { workerData: job });
    });
    const allDone = Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            w.on('message', (m: ServingReport) => {
              if (m.type === 'finish') finished.set(m.rid, { tokens: m.tokens, rank: m.rank });
              else if (m.type === 'stopping') {
                if (++stopping === 2) groupWake.notify(); // both flags set: wake the group once
              } else {
                done.push(m);
                resolve();
              }
            });
            w.once('error', reject);
          }),
      ),
    );
    const reqs: Array<{ rid: string; rank: number; prompt: number[]; maxNewTokens: number }> = [];
    const waitFor = async (n: number): Promise<void> => {
      const t0 = Date.now();
      while (finished.size < n) {
        if (Date.now() - t0 > 20_000) throw new Error(`only ${finished.size} of ${n} finished`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    // three bursts; the group is idle between them, and each burst goes to one rank only
    for (let burst = 0; burst < 3; burst++) {
      await new Promise((r) => setTimeout(r, 30));
      for (let i = 0; i < 4; i++) {
        const r = {
          rid: `b${burst}-${i}`,
          rank: burst % 2,
          prompt: Array.from(prompt(50 + i * 40, burst * 10 + i)),
          maxNewTokens: 12,
        };
        reqs.push(r);
        workers[r.rank]!.postMessage({
          type: 'req',
          rid: r.rid,
          prompt: r.prompt,
          maxNewTokens: r.maxNewTokens,
        } satisfies ServingMessage);
      }
      await waitFor(reqs.length);
    }
    for (const w of workers) w.postMessage({ type: 'stop' } satisfies ServingMessage);
    await allDone;
    await Promise.all(workers.map((w) => w.terminate()));
    expect(done.map((d) => d.error)).toEqual([null, null]);
    const [d0, d1] = done.sort((a, b) => a.rank - b.rank) as [(typeof done)[0], (typeof done)[0]];
    expect(d0.passes).toBe(d1.passes); // lockstep: the same number of passes
    expect(d0.idleWaits).toBeGreaterThanOrEqual(3); // went group-idle after each burst
    expect(d0.idleWaits).toBe(d1.idleWaits);
    // outputs equal a virtual-time run's (tokens do not depend on batching)
    const rec = new Recorder();
    const c = new VirtualCluster({ profile: p, config, sink: (r) => rec.sink(r) });
    for (const r of reqs)
      c.submit(0, r.rank, { rid: r.rid, promptTokens: r.prompt, maxNewTokens: r.maxNewTokens });
    await c.run();
    for (const r of reqs) {
      expect(finished.get(r.rid)!.rank).toBe(r.rank);
      expect(finished.get(r.rid)!.tokens, r.rid).toEqual(rec.finished.get(r.rid)!.tokens);
    }
  }, 60_000);
});
