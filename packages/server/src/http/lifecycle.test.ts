import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILTIN_PROFILE_DIR } from '@tsinfer/runtime';
import { afterEach, describe, expect, it } from 'vitest';
import { type Harness, parseSse, startHarness } from '../../test/http-helpers.js';

let h: Harness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
});

/** The tiny-cpu profile with every decode pass costing `decodeMs`: requests that stay in flight. */
function slowProfile(decodeMs: number): string {
  const p = JSON.parse(readFileSync(join(BUILTIN_PROFILE_DIR, 'tiny-cpu.json'), 'utf8'));
  p.cost.decodeFixedMs = decodeMs;
  p.cost.prefillFixedMs = decodeMs;
  const file = join(mkdtempSync(join(tmpdir(), 'tsinfer-slow-')), 'slow.json');
  writeFileSync(file, JSON.stringify(p));
  return `sim:${file}`;
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('--api-key', () => {
  it('answers 401 in the OpenAI shape without or with a wrong key; /health and /metrics stay open', async () => {
    h = await startHarness({}, { apiKey: 'sekrit' });
    const app = h.server.app;
    const none = await app.inject({ method: 'GET', url: '/v1/models' });
    expect(none.statusCode).toBe(401);
    expect(none.json().error).toMatchObject({ code: 'TSI_ERR_UNAUTHORIZED', type: 'authentication_error' });
    const wrong = await app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt: 'x' },
      headers: { authorization: 'Bearer nope' },
    });
    expect(wrong.statusCode).toBe(401);
    const ok = await app.inject({
      method: 'GET',
      url: '/v1/models',
      headers: { authorization: 'Bearer sekrit' },
    });
    expect(ok.statusCode).toBe(200);
    const x = await app.inject({ method: 'GET', url: '/v1/loads', headers: { 'x-api-key': 'sekrit' } });
    expect(x.statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
  });
});

describe('--max-queued-requests', () => {
  it('refuses a request beyond the queue bound with 503 and Retry-After', async () => {
    h = await startHarness({ maxQueuedRequests: 0 }, { retryAfterSeconds: 3 });
    for (const [url, payload] of [
      ['/v1/completions', { prompt: 'x', max_tokens: 2 }],
      ['/v1/completions', { prompt: 'x', max_tokens: 2, stream: true }],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], stream: true }],
      ['/generate', { text: 'x', stream: true }],
    ] as const) {
      const res = await h.server.app.inject({ method: 'POST', url, payload });
      expect(res.statusCode, url).toBe(503);
      expect(res.headers['retry-after']).toBe('3');
      expect(res.json().error).toMatchObject({
        code: 'TSI_ERR_QUEUE_FULL',
        type: 'service_unavailable_error',
      });
    }
  });

  it('counts a request as queued until its first token, and admits again once it has one', async () => {
    // Every pass costs 300 ms: the first request waits 300 ms for its first token.
    h = await startHarness({ modelPath: slowProfile(300), maxQueuedRequests: 1 });
    const app = h.server.app;
    const engine = h.engine;
    const first = app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt: 'a', max_tokens: 2 },
    });
    await until(() => engine.requestCounts().queued === 1);
    const refused = await app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt: 'b', max_tokens: 1 },
    });
    expect(refused.statusCode).toBe(503);
    expect(refused.json().error.code).toBe('TSI_ERR_QUEUE_FULL');
    expect((await first).statusCode).toBe(200);
    const again = await app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt: 'c', max_tokens: 1 },
    });
    expect(again.statusCode).toBe(200);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toContain('tsinfer_num_rejected_requests_total{code="TSI_ERR_QUEUE_FULL"} 1');
  });
});

