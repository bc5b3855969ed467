/**
 * The real `tiny` model on CPU (OnnxRunner): 200 concurrent requests with
 * random lengths, under a KV capacity small enough to force retraction, all
 * complete with the same greedy tokens as when each runs alone.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRng, ManualClock } from '@tsinfer/core';
import { buildModel, OnnxRunner } from '@tsinfer/runtime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SchedulerConfig } from './config.js';
import type { RequestInput } from './request.js';
import { Scheduler } from './scheduler.js';

let root = '';
let modelDir = '';
let vocab = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tsinfer-sched-tiny-'));
  modelDir = join(root, 'model');
  const built = await buildModel({
    preset: 'tiny',
    outDir: modelDir,
    seed: 7,
    dtype: 'fp32',
    layout: 'genai',
  });
  vocab = built.vocabSize;
}, 180_000);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

interface Outcome {
  tokens: number[];
  reason: string | null;
  retractions: number;
}

async function serve(
  inputs: RequestInput[],
  maxTotalTokens: number,
  config: Partial<SchedulerConfig>,
): Promise<{ out: Map<string, Outcome>; retracted: number; passes: number; maxUsed: number }> {
  const runner = await OnnxRunner.create({ modelDir, maxTotalTokens, intraOpThreads: 2, maxRequests: 256 });
  const out = new Map<string, Outcome>();
  try {
    const s = new Scheduler({
      runner,
      clock: new ManualClock(0),
      config,
      sink: {
        onFinish: (req) =>
          out.set(req.rid, {
            tokens: Array.from(req.outputTokens),
            reason: req.finishReason,
            retractions: req.retractions,
          }),
      },
    });
    for (const x of inputs) s.addRequest(x);
    let maxUsed = 0;
    while (s.hasWork) {
      const st = await s.step();
      maxUsed = Math.max(maxUsed, st.numUsedTokens);
    }
    return { out, retracted: s.stats.totalRetractedReqs, passes: s.stats.pass, maxUsed };
  } finally {
    await runner.close();
  }
}

describe('Scheduler + OnnxRunner, tiny model, CPU', () => {
  it('200 concurrent requests with random lengths, under KV pressure with retraction, match their solo greedy tokens', async () => {
    const rng = createRng(2024);
    const inputs: RequestInput[] = [];
    for (let i = 0; i < 200; i++) {
      const n = rng.int(3, 40);
      const prompt = new Int32Array(n);
      for (let j = 0; j < n; j++) prompt[j] = rng.int(3, vocab - 1);
      inputs.push({ rid: `r${i}`, promptTokens: prompt, maxNewTokens: rng.int(4, 128) });
    }
    // Reference: every request alone (one scheduler, one request at a time, plenty of KV).
    const solo = new Map<string, Outcome>();
    for (let i = 0; i < inputs.length; i += 50) {
      // batches of 50 sequential solos per runner to bound runner setup cost
      const runner = await OnnxRunner.create({ modelDir, maxTotalTokens: 4096, intraOpThreads: 2 });
      try {
        for (const x of inputs.slice(i, i + 50)) {
          const s = new Scheduler({
            runner,
            clock: new ManualClock(0),
            sink: {
              onFinish: (req) =>
                solo.set(req.rid, {
                  tokens: Array.from(req.outputTokens),
                  reason: req.finishReason,
                  retractions: 0,
                }),
            },
          });
          s.addRequest(x);
          while (s.hasWork) await s.step();
        }
      } finally {
        await runner.close();
      }
    }
    // All 200 at once into a KV of 1200 tokens (they need ~17,000 in all), default new-token ratio:
    // queueing, chunked prefill and retraction (the reservation underestimates requests that run to max_new_tokens).
    const res = await serve(inputs, 1200, { chunkedPrefillSize: 64, maxPrefillTokens: 256 });
    expect(res.retracted).toBeGreaterThan(0);
    expect(res.maxUsed).toBeLessThanOrEqual(1200);
    expect(res.out.size).toBe(200);
    let retractedReqs = 0;
    for (const x of inputs) {
      const got = res.out.get(x.rid)!;
      const want = solo.get(x.rid)!;
      expect(got.reason, x.rid).toBe(want.reason);
      expect(got.tokens, x.rid).toEqual(want.tokens);
      if (got.retractions > 0) retractedReqs++;
    }
    expect(retractedReqs).toBeGreaterThan(0);
  }, 600_000);
});
