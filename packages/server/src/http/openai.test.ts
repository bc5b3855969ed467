import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, parseSse, startHarness } from '../../test/http-helpers.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ modelPath: 'sim:tiny-cpu', dpSize: 2 }, { maxN: 4 });
});
afterAll(async () => {
  await h?.close();
});

function post(url: string, payload: unknown, headers: Record<string, string> = {}) {
  return h.server.app.inject({ method: 'POST', url, payload: payload as object, headers });
}

interface Chunk {
  choices: Array<{
    index: number;
    text?: string;
    delta?: { content?: string; role?: string };
    finish_reason: string | null;
  }>;
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

describe('POST /v1/completions', () => {
  it('completes a text prompt with usage counts (non-streaming)', async () => {
    const res = await post('/v1/completions', {
      model: h.engine.info.modelName,
      prompt: 'Hello there',
      max_tokens: 8,
      temperature: 0,
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.object).toBe('text_completion');
    expect(body.model).toBe(h.engine.info.modelName);
    expect(body.choices).toHaveLength(1);
    expect(body.choices[0].finish_reason).toBe('length');
    expect(typeof body.choices[0].text).toBe('string');
    expect(body.usage).toEqual({ prompt_tokens: 11, completion_tokens: 8, total_tokens: 19 });
  });

  it('accepts token-id prompts and batches of prompts, n choices each', async () => {
    const one = await post('/v1/completions', { prompt: [72, 105, 33], max_tokens: 3 });
    expect(one.statusCode).toBe(200);
    expect(one.json().usage.prompt_tokens).toBe(3);
    const batch = await post('/v1/completions', { prompt: ['ab', 'cde'], max_tokens: 2, n: 2 });
    expect(batch.statusCode).toBe(200);
    const b = batch.json();
    expect(b.choices.map((c: { index: number }) => c.index).sort()).toEqual([0, 1, 2, 3]);
    expect(b.usage).toEqual({ prompt_tokens: 5, completion_tokens: 8, total_tokens: 13 });
    const ids = await post('/v1/completions', {
      prompt: [
        [1, 2],
        [3, 4, 5],
      ],
      max_tokens: 1,
    });
    expect(ids.json().usage.prompt_tokens).toBe(5);
  });

  it('streams SSE decided by the body, ends with [DONE], usage on every text chunk, no usage-only chunk', async () => {
    const res = await post(
      '/v1/completions',
      { prompt: 'stream me', max_tokens: 12, stream: true, ignore_eos: true, best_of: 1 },
      { accept: 'application/json' },
    );
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    const events = parseSse(res.body);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1) as Chunk[];
    for (const c of chunks) expect(c.choices).toHaveLength(1); // bench_serving indexes choices[0]
    const textChunks = chunks.filter((c) => (c.choices[0]!.text ?? '') !== '');
    expect(textChunks.length).toBeGreaterThan(0);
    const last = textChunks.at(-1)!;
    expect(last.usage?.completion_tokens).toBe(12);
    const counts = textChunks.map((c) => c.usage!.completion_tokens);
    expect([...counts].sort((a, b) => a - b)).toEqual(counts); // cumulative
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('length');
    expect(chunks.at(-1)!.usage).toEqual({ prompt_tokens: 9, completion_tokens: 12, total_tokens: 21 });
  });

  it('sends a choices: [] usage chunk only with stream_options.include_usage', async () => {
    const res = await post('/v1/completions', {
      prompt: 'x',
      max_tokens: 4,
      stream: true,
      stream_options: { include_usage: true },
    });
    const events = parseSse(res.body);
    const usageChunk = events.at(-2) as Chunk;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toEqual({ prompt_tokens: 1, completion_tokens: 4, total_tokens: 5 });
  });

  it('cuts at a stop string (not included) with finish_reason stop and matched_stop', async () => {
    const base = await post('/v1/completions', { prompt: 'seeded', max_tokens: 40, temperature: 0 });
    const text: string = base.json().choices[0].text;
    const words = text.match(/ t\d+/g) ?? [];
    expect(words.length).toBeGreaterThan(1);
    const stop = words[1]!;
    const res = await post('/v1/completions', {
      prompt: 'seeded',
      max_tokens: 40,
      temperature: 0,
      stop: [stop, 'never-matches'],
    });
    const c = res.json().choices[0];
    expect(c.text).toBe(text.slice(0, text.indexOf(stop)));
    expect(c.finish_reason).toBe('stop');
    expect(c.matched_stop).toBe(stop);
    const streamed = await post('/v1/completions', {
      prompt: 'seeded',
      max_tokens: 40,
      temperature: 0,
      stop,
      stream: true,
    });
    const chunks = parseSse(streamed.body).slice(0, -1) as Chunk[];
    expect(chunks.map((k) => k.choices[0]!.text).join('')).toBe(text.slice(0, text.indexOf(stop)));
  });

  it('is reproducible with a seed and returns logprobs', async () => {
    const req = {
      prompt: 'abc',
      max_tokens: 5,
      temperature: 0.8,
      top_p: 0.9,
      top_k: 20,
      seed: 7,
      logprobs: 2,
    };
    const a = (await post('/v1/completions', req)).json();
    const b = (await post('/v1/completions', req)).json();
    expect(a.choices[0].text).toBe(b.choices[0].text);
    const lp = a.choices[0].logprobs;
    expect(lp.tokens).toHaveLength(5);
    expect(lp.token_logprobs).toHaveLength(5);
    expect(lp.text_offset).toHaveLength(5);
    for (const v of lp.token_logprobs) expect(v).toBeLessThanOrEqual(0);
    for (const top of lp.top_logprobs) expect(Object.keys(top).length).toBeGreaterThanOrEqual(1);
  });

  it('pins a rank with routed_dp_rank and rejects an out-of-range rank with 400', async () => {
    const ok = await post('/v1/completions', { prompt: 'p', max_tokens: 1, routed_dp_rank: 1 });
    expect(ok.statusCode).toBe(200);
    const bad = await post('/v1/completions', { prompt: 'p', max_tokens: 1, routed_dp_rank: 5 });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatchObject({
      code: 'TSI_ERR_INVALID_DP_RANK',
      param: 'routed_dp_rank',
      type: 'invalid_request_error',
    });
  });
});

describe('POST /v1/chat/completions', () => {
  it('renders messages with the chat template and answers as the assistant', async () => {
    const res = await post('/v1/chat/completions', {
      model: h.engine.info.modelName,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
      ],
      max_completion_tokens: 6,
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.object).toBe('chat.completion');
    expect(body.choices[0].message.role).toBe('assistant');
    const expectedPrompt = h.engine.encodeChat([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ]).length;
    expect(body.usage).toEqual({
      prompt_tokens: expectedPrompt,
      completion_tokens: 6,
      total_tokens: expectedPrompt + 6,
    });
  });

  it('streams deltas with the role first, then [DONE]', async () => {
    const res = await post('/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 5,
      stream: true,
      logprobs: true,
      top_logprobs: 2,
      stream_options: { include_usage: true },
    });
    const events = parseSse(res.body);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1) as Chunk[];
    expect(chunks[0]!.choices[0]!.delta?.role).toBe('assistant');
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage?.completion_tokens).toBe(5);
    const lpChunks = chunks.filter((c) => (c.choices[0] as { logprobs?: unknown } | undefined)?.logprobs);
    expect(lpChunks.length).toBeGreaterThan(0);
  });
});

