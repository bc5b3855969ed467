/**
 * Property test (fast-check): for random workloads and random budgets
 * (KV capacity, chunk size, prefill token budget, running cap, per-batch cap,
 * DP ranks with or without lockstep, the delayer on or off), every request
 * finishes, with exactly the tokens it produces without any pressure, the KV
 * cache never overflows (the SimRunner would throw), and every rank ends with
 * nothing held.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { profile, prompt, Recorder } from '../test/helpers.js';
import type { SchedulerConfig } from './config.js';
import { VirtualCluster } from './virtual.js';

interface Job {
  at: number;
  rank: number;
  len: number;
  maxNew: number;
  seed: number;
}

async function serve(jobs: Job[], ranks: number, kv: number, config: Partial<SchedulerConfig>) {
  const rec = new Recorder({ keepPasses: false });
  const c = new VirtualCluster({
    profile: profile({ kv, context: 4096, eosProbability: 0.005 }),
    config: { ...config, dpSize: ranks },
    sink: (r) => rec.sink(r),
  });
  jobs.forEach((j, i) => {
    c.submit(j.at, j.rank % ranks, {
      rid: `j${i}`,
      promptTokens: prompt(j.len, j.seed),
      maxNewTokens: j.maxNew,
    });
  });
  await c.run({ maxEvents: 300_000 });
  return { rec, c };
}

let retractions = 0;

describe('scheduler properties', () => {
  it('random workloads under random budgets: all finish with their unpressured tokens, nothing leaks', async () => {
    const job = fc.record({
      at: fc.integer({ min: 0, max: 100 }),
      rank: fc.integer({ min: 0, max: 3 }),
      len: fc.integer({ min: 1, max: 200 }),
      maxNew: fc.integer({ min: 1, max: 300 }),
      seed: fc.integer({ min: 0, max: 1_000_000 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(job, { minLength: 1, maxLength: 60 }),
        fc.record({
          ranks: fc.integer({ min: 1, max: 3 }),
          dpa: fc.boolean(),
          kv: fc.integer({ min: 300, max: 2000 }),
          chunk: fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 512 })),
          maxPrefillTokens: fc.integer({ min: 1, max: 2000 }),
          mrr: fc.oneof(fc.constant(null), fc.integer({ min: 3, max: 40 })),
          pmr: fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 8 })),
          delayer: fc.boolean(),
          queueRatio: fc.oneof(fc.constant(null), fc.double({ min: 0, max: 1, noNaN: true })),
          initRatio: fc.oneof(
            fc.double({ min: 0.01, max: 0.2, noNaN: true }),
            fc.double({ min: 0.2, max: 1, noNaN: true }),
          ),
        }),
        async (rawJobs, k) => {
          // the scheduler clips max_new_tokens to min(context, KV) − 1 − prompt; clip the same for the reference
          const jobs = rawJobs.map((j) => ({
            ...j,
            maxNew: Math.min(j.maxNew, Math.min(4096, k.kv) - 1 - j.len),
          }));
          const ref = await serve(jobs, 1, 1_000_000, { chunkedPrefillSize: null });
          const { rec, c } = await serve(jobs, k.ranks, k.kv, {
            enableDpAttention: k.dpa,
            chunkedPrefillSize: k.chunk,
            maxPrefillTokens: k.maxPrefillTokens,
            maxRunningRequests: k.mrr === null ? null : k.mrr * (k.dpa ? k.ranks : 1),
            prefillMaxRequests: k.pmr,
            initNewTokenRatio: k.initRatio,
            minNewTokenRatio: Math.min(k.initRatio, 0.01),
            delayer: {
              enabled: k.delayer,
              queueMinRatio: k.queueRatio,
              maxDelayMs: 50,
              maxDelayPasses: 4,
              // Without DP attention SGLang's slot condition uses ceil(max-running-requests / dp-size) as each
              // rank's capacity; with several ranks it can hold a rank's prefill forever (delayer.md §10.1).
              // The opt-in pass cap bounds it.
              capSlotDelay: !k.dpa && k.ranks > 1,
            } as never,
          });
          expect(rec.finished.size).toBe(jobs.length);
          retractions += c.schedulers.reduce((a, s) => a + s.stats.totalRetractedReqs, 0);
          for (let i = 0; i < jobs.length; i++) {
            const got = rec.finished.get(`j${i}`)!;
            const want = ref.rec.finished.get(`j${i}`)!;
            expect(got.reason).toBe(want.reason);
            expect(got.tokens).toEqual(want.tokens);
            expect(rec.streamed.get(`j${i}`)).toEqual(want.tokens);
          }
          for (const r of c.runners) {
            expect(r.kvUsedTokens).toBe(0);
            expect(r.heldRequests).toBe(0);
          }
          for (const s of c.schedulers) expect(s.usedTokens).toBe(0);
        },
      ),
      { numRuns: 150, seed: 20261123 },
    );
  }, 120_000);

  it('under heavy KV pressure (low ratio estimate, no running cap) retraction happens and the same holds', async () => {
    retractions = 0;
    const job = fc.record({
      at: fc.integer({ min: 0, max: 50 }),
      rank: fc.constant(0),
      len: fc.integer({ min: 1, max: 120 }),
      maxNew: fc.integer({ min: 50, max: 250 }),
      seed: fc.integer({ min: 0, max: 1_000_000 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(job, { minLength: 5, maxLength: 40 }),
        fc.integer({ min: 300, max: 1200 }),
        fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 256 })),
        async (rawJobs, kv, chunk) => {
          const jobs = rawJobs.map((j) => ({
            ...j,
            maxNew: Math.min(j.maxNew, Math.min(4096, kv) - 1 - j.len),
          }));
          const ref = await serve(jobs, 1, 1_000_000, { chunkedPrefillSize: null });
          const { rec, c } = await serve(jobs, 1, kv, {
            chunkedPrefillSize: chunk,
            initNewTokenRatio: 0.05,
            minNewTokenRatio: 0.01,
          });
          retractions += c.schedulers[0]!.stats.totalRetractedReqs;
          for (let i = 0; i < jobs.length; i++) {
            expect(rec.finished.get(`j${i}`)!.tokens).toEqual(ref.rec.finished.get(`j${i}`)!.tokens);
            expect(rec.streamed.get(`j${i}`)).toEqual(ref.rec.finished.get(`j${i}`)!.tokens);
          }
          expect(c.runners[0]!.kvUsedTokens).toBe(0);
        },
      ),
      { numRuns: 60, seed: 7 },
    );
    expect(retractions).toBeGreaterThan(20);
  }, 120_000);
});
