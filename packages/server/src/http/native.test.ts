import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, parseSse, startHarness } from '../../test/http-helpers.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ modelPath: 'sim:tiny-cpu', dpSize: 2 });
});
afterAll(async () => {
  await h?.close();
});

const inject = (method: 'GET' | 'POST', url: string, payload?: object) =>
  h.server.app.inject({ method, url, ...(payload !== undefined ? { payload } : {}) });

interface GenEvent {
  text: string;
  meta_info: {
    completion_tokens: number;
    prompt_tokens: number;
    finish_reason: null | { type: string; length?: number; matched?: unknown };
  };
}

describe('POST /generate', () => {
  it('pins the rank from routed_dp_rank or the X-Routed-DP-Rank header, the body winning', async () => {
    const gen = (headers: Record<string, string>, extra: object = {}) =>
      h.server.app.inject({
        method: 'POST',
        url: '/generate',
        headers,
        payload: { text: 'pin me', sampling_params: { max_new_tokens: 1 }, ...extra },
      });
    for (const rank of [0, 1, 1, 0]) {
      const res = await gen({ 'x-routed-dp-rank': String(rank) });
      expect(res.statusCode).toBe(200);
      expect(res.json().meta_info.dp_rank).toBe(rank);
    }
    expect((await gen({ 'x-routed-dp-rank': '0' }, { routed_dp_rank: 1 })).json().meta_info.dp_rank).toBe(1);
    const bad = await gen({ 'x-routed-dp-rank': 'one' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatchObject({ code: 'TSI_ERR_BAD_REQUEST', param: 'X-Routed-DP-Rank' });
    const out = await gen({ 'x-routed-dp-rank': '7' });
    expect(out.statusCode).toBe(400);
    expect(out.json().error.code).toBe('TSI_ERR_INVALID_DP_RANK');
  });

  it('generates from text with sampling_params (non-streaming)', async () => {
    const res = await inject('POST', '/generate', {
      text: 'The capital of France is',
      sampling_params: { max_new_tokens: 6, temperature: 0 },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(typeof body.text).toBe('string');
    expect(body.output_ids).toHaveLength(6);
    expect(body.meta_info).toMatchObject({
      prompt_tokens: 24,
      completion_tokens: 6,
      finish_reason: { type: 'length', length: 6 },
    });
  });

  it('streams cumulative text and cumulative completion_tokens, then [DONE]', async () => {
    const res = await inject('POST', '/generate', {
      input_ids: [10, 20, 30, 40],
      sampling_params: { max_new_tokens: 10, temperature: 0, ignore_eos: true },
      stream: true,
    });
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    const events = parseSse(res.body);
    expect(events.at(-1)).toBe('[DONE]');
    const evs = events.slice(0, -1) as GenEvent[];
    for (let i = 1; i < evs.length; i++) {
      expect(evs[i]!.text.startsWith(evs[i - 1]!.text)).toBe(true);
      expect(evs[i]!.meta_info.completion_tokens).toBeGreaterThanOrEqual(
        evs[i - 1]!.meta_info.completion_tokens,
      );
    }
    const last = evs.at(-1)!;
    expect(last.meta_info.completion_tokens).toBe(10);
    expect(last.meta_info.prompt_tokens).toBe(4);
    expect(last.meta_info.finish_reason).toEqual({ type: 'length', length: 10 });
    const nonStream = await inject('POST', '/generate', {
      input_ids: [10, 20, 30, 40],
      sampling_params: { max_new_tokens: 10, temperature: 0, ignore_eos: true },
    });
    expect(nonStream.json().text).toBe(last.text);
  });

  it('returns logprobs as SGLang does', async () => {
    const res = await inject('POST', '/generate', {
      text: 'hi',
      sampling_params: { max_new_tokens: 3 },
      return_logprob: true,
      top_logprobs_num: 2,
    });
    const m = res.json().meta_info;
    expect(m.output_token_logprobs).toHaveLength(3);
    expect(m.output_top_logprobs).toHaveLength(3);
    expect(m.output_top_logprobs[0].length).toBe(2);
  });

  it('needs exactly one of text and input_ids', async () => {
    const none = await inject('POST', '/generate', { sampling_params: {} });
    expect(none.statusCode).toBe(400);
    expect(none.json().error.param).toBe('text');
    const both = await inject('POST', '/generate', { text: 'a', input_ids: [1] });
    expect(both.statusCode).toBe(400);
  });
});

describe('side endpoints', () => {
  it('GET /v1/models lists the served model', async () => {
    const body = (await inject('GET', '/v1/models')).json();
    expect(body.object).toBe('list');
    expect(body.data[0]).toMatchObject({ id: h.engine.info.modelName, object: 'model', owned_by: 'tsinfer' });
    expect((await inject('GET', `/v1/models/${h.engine.info.modelName}`)).statusCode).toBe(200);
    expect((await inject('GET', '/v1/models/other')).statusCode).toBe(404);
  });

  it('GET /health, /server_info, /model_info, POST /flush_cache', async () => {
    const health = await inject('GET', '/health');
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({
      status: 'ok',
      ranks: [
        { dp_rank: 0, alive: true },
        { dp_rank: 1, alive: true },
      ],
    });
    const info = (await inject('GET', '/server_info')).json();
    expect(info).toMatchObject({ dp_size: 2, served_model_name: h.engine.info.modelName, draining: false });
    expect(info.version).toBe(h.engine.version);
    expect((await inject('GET', '/model_info')).json().context_length).toBe(h.engine.info.contextLength);
    const flush = await inject('POST', '/flush_cache');
    expect(flush.statusCode).toBe(200);
  });

  it('GET /v1/loads: JSON per rank, one rank, prometheus text, and a 400 for a bad include', async () => {
    const all = (await inject('GET', '/v1/loads')).json();
    expect(all.loads.map((l: { dp_rank: number }) => l.dp_rank)).toEqual([0, 1]);
    expect(all.loads[0]).toHaveProperty('num_used_tokens');
    expect(typeof all.timestamp).toBe('string');
    const one = (await inject('GET', '/v1/loads?dp_rank=1&include=core')).json();
    expect(one.loads).toHaveLength(1);
    expect(one.loads[0].dp_rank).toBe(1);
    expect(one.loads[0]).not.toHaveProperty('queues');
    expect((await inject('GET', '/v1/loads?dp_rank=9')).json().loads).toEqual([]);
    const prom = await inject('GET', '/v1/loads?format=prometheus');
    expect(prom.headers['content-type']).toContain('text/plain');
    expect(prom.body).toContain('tsinfer_num_used_tokens{dp_rank="0"}');
    expect(prom.body).toContain('tsinfer_num_used_tokens{dp_rank="1"}');
    const bad = await inject('GET', '/v1/loads?include=core,bogus');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('TSI_ERR_INVALID_QUERY');
    const badRank = await inject('GET', '/v1/loads?dp_rank=x');
    expect(badRank.statusCode).toBe(400);
  });

  it('GET /get_load (legacy) answers one entry per rank', async () => {
    const body = (await inject('GET', '/get_load')).json();
    expect(body.map((e: { dp_rank: number }) => e.dp_rank)).toEqual([0, 1]);
    expect(body[0]).toHaveProperty('num_pending_tokens');
  });

  it('GET /metrics: request counters, SGLang-bucket histograms, per-rank gauges', async () => {
    await inject('POST', '/v1/completions', { prompt: 'count me', max_tokens: 4 });
    const res = await inject('GET', '/metrics');
    expect(res.statusCode).toBe(200);
    const text = res.body;
    expect(text).toMatch(/tsinfer_num_requests_total\{endpoint="completions",finish_reason="length"\} \d+/);
    expect(text).toMatch(
      /tsinfer_http_requests_total\{method="POST",route="\/v1\/completions",status_code="200"\} \d+/,
    );
    expect(text).toContain('tsinfer_time_to_first_token_seconds_bucket{le="0.1"}');
    expect(text).toContain('tsinfer_time_to_first_token_seconds_bucket{le="400"}');
    expect(text).toContain('tsinfer_inter_token_latency_seconds_bucket{le="0.002"}');
    expect(text).toContain('tsinfer_e2e_request_latency_seconds_bucket{le="2400"}');
    for (const g of [
      'tsinfer_num_used_tokens',
      'tsinfer_num_running_reqs',
      'tsinfer_num_queue_reqs',
      'tsinfer_token_usage',
    ]) {
      expect(text).toContain(`${g}{dp_rank="0"}`);
      expect(text).toContain(`${g}{dp_rank="1"}`);
    }
    const gen = Number(/tsinfer_generation_tokens_total (\d+)/.exec(text)?.[1]);
    expect(gen).toBeGreaterThanOrEqual(4);
  });
});
