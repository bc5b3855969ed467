/**
 * Runs the choices of one OpenAI request (n per prompt, prompts of a batch)
 * concurrently and writes them out: one SSE stream (every event flushed at
 * once, usage cumulative on every text-bearing chunk, a `choices: []` usage
 * chunk only with `stream_options.include_usage`, `data: [DONE]`, close) or
 * one JSON body. A choice that fails to start before anything was sent
 * fails the whole request with its HTTP status; later failures are an
 * `{"error": ...}` event in the stream.
 */
import type { FastifyReply } from 'fastify';
import type { GenerateEvent, GenerateRequest } from '../engine/types.js';
import { errorOfFinish, statusOfCode, toErrorResponse } from './errors.js';
import type { Endpoint } from './metrics.js';
import { SseStream } from './sse.js';
import type { Finish, HttpState, Tokens } from './state.js';

export interface Job {
  readonly request: GenerateRequest;
  /** Choice index in the response. */
  readonly index: number;
  /** Which prompt of the batch (prompt tokens count once per prompt). */
  readonly promptIndex: number;
  readonly promptTokens: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Per-endpoint wire formatting. */
export interface ChoiceFormat<State> {
  /** Per-choice formatter state (e.g. whether the role was sent). */
  init(job: Job): State;
  /** A streamed chunk for a tokens event (null: send nothing). */
  tokensChunk(st: State, job: Job, ev: Tokens, usage: Usage): unknown | null;
  /** The streamed chunk that ends a choice. */
  finishChunk(st: State, job: Job, ev: Finish, usage: Usage): unknown;
  /** The usage-only chunk (`stream_options.include_usage`). */
  usageChunk(usage: Usage): unknown;
  /** Accumulates a tokens event for the non-streamed body. */
  collect(st: State, job: Job, ev: Tokens): void;
  /** The non-streamed body. */
  body(states: readonly State[], jobs: readonly Job[], finishes: readonly Finish[], usage: Usage): unknown;
}

export interface ServeOptions {
  stream: boolean;
  includeUsage: boolean;
  controller: AbortController;
  startMs: number;
}

function retryHeaders(state: HttpState, status: number): Record<string, string> {
  return status === 503 ? { 'retry-after': String(state.retryAfterSeconds) } : {};
}

/** Sends an OpenAI error body with its status (and Retry-After on 503). */
export function sendError(state: HttpState, reply: FastifyReply, err: unknown): FastifyReply {
  const { status, body } = toErrorResponse(err);
  if (status === 503) reply.header('retry-after', String(state.retryAfterSeconds));
  state.metrics.rejectedRequests.inc({ code: body.error.code });
  return reply.code(status).send(body);
}

/**
 * Sends the error a `finish` event carried (a request aborted by the engine
 * before anything was written) with its code's status.
 */
export function sendFinishError(
  state: HttpState,
  reply: FastifyReply,
  error: { code: string; message: string },
): FastifyReply {
  const status = statusOfCode(error.code);
  state.metrics.rejectedRequests.inc({ code: error.code });
  return reply.code(status).headers(retryHeaders(state, status)).send(errorOfFinish(error));
}

export async function serveChoices<S>(
  state: HttpState,
  reply: FastifyReply,
  endpoint: Endpoint,
  jobs: readonly Job[],
  format: ChoiceFormat<S>,
  opts: ServeOptions,
): Promise<FastifyReply | undefined> {
  const states = jobs.map((j) => format.init(j));
  const generated = jobs.map(() => 0);
  const finishes: Array<Finish | null> = jobs.map(() => null);
  const promptTokens = new Map<number, number>();
  for (const j of jobs) promptTokens.set(j.promptIndex, j.promptTokens);
  const totalPrompt = [...promptTokens.values()].reduce((a, b) => a + b, 0);
  const usage = (): Usage => {
    let completion = 0;
    for (const g of generated) completion += g;
    return {
      prompt_tokens: totalPrompt,
      completion_tokens: completion,
      total_tokens: totalPrompt + completion,
    };
  };
  let sse: SseStream | null = null;
  // Written from the callbacks below (a holder, so TypeScript does not narrow them to null).
  const failure: { start: unknown; stream: { code: string; message: string } | null } = {
    start: null,
    stream: null,
  };

  const onEvent =
    (i: number) =>
    async (ev: GenerateEvent): Promise<void> => {
      const job = jobs[i]!;
      const st = states[i]!;
      if (ev.type === 'tokens') {
        generated[i]! += ev.tokenIds.length;
        if (!opts.stream) {
          format.collect(st, job, ev);
          return;
        }
        const chunk = format.tokensChunk(st, job, ev, usage());
        if (chunk === null) return;
        sse ??= new SseStream(reply);
        await sse.send(chunk);
        return;
      }
      generated[i] = ev.completionTokens;
      finishes[i] = ev;
      if (ev.error !== undefined) failure.stream ??= ev.error;
      if (!opts.stream) return;
      if (ev.reason === 'abort' && ev.error !== undefined) return; // reported once below
      if (opts.controller.signal.aborted) return;
      sse ??= new SseStream(reply);
      await sse.send(format.finishChunk(st, job, ev, usage()));
    };

  await Promise.all(
    jobs.map((job, i) =>
      state.run(endpoint, job.request, onEvent(i), opts.startMs).catch((err: unknown) => {
        failure.start ??= err;
        // One choice could not start: the others are pointless.
        opts.controller.abort(err);
      }),
    ),
  );

  const startError = failure.start;
  const streamError = failure.stream;
  if (!opts.stream) {
    if (startError !== null) return sendError(state, reply, startError);
    if (streamError !== null) return sendFinishError(state, reply, streamError);
    if (reply.raw.destroyed) return reply; // client went away
    return reply.send(format.body(states, jobs, finishes as Finish[], usage()));
  }

  const err =
    startError !== null
      ? toErrorResponse(startError).body
      : streamError !== null
        ? errorOfFinish(streamError)
        : null;
  const stream = sse as SseStream | null;
  if (stream === null) {
    if (startError !== null) return sendError(state, reply, startError);
    if (streamError !== null) return sendFinishError(state, reply, streamError);
    if (reply.raw.destroyed) return reply;
    // Nothing streamed yet (all choices ended without text): open now.
    const s = new SseStream(reply);
    for (let i = 0; i < jobs.length; i++) {
      const f = finishes[i];
      if (f !== null && f !== undefined) await s.send(format.finishChunk(states[i]!, jobs[i]!, f, usage()));
    }
    if (opts.includeUsage) await s.send(format.usageChunk(usage()));
    await s.done();
    return undefined;
  }
  if (err !== null) await stream.send(err);
  else if (opts.includeUsage) await stream.send(format.usageChunk(usage()));
  await stream.done();
  return undefined;
}
