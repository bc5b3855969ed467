/**
 * Backends: the request payload each one sends and the parser of each one's
 * response stream, as in bench_serving's `async_request_*` functions. The
 * parsers are pure: they take lines with the time each arrived, so tests
 * drive them with chosen timestamps.
 */

export type Backend = 'sglang' | 'sglang-native' | 'sglang-oai' | 'sglang-oai-chat' | 'vllm' | 'vllm-chat';
export const BACKENDS: readonly Backend[] = [
  'sglang',
  'sglang-native',
  'sglang-oai',
  'sglang-oai-chat',
  'vllm',
  'vllm-chat',
];

/** The wire protocol a backend speaks. */
export type Protocol = 'generate' | 'completions' | 'chat';

export function protocolOf(backend: Backend): Protocol {
  switch (backend) {
    case 'sglang':
    case 'sglang-native':
      return 'generate';
    case 'sglang-oai':
    case 'vllm':
      return 'completions';
    case 'sglang-oai-chat':
    case 'vllm-chat':
      return 'chat';
  }
}

export const API_PATHS: Readonly<Record<Protocol, string>> = {
  generate: '/generate',
  completions: '/v1/completions',
  chat: '/v1/chat/completions',
};

/** bench_serving's default port per backend (30000 for sglang*, 8000 for vllm*). */
export function defaultPort(backend: Backend): number {
  return backend.startsWith('vllm') ? 8000 : 30000;
}

/** One request as the request function sees it. */
export interface RequestInput {
  prompt: string | number[];
  promptLen: number;
  outputLen: number;
  model: string;
  extraBody: Record<string, unknown>;
}

/** Per-request record (bench_serving's `RequestFuncOutput`). Times in seconds. */
export interface RequestOutput {
  generatedText: string;
  success: boolean;
  /** From the request start to the last line received (`[DONE]` included). */
  latency: number;
  /** From the request start to the first chunk carrying text. */
  ttft: number;
  /** Gaps between text-bearing chunks (split per token for `/generate`). */
  itl: number[];
  /** Text of each chunk after the first (bench_serving's `text_chunks`). */
  textChunks: string[];
  /** Dataset prompt length, replaced by the server's `prompt_tokens` when it reports one. */
  promptLen: number;
  error: string;
  /** Server-reported `completion_tokens` when given, else the requested length. */
  outputLen: number;
  /** Request start on the bench clock (s). */
  startTime: number;
}

export interface PayloadOptions {
  disableStream: boolean;
  disableIgnoreEos: boolean;
  /** Native `/generate` only (the OpenAI paths send temperature 0 unless the extra body overrides it). */
  temperature: number;
  topP: number;
}

/** The JSON body bench_serving sends for `input` on `protocol`. */
export function buildPayload(
  protocol: Protocol,
  input: RequestInput,
  o: PayloadOptions,
): Record<string, unknown> {
  const extra = input.extraBody;
  if (protocol === 'generate') {
    const sampling: Record<string, unknown> = {
      temperature: o.temperature,
      max_new_tokens: input.outputLen,
      ignore_eos: !o.disableIgnoreEos,
    };
    if (o.topP < 1) sampling['top_p'] = o.topP;
    return {
      [typeof input.prompt === 'string' ? 'text' : 'input_ids']: input.prompt,
      sampling_params: sampling,
      stream: !o.disableStream,
      lora_path: null,
      return_logprob: false,
      logprob_start_len: -1,
      ...extra,
    };
  }
  const payload: Record<string, unknown> =
    protocol === 'completions'
      ? {
          model: input.model,
          prompt: input.prompt,
          best_of: 1,
          max_tokens: input.outputLen,
          stream: !o.disableStream,
        }
      : {
          model: input.model,
          messages: [{ role: 'user', content: input.prompt }],
          max_completion_tokens: input.outputLen,
          stream: !o.disableStream,
        };
  if (!('temperature' in extra)) payload['temperature'] = 0.0;
  if (!('ignore_eos' in extra)) payload['ignore_eos'] = !o.disableIgnoreEos;
  return { ...payload, ...extra };
}

export function newOutput(input: RequestInput, startTime: number): RequestOutput {
  return {
    generatedText: '',
    success: false,
    latency: 0,
    ttft: 0,
    itl: [],
    textChunks: [],
    promptLen: input.promptLen,
    error: '',
    outputLen: 0,
    startTime,
  };
}

type Json = Record<string, unknown>;

function asObject(v: unknown, what: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new TypeError(`${what} is not a JSON object`);
  return v as Json;
}

/** `_record_server_prompt_len`: prefer the server's prompt_tokens (usage or meta_info) when truthy. */
function recordServerPromptLen(data: Json, out: RequestOutput): void {
  const reported = (data['usage'] ?? data['meta_info'] ?? {}) as Json | null;
  const p = reported?.['prompt_tokens'];
  if (typeof p === 'number' && p) out.promptLen = p;
}

function chatContent(m: Json | undefined): string {
  if (!m) return '';
  const r = (m['reasoning_content'] || m['reasoning'] || '') as string;
  return r + ((m['content'] as string | null | undefined) || '');
}

/**
 * Consumes one streamed response, a line at a time. `line` is a raw line
 * (without its `\n`); `now` is the bench clock in seconds when it arrived.
 * A malformed line throws, which fails the request like bench_serving's
 * exception path does.
 */
export class StreamParser {
  readonly out: RequestOutput;
  #text = '';
  #ttft = 0;
  #mostRecent: number;
  #latency = 0;
  #outputLen: number;
  #lastOutputLen = 0;

