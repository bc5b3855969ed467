/**
 * End to end through `tsinfer serve`'s own start path with --dp-size 2
 * --enable-dp-attention --enable-prefill-delayer: 100 concurrent streaming
 * requests over real sockets, every fifth aborted by its client midway; all
 * end correctly, every KV slot is freed, and /metrics and /v1/loads show
 * both ranks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type StartedServe, startServe } from '../cli/serve.js';

let s: StartedServe;
beforeAll(async () => {
  s = await startServe(
    {
      'model-path': 'sim:tiny-cpu',
      port: '0',
      'dp-size': '2',
      'enable-dp-attention': 'true',
      'enable-prefill-delayer': 'true',
      'log-level': 'silent',
      'shutdown-timeout': '5',
    },
    () => {},
  );
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

interface Outcome {
  aborted: boolean;
  done: boolean;
  text: string;
  usage: number | null;
  finish: string | null;
}

async function streamOne(i: number, abort: boolean): Promise<Outcome> {
  const controller = new AbortController();
  const maxTokens = abort ? 400 : 8 + (i % 17);
  const res = await fetch(`${s.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      prompt: `request ${i} `.repeat(1 + (i % 7)),
      max_tokens: maxTokens,
      stream: true,
      ignore_eos: true,
    }),
    signal: controller.signal,
  });
  expect(res.status).toBe(200);
  const out: Outcome = { aborted: false, done: false, text: '', usage: null, finish: null };
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(part, { stream: true });
      let k = buf.indexOf('\n\n');
      while (k >= 0) {
        const line = buf.slice(0, k).trim();
        buf = buf.slice(k + 2);
        k = buf.indexOf('\n\n');
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') {
          out.done = true;
          continue;
        }
        const chunk = JSON.parse(data) as {
          choices: Array<{ text: string; finish_reason: string | null }>;
          usage?: { completion_tokens: number };
        };
        out.text += chunk.choices[0]!.text;
        if (chunk.usage) out.usage = chunk.usage.completion_tokens;
        if (chunk.choices[0]!.finish_reason) out.finish = chunk.choices[0]!.finish_reason;
        if (abort && out.text.length > 0 && !out.aborted) {
          out.aborted = true;
          controller.abort();
        }
      }
    }
  } catch (err) {
    if (!out.aborted) throw err;
  }
  if (!abort) {
    expect(out.done).toBe(true);
    expect(out.finish).toBe('length');
    expect(out.usage).toBe(maxTokens);
  }
  return out;
}

describe('tsinfer serve --dp-size 2 --enable-dp-attention --enable-prefill-delayer', () => {
  it('serves 100 concurrent streams (20 aborted midway) to the end, frees every KV slot, reports both ranks', async () => {
    const engine = s.server.http.state.engine;
    expect(engine.info.dpSize).toBe(2);
    expect(engine.info.prefillDelayer).toBe(true);
    const outcomes = await Promise.all(Array.from({ length: 100 }, (_, i) => streamOne(i, i % 5 === 0)));
    expect(outcomes.filter((o) => !o.aborted && o.done)).toHaveLength(80);

    const t0 = Date.now();
    while (engine.requestCounts().inFlight > 0 && Date.now() - t0 < 10_000)
      await new Promise((r) => setTimeout(r, 20));
    expect(engine.requestCounts().inFlight).toBe(0);
    let stats = await engine.rankStats();
    while (stats.some((r) => r.runnerKvUsedTokens !== 0) && Date.now() - t0 < 10_000) {
      await new Promise((r) => setTimeout(r, 20));
      stats = await engine.rankStats();
    }
    expect(stats.map((r) => r.runnerKvUsedTokens)).toEqual([0, 0]);

    const loads = (await (await fetch(`${s.url}/v1/loads`)).json()) as { loads: Array<{ dp_rank: number }> };
    expect(loads.loads.map((l) => l.dp_rank)).toEqual([0, 1]);

    let metrics = '';
    while (Date.now() - t0 < 15_000) {
      metrics = await (await fetch(`${s.url}/metrics`)).text();
      if (/tsinfer_prefill_delayer_outcomes_total\{dp_rank="1"/.test(metrics)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const r of ['0', '1']) {
      expect(metrics).toContain(`tsinfer_num_used_tokens{dp_rank="${r}"}`);
      expect(metrics).toContain(`tsinfer_num_running_reqs{dp_rank="${r}"}`);
      expect(metrics).toMatch(new RegExp(`tsinfer_prefill_delayer_outcomes_total\\{dp_rank="${r}"`));
      expect(metrics).toContain(
        `tsinfer_prefill_delayer_wait_forward_passes_bucket{dp_rank="${r}",le="+Inf"}`,
      );
    }
    const finished = Number(
      /tsinfer_num_requests_total\{endpoint="completions",finish_reason="length"\} (\d+)/.exec(metrics)?.[1],
    );
    expect(finished).toBeGreaterThanOrEqual(80);
    // The 400-token requests were really cut by their clients, not run to the end.
    const aborted = Number(
      /tsinfer_num_aborted_requests_total\{endpoint="completions"\} (\d+)/.exec(metrics)?.[1],
    );
    expect(aborted).toBeGreaterThanOrEqual(10);
    expect(finished + aborted).toBe(100);
  }, 120_000);
});
