/**
 * End to end with the official `openai` npm client against a listening
 * server on the tiny ONNX model (built into a temp dir, < 1 s).
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness, tinyModelDir } from '../../test/http-helpers.js';

let h: Harness;
let client: OpenAI;
let model: string;

beforeAll(async () => {
  h = await startHarness({ modelPath: await tinyModelDir(), intraOpThreads: 1 }, { apiKey: 'e2e-key' });
  const url = await h.server.listen({ host: '127.0.0.1', port: 0 });
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'e2e-key', maxRetries: 0, timeout: 60_000 });
  model = h.engine.info.modelName;
}, 60_000);
afterAll(async () => {
  await h?.close();
});

describe('openai client against tsinfer serving the tiny model', () => {
  it('lists the model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([model]);
  });

  it('completions: non-streaming and streaming agree (greedy), usage matches the tokens streamed', async () => {
    const params = { model, prompt: 'Once upon a time', max_tokens: 24, temperature: 0 } as const;
    const full = await client.completions.create(params);
    const text = full.choices[0]!.text;
    expect(full.usage!.completion_tokens).toBeGreaterThan(0);
    expect(full.usage!.completion_tokens).toBeLessThanOrEqual(24);
    expect(full.usage!.prompt_tokens).toBe(h.engine.tokenize('Once upon a time').length);

    const stream = await client.completions.create({ ...params, stream: true, logprobs: 0 });
    let streamed = '';
    let tokens = 0;
    let lastTextUsage: number | undefined;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c === undefined) continue;
      streamed += c.text;
      tokens += c.logprobs?.tokens?.length ?? 0;
      if (c.text !== '') lastTextUsage = chunk.usage?.completion_tokens;
      if (c.finish_reason) finish = c.finish_reason;
    }
    expect(streamed).toBe(text);
    expect(tokens).toBe(full.usage!.completion_tokens);
    expect(lastTextUsage).toBe(full.usage!.completion_tokens);
    expect(finish).toBe(full.choices[0]!.finish_reason);
  });

  it('chat: non-streaming and streaming with include_usage', async () => {
    const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
    const full = await client.chat.completions.create({
      model,
      messages,
      max_completion_tokens: 16,
      temperature: 0,
    });
    const content = full.choices[0]!.message.content ?? '';
    expect(full.choices[0]!.message.role).toBe('assistant');

    const stream = await client.chat.completions.create({
      model,
      messages,
      max_completion_tokens: 16,
      temperature: 0,
      stream: true,
      logprobs: true,
      stream_options: { include_usage: true },
    });
    let streamed = '';
    let tokens = 0;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c !== undefined) {
        streamed += c.delta.content ?? '';
        tokens += c.logprobs?.content?.length ?? 0;
      } else {
        usage = chunk.usage;
      }
    }
    expect(streamed).toBe(content);
    expect(usage).toEqual(full.usage);
    expect(tokens).toBe(usage!.completion_tokens);
  });

  it('stop strings end the text before the match', async () => {
    const base = await client.completions.create({ model, prompt: 'The', max_tokens: 32, temperature: 0 });
    const text = base.choices[0]!.text;
    // A stop string that occurs in the greedy text: its 3-character slice after the first 4 characters.
    expect(text.length).toBeGreaterThan(8);
    const stop = text.slice(4, 7);
    const cut = text.slice(0, text.indexOf(stop));
    const stopped = await client.completions.create({
      model,
      prompt: 'The',
      max_tokens: 32,
      temperature: 0,
      stop: [stop],
    });
    expect(stopped.choices[0]!.text).toBe(cut);
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    let streamed = '';
    for await (const chunk of await client.completions.create({
      model,
      prompt: 'The',
      max_tokens: 32,
      temperature: 0,
      stop,
      stream: true,
    })) {
      streamed += chunk.choices[0]?.text ?? '';
    }
    expect(streamed).toBe(cut);
  });

  it('surfaces errors as openai APIErrors with status and code', async () => {
    const err = await client.completions.create({ model, prompt: 'x', max_tokens: 10 ** 6 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('TSI_ERR_CONTEXT_LENGTH');
    const nf = await client.chat.completions
      .create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(nf).toBeInstanceOf(OpenAI.NotFoundError);
    const unauth = await new OpenAI({ baseURL: client.baseURL, apiKey: 'wrong', maxRetries: 0 }).models
      .list()
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(unauth).toBeInstanceOf(OpenAI.AuthenticationError);
  });
});