describe('bad input', () => {
  it('names the field of a schema violation in a 400', async () => {
    const cases: Array<[string, object, string]> = [
      ['/v1/completions', { prompt: 'x', max_tokens: 0 }, 'max_tokens'],
      ['/v1/completions', { prompt: 'x', temperature: 'hot' }, 'temperature'],
      ['/v1/completions', { prompt: 'x', top_p: 0 }, 'top_p'],
      ['/v1/completions', { max_tokens: 3 }, 'prompt'],
      ['/v1/completions', { prompt: 'x', logprobs: 99 }, 'logprobs'],
      ['/v1/chat/completions', { messages: [] }, 'messages'],
      ['/v1/chat/completions', { messages: [{ content: 'no role' }] }, 'messages.0.role'],
      [
        '/v1/chat/completions',
        { messages: [{ role: 'user', content: 'x' }], max_completion_tokens: -1 },
        'max_completion_tokens',
      ],
      ['/generate', { text: 'x', sampling_params: { max_new_tokens: 0 } }, 'sampling_params.max_new_tokens'],
    ];
    for (const [url, payload, param] of cases) {
      const res = await post(url, payload);
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      const err = res.json().error;
      expect(err.param, JSON.stringify(payload)).toBe(param);
      expect(err.code).toBe('TSI_ERR_BAD_REQUEST');
      expect(err.type).toBe('invalid_request_error');
      expect(err.message).toContain(param);
    }
  });

  it('rejects prompt + max_tokens over the context length, n above --max-n, unknown models, unsupported parts', async () => {
    const ctx = h.engine.info.contextLength;
    const over = await post('/v1/completions', { prompt: 'abcd', max_tokens: ctx });
    expect(over.statusCode).toBe(400);
    expect(over.json().error).toMatchObject({ param: 'max_tokens', code: 'TSI_ERR_CONTEXT_LENGTH' });
    expect(over.json().error.message).toContain(`maximum context length is ${ctx}`);
    const long = await post('/v1/completions', { prompt: 'a'.repeat(ctx + 5), max_tokens: 1 });
    expect(long.statusCode).toBe(400);
    expect(long.json().error).toMatchObject({ param: 'prompt', code: 'TSI_ERR_CONTEXT_LENGTH' });
    const n = await post('/v1/completions', { prompt: 'x', n: 5 });
    expect(n.statusCode).toBe(400);
    expect(n.json().error.param).toBe('n');
    const model = await post('/v1/chat/completions', {
      model: 'gpt-4',
      messages: [{ role: 'user', content: 'x' }],
    });
    expect(model.statusCode).toBe(404);
    expect(model.json().error).toMatchObject({
      code: 'TSI_ERR_MODEL_NOT_FOUND',
      param: 'model',
      type: 'not_found_error',
    });
    const part = await post('/v1/chat/completions', {
      messages: [{ role: 'user', content: [{ type: 'image_url' }] }],
    });
    expect(part.statusCode).toBe(400);
    expect(part.json().error.param).toBe('messages.0.content');
    const token = await post('/v1/completions', { prompt: [h.engine.info.vocabSize], max_tokens: 1 });
    expect(token.statusCode).toBe(400);
    expect(token.json().error.param).toBe('prompt');
  });

  it('answers malformed JSON, unknown routes and wrong methods in the OpenAI error shape', async () => {
    const bad = await h.server.app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: '{"prompt": ',
      headers: { 'content-type': 'application/json' },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.type).toBe('invalid_request_error');
    const missing = await h.server.app.inject({ method: 'GET', url: '/v1/nope' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.code).toBe('TSI_ERR_ROUTE_NOT_FOUND');
  });
});
