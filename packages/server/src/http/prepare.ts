/**
 * Turning validated wire bodies into engine requests: prompt tokenization,
 * context-length and `n` checks (400s that name the field), sampling
 * defaults, stop lists, and logprob formatting helpers.
 */
import type { SamplingParams, TokenLogprobs } from '@tsinfer/runtime';
import type { GenerateRequest } from '../engine/types.js';
import { badRequest, HttpError } from './errors.js';
import type { HttpState } from './state.js';

export interface SamplingFields {
  temperature?: number | null | undefined;
  top_p?: number | null | undefined;
  top_k?: number | null | undefined;
  min_p?: number | null | undefined;
  frequency_penalty?: number | null | undefined;
  presence_penalty?: number | null | undefined;
  repetition_penalty?: number | null | undefined;
  seed?: number | null | undefined;
}

export function samplingParams(f: SamplingFields, logprobs: number, defaultTemperature = 1): SamplingParams {
  const topK = f.top_k ?? -1;
  return {
    temperature: f.temperature ?? defaultTemperature,
    topK: Math.max(topK, 0),
    topP: f.top_p ?? 1,
    minP: f.min_p ?? 0,
    repetitionPenalty: f.repetition_penalty ?? 1,
    frequencyPenalty: f.frequency_penalty ?? 0,
    presencePenalty: f.presence_penalty ?? 0,
    seed: f.seed ?? null,
    logprobs,
  };
}

export function stopList(stop: string | readonly string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  const list = typeof stop === 'string' ? [stop] : [...stop];
  return list.filter((s) => s.length > 0);
}

/** Checks the request's `model` against the served name (404 otherwise). */
export function checkModel(state: HttpState, model: string | null | undefined): void {
  if (model === undefined || model === null || model === '') return;
  if (model !== state.modelName) {
    throw new HttpError(
      'TSI_ERR_MODEL_NOT_FOUND',
      `The model \`${model}\` does not exist; this server serves \`${state.modelName}\``,
      'model',
    );
  }
}

export function checkN(state: HttpState, n: number, param = 'n'): void {
  if (n > state.maxN) throw badRequest(`${param}: must be <= ${state.maxN} (--max-n); got ${n}`, param);
}

/** Validates token ids against the vocabulary. */
export function checkTokenIds(state: HttpState, ids: readonly number[], param: string): void {
  const vocab = state.engine.info.vocabSize;
  for (const id of ids) {
    if (id >= vocab) throw badRequest(`${param}: token id ${id} is not in [0, ${vocab})`, param);
  }
}

/**
 * Tokens and max tokens checked against the context length: the prompt
 * must leave room for `maxTokens` new tokens (400 naming `maxParam`).
 * `maxTokens` null means "the rest of the context".
 */
export function resolveMaxTokens(
  state: HttpState,
  promptTokens: number,
  maxTokens: number | null,
  promptParam: string,
  maxParam: string,
): number {
  const ctx = state.engine.info.contextLength;
  const maxReqLen = state.engine.info.maxReqLen;
  if (promptTokens === 0) throw badRequest(`${promptParam}: the prompt is empty`, promptParam);
  if (promptTokens >= maxReqLen) {
    throw new HttpError(
      'TSI_ERR_CONTEXT_LENGTH',
      `${promptParam}: the prompt has ${promptTokens} tokens; at most ${maxReqLen - 1} fit, leaving room for one new token (context length ${ctx})`,
      promptParam,
    );
  }
  const max = maxTokens ?? ctx - promptTokens;
  if (promptTokens + max > ctx) {
    throw new HttpError(
      'TSI_ERR_CONTEXT_LENGTH',
      `${maxParam}: this model's maximum context length is ${ctx} tokens. However, you requested ${promptTokens + max} tokens (${promptTokens} in the prompt, ${max} for the completion). Please reduce the prompt or ${maxParam}.`,
      maxParam,
    );
  }
  return max;
}

export interface PreparedPrompt {
  tokenIds: number[];
  /** Prompt text when the client sent text (echo). */
  text: string | null;
}

export function tokenizePrompt(state: HttpState, text: string): PreparedPrompt {
  return { tokenIds: state.engine.tokenize(text), text };
}

/**
 * The rank a request pins: `routed_dp_rank` in the body, else the
 * `X-Routed-DP-Rank` header (what routers in front of SGLang send). A header
 * that is not a non-negative integer is a 400 naming it; the range is checked
 * by the engine (TSI_ERR_INVALID_DP_RANK, with the valid range).
 */