describe('client disconnect', () => {
  it('aborts the request and frees its KV within a pass', async () => {
    h = await startHarness({ modelPath: slowProfile(20) });
    const url = await h.server.listen({ host: '127.0.0.1', port: 0 });
    const engine = h.engine;
    const firstChunk = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
      });
      req.on('response', (res) => {
        res.once('data', (d: Buffer) => {
          resolve(d.toString());
          req.destroy(); // the client goes away mid-stream
        });
      });
      req.on('error', () => {});
      req.end(JSON.stringify({ prompt: 'long one', max_tokens: 1000, stream: true, ignore_eos: true }));
      setTimeout(() => reject(new Error('no first chunk')), 10_000);
    });
    expect(firstChunk).toContain('data: ');
    const t0 = Date.now();
    await until(() => engine.requestCounts().inFlight === 0);
    // A pass costs 20 ms here; the abort lands within a pass or two (generous bound for a loaded machine).
    expect(Date.now() - t0).toBeLessThan(500);
    await until(async () => (await engine.rankStats()).every((r) => r.runnerKvUsedTokens === 0));
    const metrics = (await h.server.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/tsinfer_num_aborted_requests_total\{endpoint="completions"\} 1/);
  });
});

describe('a rank that dies', () => {
  it('ends its streams with a TSI_ERR_RANK_FAILED error event, turns /health 503, and keeps serving on the other rank', async () => {
    h = await startHarness({
      modelPath: slowProfile(5),
      dpSize: 2,
      faultInjection: { rank: 0, afterPasses: 6 },
    });
    const app = h.server.app;
    const res = await app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt: 'doomed', max_tokens: 500, stream: true, ignore_eos: true, routed_dp_rank: 0 },
    });
    const events = parseSse(res.body);
    expect(events.at(-1)).toBe('[DONE]');
    const err = (events.at(-2) as { error: { code: string; type: string } }).error;
    expect(err).toMatchObject({ code: 'TSI_ERR_RANK_FAILED', type: 'service_unavailable_error' });
    const health = await app.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(503);
    expect(health.json().ranks[0]).toMatchObject({ dp_rank: 0, alive: false });
    const pinned = await app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt: 'x', max_tokens: 1, routed_dp_rank: 0 },
    });
    expect(pinned.statusCode).toBe(503);
    expect(pinned.json().error.code).toBe('TSI_ERR_RANK_FAILED');
    const ok = await app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt: 'x', max_tokens: 2 },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().usage.completion_tokens).toBe(2);
  });
});

describe('graceful shutdown', () => {
  it('refuses new requests, lets in-flight ones finish, and closes', async () => {
    h = await startHarness({ modelPath: slowProfile(10) });
    const app = h.server.app;
    const inflight = app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt: 'finish me', max_tokens: 20, stream: true, ignore_eos: true },
    });
    const engine = h.engine;
    await until(() => engine.requestCounts().inFlight === 1);
    // shutdown()'s first step; fastify.inject refuses to run once app.close() has begun,
    // so the refusal is checked here (and over a socket by the SIGTERM test of cli/serve).
    h.server.http.beginDrain();
    const refused = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'late' } });
    expect(refused.statusCode).toBe(503);
    expect(refused.json().error.code).toBe('TSI_ERR_SHUTTING_DOWN');
    expect(refused.headers['retry-after']).toBe('1');
    const health = await app.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(503);
    const closing = h.server.shutdown({ timeoutMs: 10_000 });
    const res = await inflight;
    const events = parseSse(res.body);
    expect(events.at(-1)).toBe('[DONE]');
    const last = events.at(-2) as {
      choices: Array<{ finish_reason: string }>;
      usage: { completion_tokens: number };
    };
    expect(last.choices[0]!.finish_reason).toBe('length');
    expect(last.usage.completion_tokens).toBe(20);
    await closing;
    h = null;
  });

  it('aborts what is still running at --shutdown-timeout with a clear error event', async () => {
    h = await startHarness({ modelPath: slowProfile(20) });
    const app = h.server.app;
    const stream = app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt: 'too long', max_tokens: 1000, stream: true, ignore_eos: true },
    });
    const plain = app.inject({
      method: 'POST',
      url: '/generate',
      payload: { text: 'too long', sampling_params: { max_new_tokens: 1000, ignore_eos: true } },
    });
    await until(() => h!.engine.requestCounts().inFlight === 2);
    await h.server.shutdown({ timeoutMs: 200 });
    const events = parseSse((await stream).body);
    expect(events.at(-1)).toBe('[DONE]');
    expect((events.at(-2) as { error: { code: string } }).error.code).toBe('TSI_ERR_SHUTTING_DOWN');
    const p = await plain;
    expect(p.statusCode).toBe(503);
    expect(p.json().error.code).toBe('TSI_ERR_SHUTTING_DOWN');
    h = null;
  });
});
