import { createEngine } from '@tsinfer/server';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from './app.js';

let app: FastifyInstance;
beforeAll(async () => {
  const engine = await createEngine({ modelPath: 'sim:tiny-cpu' });
  ({ app } = await buildApp({ engine, llmApiKey: 'llm-key' }));
  await app.ready();
});
afterAll(async () => {
  await app?.close();
});

describe('tsinfer mounted in an existing fastify app', () => {
  it("keeps the app's own routes, validation and error shape", async () => {
    expect((await app.inject({ method: 'GET', url: '/' })).json().service).toBe('todo-app');
    const created = await app.inject({ method: 'POST', url: '/todos', payload: { title: 'buy milk' } });
    expect(created.statusCode).toBe(201);
    expect((await app.inject({ method: 'GET', url: '/todos' })).json()).toEqual({ todos: ['buy milk'] });
    const bad = await app.inject({ method: 'POST', url: '/todos', payload: {} });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).not.toHaveProperty('error.type'); // fastify's own error body, not OpenAI's
    expect(bad.json().message).toContain('title');
    // The app's routes need no LLM key.
    expect((await app.inject({ method: 'GET', url: '/todos' })).statusCode).toBe(200);
  });

  it('serves the OpenAI API under /llm with its own key and error shape', async () => {
    const denied = await app.inject({ method: 'GET', url: '/llm/v1/models' });
    expect(denied.statusCode).toBe(401);
    expect(denied.json().error.code).toBe('TSI_ERR_UNAUTHORIZED');
    const headers = { authorization: 'Bearer llm-key' };
    const res = await app.inject({
      method: 'POST',
      url: '/llm/v1/chat/completions',
      headers,
      payload: { messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().usage.completion_tokens).toBe(4);
    const invalid = await app.inject({
      method: 'POST',
      url: '/llm/v1/completions',
      headers,
      payload: { prompt: 'x', max_tokens: 0 },
    });
    expect(invalid.statusCode).toBe(400);
    expect(invalid.json().error.param).toBe('max_tokens');
    expect((await app.inject({ method: 'GET', url: '/llm/health' })).statusCode).toBe(200);
    const nf = await app.inject({ method: 'GET', url: '/llm/nope', headers });
    expect(nf.json().error.code).toBe('TSI_ERR_ROUTE_NOT_FOUND');
  });

  it('lets app routes call the engine directly', async () => {
    const res = await app.inject({ method: 'GET', url: '/todos/summary' });
    expect(res.statusCode).toBe(200);
    expect(typeof res.json().summary).toBe('string');
  });
});
