import { describe, expect, it } from 'vitest';
import {
  buildPayload,
  LineSplitter,
  type Protocol,
  parseNonStreamed,
  type RequestInput,
  type RequestOutput,
  StreamParser,
} from '../src/backends.js';

const input: RequestInput = { prompt: 'hi', promptLen: 7, outputLen: 5, model: 'm', extraBody: {} };

/**
 * Feeds `body` to a LineSplitter cut into pieces at `cuts` (byte offsets);
 * line k (counting every line, blank ones included) arrives at t = 10 + k·0.1 s.
 */
function parse(protocol: Protocol, body: string, cuts: number[]): RequestOutput {
  const bytes = Buffer.from(body, 'utf8');
  const parser = new StreamParser(protocol, input, 10);
  const splitter = new LineSplitter();
  let k = 0;
  let prev = 0;
  for (const c of [...cuts, bytes.length]) {
    for (const line of splitter.push(bytes.subarray(prev, c))) parser.line(line, 10 + ++k * 0.1);
    prev = c;
  }
  for (const line of splitter.end()) parser.line(line, 10 + ++k * 0.1);
  return parser.finish();
}

/** Every way of cutting the body in two, plus cuts at every byte. */
function cutPlans(body: string): number[][] {
  const n = Buffer.byteLength(body);
  const plans: number[][] = [[], Array.from({ length: n - 1 }, (_, i) => i + 1)];
  for (let i = 1; i < n; i++) plans.push([i]);
  return plans;
}

const sse = (events: unknown[], eol = '\n'): string =>
  events.map((e) => `data: ${typeof e === 'string' ? e : JSON.stringify(e)}${eol}${eol}`).join('');

describe('SSE line splitting', () => {
  it('splits on \\n at any chunk boundary, keeps multi-byte UTF-8 intact, and returns the unterminated tail', () => {
    const body = 'data: {"t":"é✓𝄞"}\r\n\r\ndata: [DONE]\r\nlast';
    for (const cuts of cutPlans(body)) {
      const s = new LineSplitter();
      const lines: string[] = [];
      let prev = 0;
      const bytes = Buffer.from(body);
      for (const c of [...cuts, bytes.length]) {
        lines.push(...s.push(bytes.subarray(prev, c)));
        prev = c;
      }
      lines.push(...s.end());
      expect(lines).toEqual(['data: {"t":"é✓𝄞"}\r', '\r', 'data: [DONE]\r', 'last']);
    }
  });
});

describe('native /generate stream (cumulative text, completion_tokens)', () => {
  const body = sse([
    { text: 'A', meta_info: { completion_tokens: 1, prompt_tokens: 9 } },
    { text: 'A bc', meta_info: { completion_tokens: 3 } },
    { text: 'A bc', meta_info: { completion_tokens: 3 } },
    { text: 'A bcé', meta_info: { completion_tokens: 4 } },
    '[DONE]',
  ]);
  it('splits a multi-token gap evenly, ignores events adding no token, times latency to [DONE]', () => {
    for (const cuts of cutPlans(body)) {
      const o = parse('generate', body, cuts);
      // Lines: events at k = 1, 3, 5, 7 and [DONE] at 9 (blank lines count as arrivals but are skipped).
      expect(o.success).toBe(true);
      expect(o.ttft).toBeCloseTo(0.1, 9);
      // 2 tokens over 0.2 s → two gaps of 0.1; the 0-token event at k=5 is ignored, so the
      // next gap runs from k=3 to k=7 (0.4 s) for 1 token.
      expect(o.itl.map((x) => Number(x.toFixed(9)))).toEqual([0.1, 0.1, 0.4]);
      expect(o.generatedText).toBe('A bcé');
      expect(o.outputLen).toBe(4);
      expect(o.latency).toBeCloseTo(0.9, 9);
      expect(o.promptLen).toBe(9);
    }
  });
});