export function routedDpRank(
  fromBody: number | null | undefined,
  headers: Readonly<Record<string, string | string[] | undefined>>,
): number | undefined {
  if (fromBody !== undefined && fromBody !== null) return fromBody;
  const raw = headers['x-routed-dp-rank'];
  if (raw === undefined) return undefined;
  const text = Array.isArray(raw) ? raw[0] : raw;
  if (text === undefined || !/^\d+$/.test(text.trim())) {
    throw badRequest(
      `header X-Routed-DP-Rank must be a non-negative integer, got "${String(raw)}"`,
      'X-Routed-DP-Rank',
    );
  }
  return Number(text.trim());
}

/** Builds the engine request of one choice. */
export function engineRequest(
  prompt: PreparedPrompt,
  sampling: SamplingParams,
  maxNewTokens: number,
  stop: readonly string[],
  stopTokenIds: readonly number[] | null | undefined,
  ignoreEos: boolean | null | undefined,
  routedDpRank: number | null | undefined,
  signal: AbortSignal,
): GenerateRequest {
  return {
    prompt: { tokenIds: prompt.tokenIds },
    sampling,
    maxNewTokens,
    stop,
    stopTokenIds: stopTokenIds ?? [],
    ignoreEos: ignoreEos ?? false,
    routedDpRank: routedDpRank ?? undefined,
    signal,
  };
}

/** Text of one token alone (logprobs' `token` strings). */
export function tokenText(state: HttpState, id: number): string {
  return state.engine.decode([id]);
}

/** Legacy completions logprobs accumulated over a choice. */
export class CompletionLogprobs {
  tokens: string[] = [];
  token_logprobs: number[] = [];
  top_logprobs: Array<Record<string, number>> = [];
  text_offset: number[] = [];
  #offset = 0;

  add(
    state: HttpState,
    ids: readonly number[],
    lps: readonly (TokenLogprobs | null)[] | null,
  ): CompletionLogprobsChunk {
    const chunk: CompletionLogprobsChunk = {
      tokens: [],
      token_logprobs: [],
      top_logprobs: [],
      text_offset: [],
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const t = tokenText(state, id);
      const lp = lps?.[i] ?? null;
      const top: Record<string, number> = {};
      if (lp !== null) {
        for (let j = 0; j < lp.topIds.length; j++) top[tokenText(state, lp.topIds[j]!)] = lp.topLogprobs[j]!;
      }
      chunk.tokens.push(t);
      chunk.token_logprobs.push(lp?.logprob ?? 0);
      chunk.top_logprobs.push(top);
      chunk.text_offset.push(this.#offset);
      this.#offset += t.length;
    }
    this.tokens.push(...chunk.tokens);
    this.token_logprobs.push(...chunk.token_logprobs);
    this.top_logprobs.push(...chunk.top_logprobs);
    this.text_offset.push(...chunk.text_offset);
    return chunk;
  }
}

export interface CompletionLogprobsChunk {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Array<Record<string, number>>;
  text_offset: number[];
}

export interface ChatLogprobEntry {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }>;
}

const encoder = new TextEncoder();

export function chatLogprobs(
  state: HttpState,
  ids: readonly number[],
  lps: readonly (TokenLogprobs | null)[] | null,
  topN: number,
): ChatLogprobEntry[] {
  const out: ChatLogprobEntry[] = [];
  for (let i = 0; i < ids.length; i++) {
    const token = tokenText(state, ids[i]!);
    const lp = lps?.[i] ?? null;
    const top: ChatLogprobEntry['top_logprobs'] = [];
    if (lp !== null) {
      for (let j = 0; j < Math.min(topN, lp.topIds.length); j++) {
        const t = tokenText(state, lp.topIds[j]!);
        top.push({ token: t, logprob: lp.topLogprobs[j]!, bytes: [...encoder.encode(t)] });
      }
    }
    out.push({ token, logprob: lp?.logprob ?? 0, bytes: [...encoder.encode(token)], top_logprobs: top });
  }
  return out;
}

let counter = 0;
/** Response ids: `<prefix>-<time36><counter36>`; unique within the process. */
export function responseId(prefix: string): string {
  counter = (counter + 1) % 0x7fffffff;
  return `${prefix}-${Date.now().toString(36)}${counter.toString(36).padStart(6, '0')}`;
}
