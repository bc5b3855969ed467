/**
 * DP-rank minimum tokens against a fake worker that serves SGLang-named
 * metrics (`sglang:num_used_tokens{dp_rank=...,tp_rank=...}`, two TP ranks
 * per DP rank) and holds every request until released, so the whole burst
 * is in flight at once.
 */
import { createRng } from '@tsinfer/core';
import { afterEach, describe, expect, it } from 'vitest';
import { wordCountEstimate } from '../src/estimate.js';
import { FakeWorker } from './fake-worker.js';
import { postJson, startTestGateway, type TestGateway } from './helpers.js';

let w: FakeWorker | null = null;
let g: TestGateway | null = null;
afterEach(async () => {
  await g?.app.close();
  await w?.close();
});

function prompt(words: number): string {
  return Array.from({ length: words }, (_, i) => `w${i}`).join(' ');
}

describe('DP-rank minimum tokens against SGLang-named metrics', () => {
  it('levels polled + in-flight tokens across ranks within one request estimate, and takes every estimate off at completion', async () => {
    w = await FakeWorker.start({ dpSize: 2, metricsFlavor: 'sglang' });
    w.baseUsed = [200, 0]; // rank 0 already holds 200 tokens
    g = await startTestGateway({
      workerUrls: [w.url],
      dpMinimumTokensScheduler: true,
      policy: 'round_robin',
    });
    await g.app.gateway.loadMonitor.pollOnce();
    const gw = g.app.gateway.router.get(w.url)!;
    expect([...gw.polled(g.clock.nowMs(), 1e9)!.ranks!]).toEqual([
      [0, 200],
      [1, 0],
    ]);

    w.hold = true;
    const rng = createRng(11);
    const words = Array.from({ length: 40 }, () => rng.int(1, 60));
    const estimates = words.map((n) => wordCountEstimate(prompt(n)));
    const pending = words.map((n) =>
      postJson(`${g!.url}/v1/completions`, { prompt: prompt(n), max_tokens: 4 }),
    );
    await w.waitHeld(words.length);

    const total = (r: number) => 200 * (r === 0 ? 1 : 0) + gw.rankInflight(r);
    const maxEstimate = Math.max(...estimates);
    expect(Math.abs(total(0) - total(1))).toBeLessThanOrEqual(maxEstimate);
    expect(gw.rankInflight(0) + gw.rankInflight(1)).toBe(estimates.reduce((a, b) => a + b, 0));
    // The fake honoured the injected ranks: what it holds per rank matches the gateway's bookkeeping.
    const reqs = w.generationRequests();
    for (const r of [0, 1]) {
      const sent = reqs.filter((q) => q.body['routed_dp_rank'] === r);
      const est = sent.reduce((s, q) => s + wordCountEstimate(String(q.body['prompt'])), 0);
      expect(est).toBe(gw.rankInflight(r));
    }
    expect(reqs.every((q) => q.body['routed_dp_rank'] === 0 || q.body['routed_dp_rank'] === 1)).toBe(true);
    // The gateway's /metrics shows the same in-flight tokens per rank.
    const m = await (await fetch(`${g.url}/metrics`)).text();
    for (const r of [0, 1]) {
      expect(m).toContain(
        `tsinfer_gateway_inflight_tokens{worker="${w.url}",dp_rank="${r}"} ${gw.rankInflight(r)}`,
      );
    }

    // A poll while the burst is held overwrites the polled part only (F-17: SGLang would drop the increments).
    await g.app.gateway.loadMonitor.pollOnce();
    const polled = gw.polled(g.clock.nowMs(), 1e9)!.ranks!;
    expect(polled.get(0)).toBe(
      200 +
        reqs
          .filter((q) => q.body['routed_dp_rank'] === 0)
          .reduce((s, q) => s + String(q.body['prompt']).split(' ').length, 0),
    );
    expect(gw.rankInflight(0) + gw.rankInflight(1)).toBe(estimates.reduce((a, b) => a + b, 0));

    w.release();
    const results = await Promise.all(pending);
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(gw.rankInflightEntries()).toEqual([]);
    expect(gw.inflightTokens).toBe(0);
  });

  it('a worker whose /metrics fails keeps its old load until it ages out, then nothing is injected', async () => {
    w = await FakeWorker.start({ dpSize: 2, metricsFlavor: 'sglang' });
    w.baseUsed = [0, 50];
    g = await startTestGateway({
      workerUrls: [w.url],
      dpMinimumTokensScheduler: true,
      load: { source: 'metrics', staleAfterMs: 2000 },
    });
    await g.app.gateway.loadMonitor.pollOnce();
    w.metricsStatus = 500;
    g.clock.advance(1000);
    await g.app.gateway.loadMonitor.pollOnce();
    await postJson(`${g.url}/v1/completions`, { prompt: 'a' });
    expect(w.generationRequests()[0]!.body['routed_dp_rank']).toBe(0);
    g.clock.advance(1001);
    await postJson(`${g.url}/v1/completions`, { prompt: 'a' });
    expect(w.generationRequests()[1]!.body).not.toHaveProperty('routed_dp_rank');
  });
});
