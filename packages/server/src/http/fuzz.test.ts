/**
 * Bad input never crashes or hangs: random bodies (valid ones mutated
 * field by field, and arbitrary JSON) against every generation route get
 * either a success or an OpenAI-shaped 4xx/503, and the server keeps
 * answering afterwards.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, parseSse, startHarness } from '../../test/http-helpers.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ modelPath: 'sim:tiny-cpu', dpSize: 2 }, { maxN: 3 });
});
afterAll(async () => {
  await h?.close();
});

const junk = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom(0, -1, 1e9, 0.5, Number.MAX_SAFE_INTEGER, 2048, 4096),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 8 }),
  fc.array(fc.oneof(fc.integer({ min: -2, max: 5000 }), fc.string({ maxLength: 3 })), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 4 }), fc.integer(), { maxKeys: 2 }),
);

const completionField = fc.constantFrom(
  'prompt',
  'max_tokens',
  'temperature',
  'top_p',
  'top_k',
  'n',
  'stop',
  'logprobs',
  'stream',
  'stream_options',
  'seed',
  'ignore_eos',
  'routed_dp_rank',
  'echo',
  'best_of',
  'model',
  'stop_token_ids',
  'min_p',
);
const chatField = fc.constantFrom(
  'messages',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'n',
  'stop',
  'logprobs',
  'top_logprobs',
  'stream',
  'routed_dp_rank',
  'model',
);
const generateField = fc.constantFrom(
  'text',
  'input_ids',
  'sampling_params',
  'stream',
  'return_logprob',
  'top_logprobs_num',
  'rid',
  'routed_dp_rank',
);

const cases = fc.oneof(
  fc.record({
    url: fc.constant('/v1/completions'),
    base: fc.constant<Record<string, unknown>>({ prompt: 'hi', max_tokens: 3 }),
    muts: fc.array(fc.tuple(completionField, junk), { maxLength: 3 }),
  }),
  fc.record({
    url: fc.constant('/v1/chat/completions'),
    base: fc.constant<Record<string, unknown>>({
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 3,
    }),
    muts: fc.array(fc.tuple(chatField, junk), { maxLength: 3 }),
  }),
  fc.record({
    url: fc.constant('/generate'),
    base: fc.constant<Record<string, unknown>>({ text: 'hi', sampling_params: { max_new_tokens: 3 } }),
    muts: fc.array(fc.tuple(generateField, junk), { maxLength: 3 }),
  }),
  fc.record({
    url: fc.constantFrom('/v1/completions', '/v1/chat/completions', '/generate'),
    base: fc.constant<Record<string, unknown>>({}),
    muts: fc.array(fc.tuple(fc.string({ maxLength: 6 }), junk), { maxLength: 3 }),
  }),
);

describe('random bodies', () => {
  it('always get a well-formed answer and never break the server', async () => {
    await fc.assert(
      fc.asyncProperty(cases, async ({ url, base, muts }) => {
        const body: Record<string, unknown> = { ...base };
        for (const [k, v] of muts) body[k] = v;
        const res = await h.server.app.inject({ method: 'POST', url, payload: body });
        expect([200, 400, 404, 503]).toContain(res.statusCode);
        if (res.statusCode !== 200) {
          const err = res.json().error;
          expect(typeof err.message).toBe('string');
          expect(typeof err.type).toBe('string');
          expect(err.code).toMatch(/^TSI_ERR_/);
          expect(err.code).not.toBe('TSI_ERR_INTERNAL');
        } else if ((res.headers['content-type'] ?? '').toString().startsWith('text/event-stream')) {
          expect(parseSse(res.body).at(-1)).toBe('[DONE]');
        } else {
          expect(() => res.json()).not.toThrow();
        }
      }),
      { numRuns: 300, seed: 42 },
    );
    const ok = await h.server.app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { prompt: 'still alive', max_tokens: 2 },
    });
    expect(ok.statusCode).toBe(200);
    expect(h.engine.health().ok).toBe(true);
  }, 120_000);
});