  constructor(
    readonly protocol: Protocol,
    input: RequestInput,
    readonly startTime: number,
  ) {
    this.out = newOutput(input, startTime);
    this.#mostRecent = startTime;
    this.#outputLen = input.outputLen;
  }

  line(raw: string, now: number): void {
    const chunk = raw.trim();
    if (chunk === '') return;
    const body = chunk.startsWith('data: ') ? chunk.slice(6) : chunk;
    this.#latency = now - this.startTime;
    if (body === '[DONE]') return;
    const data = asObject(JSON.parse(body), 'a stream event');
    if (this.protocol === 'generate') this.#generate(data, now);
    else if (this.protocol === 'completions') this.#completions(data, now);
    else this.#chat(data, now);
  }

  #first(now: number): boolean {
    if (this.#ttft === 0) {
      this.#ttft = now - this.startTime;
      this.out.ttft = this.#ttft;
      return true;
    }
    return false;
  }

  #generate(data: Json, now: number): void {
    recordServerPromptLen(data, this.out);
    const text = data['text'];
    if (typeof text !== 'string' || text === '') return;
    this.#text = text; // cumulative
    const meta = asObject(data['meta_info'], 'meta_info');
    const tokens = meta['completion_tokens'];
    if (typeof tokens !== 'number') throw new TypeError('meta_info.completion_tokens is missing');
    this.#outputLen = tokens;
    if (!this.#first(now)) {
      const n = tokens - this.#lastOutputLen;
      if (n === 0) return;
      const gap = (now - this.#mostRecent) / n;
      for (let k = 0; k < n; k++) this.out.itl.push(gap);
    }
    this.#mostRecent = now;
    this.#lastOutputLen = tokens;
  }

  #completions(data: Json, now: number): void {
    recordServerPromptLen(data, this.out);
    const choices = data['choices'];
    // bench_serving indexes choices[0] unconditionally: a usage-only chunk with
    // `choices: []` fails the request there, and here.
    if (!Array.isArray(choices) || choices.length === 0) {
      throw new TypeError(
        'a /v1/completions chunk has no choices[0] (bench_serving fails the request the same way; send usage-only chunks only when stream_options.include_usage is set)',
      );
    }
    const text = asObject(choices[0], 'choices[0]')['text'];
    if (typeof text !== 'string' || text === '') return;
    if (!this.#first(now)) {
      this.out.textChunks.push(text);
      this.out.itl.push(now - this.#mostRecent);
    }
    this.#mostRecent = now;
    this.#text += text;
    const usage = (data['usage'] ?? {}) as Json;
    const ct = usage['completion_tokens'];
    if (typeof ct === 'number') this.#outputLen = ct;
  }

  #chat(data: Json, now: number): void {
    const usage = (data['usage'] ?? {}) as Json;
    const ct = usage['completion_tokens'];
    if (typeof ct === 'number') this.#outputLen = ct;
    recordServerPromptLen(data, this.out);
    const choices = data['choices'];
    if (!Array.isArray(choices) || choices.length === 0) return;
    const delta = (asObject(choices[0], 'choices[0]')['delta'] ?? {}) as Json;
    const content = chatContent(delta);
    if (content === '') return;
    if (!this.#first(now)) {
      this.out.textChunks.push(content);
      this.out.itl.push(now - this.#mostRecent);
    }
    this.#mostRecent = now;
    this.#text += content;
  }

  /** The record after the body ended normally. */
  finish(): RequestOutput {
    this.out.generatedText = this.#text;
    this.out.success = true;
    this.out.latency = this.#latency;
    this.out.outputLen = this.#outputLen;
    return this.out;
  }
}

/** A non-streamed (`--disable-stream`) response body: TTFT = latency. */
export function parseNonStreamed(
  protocol: Protocol,
  input: RequestInput,
  startTime: number,
  body: string,
  now: number,
): RequestOutput {
  const out = newOutput(input, startTime);
  const data = asObject(JSON.parse(body), 'the response');
  let text: string;
  let outputLen = input.outputLen;
  if (protocol === 'generate') {
    text = typeof data['text'] === 'string' ? data['text'] : '';
    const meta = (data['meta_info'] ?? {}) as Json;
    if (typeof meta['completion_tokens'] === 'number') outputLen = meta['completion_tokens'];
  } else {
    const choice = asObject((data['choices'] as unknown[] | undefined)?.[0], 'choices[0]');
    text = protocol === 'completions' ? String(choice['text'] ?? '') : chatContent(choice['message'] as Json);
    const usage = (data['usage'] ?? {}) as Json;
    if (typeof usage['completion_tokens'] === 'number') outputLen = usage['completion_tokens'];
  }
  recordServerPromptLen(data, out);
  out.generatedText = text;
  out.success = true;
  out.latency = now - startTime;
  out.ttft = out.latency;
  out.outputLen = outputLen;
  return out;
}

/**
 * Splits a byte stream into lines at `\n` (aiohttp's `async for line in
 * response.content`). Splitting happens on bytes, so a multi-byte UTF-8
 * character cut between two network chunks decodes intact.
 */
export class LineSplitter {
  #rest: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): string[] {
    const buf = this.#rest.length === 0 ? chunk : Buffer.concat([this.#rest, chunk]);
    const lines: string[] = [];
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
      lines.push(buf.toString('utf8', start, nl));
      start = nl + 1;
    }
    this.#rest = start === 0 ? buf : buf.subarray(start);
    if (start !== 0) this.#rest = Buffer.from(this.#rest);
    return lines;
  }

  /** The unterminated last line, if any. */
  end(): string[] {
    if (this.#rest.length === 0) return [];
    const last = this.#rest.toString('utf8');
    this.#rest = Buffer.alloc(0);
    return [last];
  }
}