describe('/v1/completions stream', () => {
  const body = sse(
    [
      { choices: [{ index: 0, text: '' }] },
      { choices: [{ index: 0, text: 'Hel' }] },
      { choices: [{ index: 0, text: 'lo' }] },
      { choices: [{ index: 0, text: ' wörld' }] },
      {
        choices: [{ index: 0, text: '!', finish_reason: 'length' }],
        usage: { prompt_tokens: 3, completion_tokens: 4 },
      },
      '[DONE]',
    ],
    '\r\n',
  );
  it('times text-bearing chunks only and reads usage from the last text chunk', () => {
    for (const cuts of cutPlans(body)) {
      const o = parse('completions', body, cuts);
      expect(o.success).toBe(true);
      expect(o.ttft).toBeCloseTo(0.3, 9);
      expect(o.itl.map((x) => Number(x.toFixed(9)))).toEqual([0.2, 0.2, 0.2]);
      expect(o.textChunks).toEqual(['lo', ' wörld', '!']);
      expect(o.generatedText).toBe('Hello wörld!');
      expect(o.outputLen).toBe(4);
      expect(o.promptLen).toBe(3);
      expect(o.latency).toBeCloseTo(1.1, 9);
    }
  });

  it('without usage assumes the requested max_tokens (exact only with ignore_eos)', () => {
    const o = parse('completions', sse([{ choices: [{ text: 'x' }] }, '[DONE]']), []);
    expect(o.outputLen).toBe(5);
  });

  it('a usage-only chunk with choices: [] fails the request, as in bench_serving', () => {
    const bad = sse([
      { choices: [{ text: 'x' }] },
      { choices: [], usage: { completion_tokens: 1 } },
      '[DONE]',
    ]);
    expect(() => parse('completions', bad, [])).toThrow(/choices\[0\]/);
  });
});

describe('/v1/chat/completions stream', () => {
  const body = sse([
    { choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] },
    { choices: [{ index: 0, delta: { reasoning_content: 'think ' } }] },
    { choices: [{ index: 0, delta: { content: 'ok' } }] },
    { choices: [{ index: 0, delta: { content: '', reasoning: 'r' } }] },
    { choices: [{ index: 0, delta: {}, finish_reason: 'length' }] },
    { choices: [], usage: { prompt_tokens: 11, completion_tokens: 3 } },
    '[DONE]',
  ]);
  it('counts reasoning + content, tolerates choices: [], takes usage from any chunk', () => {
    for (const cuts of cutPlans(body)) {
      const o = parse('chat', body, cuts);
      expect(o.success).toBe(true);
      expect(o.ttft).toBeCloseTo(0.3, 9);
      expect(o.itl.map((x) => Number(x.toFixed(9)))).toEqual([0.2, 0.2]);
      expect(o.generatedText).toBe('think okr');
      expect(o.outputLen).toBe(3);
      expect(o.promptLen).toBe(11);
      expect(o.latency).toBeCloseTo(1.3, 9);
    }
  });
});

describe('payloads', () => {
  const po = { disableStream: false, disableIgnoreEos: false, temperature: 0, topP: 1 };
  it('native /generate: text or input_ids, sampling_params with ignore_eos; top_p only when < 1', () => {
    expect(buildPayload('generate', input, po)).toEqual({
      text: 'hi',
      sampling_params: { temperature: 0, max_new_tokens: 5, ignore_eos: true },
      stream: true,
      lora_path: null,
      return_logprob: false,
      logprob_start_len: -1,
    });
    const ids = buildPayload(
      'generate',
      { ...input, prompt: [1, 2] },
      { ...po, topP: 0.9, disableIgnoreEos: true },
    );
    expect(ids['input_ids']).toEqual([1, 2]);
    expect(ids['sampling_params']).toEqual({
      temperature: 0,
      max_new_tokens: 5,
      ignore_eos: false,
      top_p: 0.9,
    });
  });

  it('/v1/completions and chat: best_of, max_tokens / max_completion_tokens, temperature 0, ignore_eos; extra body wins', () => {
    expect(buildPayload('completions', input, po)).toEqual({
      model: 'm',
      prompt: 'hi',
      best_of: 1,
      max_tokens: 5,
      stream: true,
      temperature: 0,
      ignore_eos: true,
    });
    const chat = buildPayload(
      'chat',
      { ...input, extraBody: { temperature: 0.7, stream_options: { include_usage: true } } },
      po,
    );
    expect(chat).toEqual({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      max_completion_tokens: 5,
      stream: true,
      ignore_eos: true,
      temperature: 0.7,
      stream_options: { include_usage: true },
    });
  });
});

describe('non-streamed responses', () => {
  it('TTFT equals latency and usage gives the output length', () => {
    const o = parseNonStreamed(
      'chat',
      input,
      1,
      JSON.stringify({
        choices: [{ message: { content: 'abc' } }],
        usage: { prompt_tokens: 4, completion_tokens: 2 },
      }),
      1.5,
    );
    expect(o).toMatchObject({
      success: true,
      ttft: 0.5,
      latency: 0.5,
      generatedText: 'abc',
      outputLen: 2,
      promptLen: 4,
    });
    const g = parseNonStreamed(
      'generate',
      input,
      0,
      JSON.stringify({ text: 'xy', meta_info: { completion_tokens: 2 } }),
      2,
    );
    expect(g).toMatchObject({ ttft: 2, latency: 2, generatedText: 'xy', outputLen: 2 });
  });
});
