/**
 * POST /v1/completions and POST /v1/chat/completions (OpenAI wire format,
 * plus SGLang's extensions `ignore_eos`, `routed_dp_rank`, `top_k`, `min_p`,
 * `repetition_penalty`, `stop_token_ids`; `matched_stop` on choices).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type ChoiceFormat, type Job, serveChoices, type Usage } from './choices.js';
import { badRequest } from './errors.js';
import {
  type ChatLogprobEntry,
  CompletionLogprobs,
  type CompletionLogprobsChunk,
  chatLogprobs,
  checkModel,
  checkN,
  checkTokenIds,
  engineRequest,
  type PreparedPrompt,
  resolveMaxTokens,
  responseId,
  routedDpRank,
  samplingParams,
  stopList,
  tokenizePrompt,
} from './prepare.js';
import { ChatBody, CompletionBody } from './schemas.js';
import { abortOnDisconnect, type Finish, type HttpState, type Tokens } from './state.js';

/** Most prompts, and most completions (prompts x n), in one batched completions request. */
const MAX_BATCH_PROMPTS = 1024;

function finishReason(f: Finish): string {
  return f.reason;
}

// ---------------------------------------------------------------- completions

interface CompletionChoiceState {
  text: string;
  echo: string;
  echoed: boolean;
  logprobs: CompletionLogprobs | null;
}

function completionFormat(
  state: HttpState,
  id: string,
  created: number,
  echoTexts: readonly string[],
  wantLogprobs: boolean,
): ChoiceFormat<CompletionChoiceState> {
  const model = state.modelName;
  const chunk = (
    index: number,
    text: string,
    logprobs: CompletionLogprobsChunk | null,
    finish: Finish | null,
    usage: Usage | null,
  ) => ({
    id,
    object: 'text_completion',
    created,
    model,
    choices: [
      {
        index,
        text,
        logprobs,
        finish_reason: finish === null ? null : finishReason(finish),
        ...(finish !== null ? { matched_stop: finish.matchedStop } : {}),
      },
    ],
    ...(usage !== null ? { usage } : {}),
  });
  const withEcho = (st: CompletionChoiceState, text: string): string => {
    if (st.echoed) return text;
    st.echoed = true;
    return st.echo + text;
  };
  return {
    init: (job) => ({
      text: '',
      echo: echoTexts[job.promptIndex] ?? '',
      echoed: false,
      logprobs: wantLogprobs ? new CompletionLogprobs() : null,
    }),
    tokensChunk(st, job, ev, usage) {
      const lp = st.logprobs !== null ? st.logprobs.add(state, ev.tokenIds, ev.logprobs) : null;
      if (ev.text === '' && lp === null) return null;
      return chunk(job.index, withEcho(st, ev.text), lp, null, ev.text === '' ? null : usage);
    },
    finishChunk(st, job, ev, usage) {
      return chunk(job.index, withEcho(st, ev.text), null, ev, usage);
    },
    usageChunk: (usage) => ({ id, object: 'text_completion', created, model, choices: [], usage }),
    collect(st, _job, ev) {
      st.text += ev.text;
      st.logprobs?.add(state, ev.tokenIds, ev.logprobs);
    },
    body(states, jobs, finishes, usage) {
      return {
        id,
        object: 'text_completion',
        created,
        model,
        choices: jobs.map((job, i) => {
          const st = states[i]!;
          const f = finishes[i]!;
          const lp = st.logprobs;
          return {
            index: job.index,
            text: st.echo + st.text + f.text,
            logprobs:
              lp === null
                ? null
                : {
                    tokens: lp.tokens,
                    token_logprobs: lp.token_logprobs,
                    top_logprobs: lp.top_logprobs,
                    text_offset: lp.text_offset,
                  },
            finish_reason: finishReason(f),
            matched_stop: f.matchedStop,
          };
        }),
        usage,
      };
    },
  };
}

function completionPrompts(state: HttpState, prompt: CompletionBody['prompt']): PreparedPrompt[] {
  if (typeof prompt === 'string') return [tokenizePrompt(state, prompt)];
  if (prompt.length > MAX_BATCH_PROMPTS) {
    throw badRequest(
      `prompt: at most ${MAX_BATCH_PROMPTS} prompts per request; got ${prompt.length}`,
      'prompt',
    );
  }
  const first = prompt[0];
  if (typeof first === 'string') return (prompt as string[]).map((p) => tokenizePrompt(state, p));
  if (typeof first === 'number') {
    const ids = prompt as number[];
    checkTokenIds(state, ids, 'prompt');
    return [{ tokenIds: [...ids], text: null }];
  }
  return (prompt as number[][]).map((ids) => {
    checkTokenIds(state, ids, 'prompt');
    return { tokenIds: [...ids], text: null };
  });
}

async function completions(state: HttpState, req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const startMs = performance.now();
  const body = req.body as CompletionBody;
  checkModel(state, body.model);
  const n = body.n ?? 1;
  checkN(state, n);
  if (body.best_of !== undefined && body.best_of !== null && body.best_of !== 1 && body.best_of !== n) {
    throw badRequest('best_of: only best_of = 1 or best_of = n is supported', 'best_of');
  }
  const prompts = completionPrompts(state, body.prompt);
  if (prompts.length * n > MAX_BATCH_PROMPTS) {
    throw badRequest(
      `prompt: at most ${MAX_BATCH_PROMPTS} completions (prompts x n) per request; got ${prompts.length * n}`,
      'prompt',
    );
  }
  const maxTokens = body.max_tokens ?? 16;
  const maxes = prompts.map((p) =>
    resolveMaxTokens(state, p.tokenIds.length, maxTokens, 'prompt', 'max_tokens'),
  );
  let echoTexts: string[] = [];
  if (body.echo === true) {
    echoTexts = prompts.map((p) => {
      return p.text ?? state.engine.decode(p.tokenIds);
    });
  }
  state.admit();
  const lpCount = body.logprobs ?? null;
  const wantLogprobs = lpCount !== null;
  const controller = abortOnDisconnect(reply);
  const stop = stopList(body.stop);
  const jobs: Job[] = [];
  prompts.forEach((p, pi) => {
    for (let c = 0; c < n; c++) {
      const seed = body.seed === undefined || body.seed === null ? null : body.seed + c;
      const sampling = samplingParams({ ...body, seed }, wantLogprobs ? (lpCount === 0 ? -1 : lpCount) : 0);
      jobs.push({
        request: engineRequest(
          p,
          sampling,
          maxes[pi]!,
          stop,
          body.stop_token_ids,
          body.ignore_eos,
          routedDpRank(body.routed_dp_rank, req.headers),
          controller.signal,
        ),
        index: pi * n + c,
        promptIndex: pi,
        promptTokens: p.tokenIds.length,
      });
    }
  });
  const format = completionFormat(
    state,
    responseId('cmpl'),
    Math.floor(Date.now() / 1000),
    echoTexts,
    wantLogprobs,
  );
  return serveChoices(state, reply, 'completions', jobs, format, {
    stream: body.stream === true,
    includeUsage: body.stream_options?.include_usage === true,
    controller,
    startMs,
  });
}

// ---------------------------------------------------------------- chat

interface ChatChoiceState {
  roleSent: boolean;
  text: string;
  logprobs: ChatLogprobEntry[] | null;
}

function chatFormat(
  state: HttpState,
  id: string,
  created: number,
  topLogprobs: number | null,
): ChoiceFormat<ChatChoiceState> {
  const model = state.modelName;
  const chunk = (
    st: ChatChoiceState,
    index: number,
    content: string | null,
    logprobs: ChatLogprobEntry[] | null,
    finish: Finish | null,
    usage: Usage | null,
  ) => {
    const delta: Record<string, unknown> = {};
    if (!st.roleSent) {
      st.roleSent = true;
      delta['role'] = 'assistant';
    }
    if (content !== null) delta['content'] = content;
    return {
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [
        {
          index,
          delta,
          logprobs: logprobs === null ? null : { content: logprobs },
          finish_reason: finish === null ? null : finishReason(finish),
          ...(finish !== null ? { matched_stop: finish.matchedStop } : {}),
        },
      ],
      ...(usage !== null ? { usage } : {}),
    };
  };
  return {
    init: () => ({ roleSent: false, text: '', logprobs: topLogprobs !== null ? [] : null }),
    tokensChunk(st, job, ev: Tokens, usage) {
      const lp = topLogprobs !== null ? chatLogprobs(state, ev.tokenIds, ev.logprobs, topLogprobs) : null;
      if (ev.text === '' && lp === null) return null;
      return chunk(st, job.index, ev.text, lp, null, ev.text === '' ? null : usage);
    },
    finishChunk(st, job, ev, usage) {
      return chunk(st, job.index, ev.text === '' ? null : ev.text, null, ev, usage);
    },
    usageChunk: (usage) => ({ id, object: 'chat.completion.chunk', created, model, choices: [], usage }),
    collect(st, _job, ev) {
      st.text += ev.text;
      if (st.logprobs !== null && topLogprobs !== null) {
        st.logprobs.push(...chatLogprobs(state, ev.tokenIds, ev.logprobs, topLogprobs));
      }
    },
    body(states, jobs, finishes, usage) {
      return {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: jobs.map((job, i) => {
          const st = states[i]!;
          const f = finishes[i]!;
          return {
            index: job.index,
            message: { role: 'assistant', content: st.text + f.text },
            logprobs: st.logprobs === null ? null : { content: st.logprobs },
            finish_reason: finishReason(f),
            matched_stop: f.matchedStop,
          };
        }),
        usage,
      };
    },
  };
}

function messageText(m: ChatBody['messages'][number], i: number): string {
  const c = m.content;
  if (c === undefined || c === null) return '';
  if (typeof c === 'string') return c;
  let out = '';
  c.forEach((part, j) => {
    if (part.type !== 'text' || typeof part.text !== 'string') {
      throw badRequest(
        `messages.${i}.content.${j}: only {"type": "text", "text": ...} parts are supported; got type ${JSON.stringify(part.type)}`,
        `messages.${i}.content`,
      );
    }
    out += part.text;
  });
  return out;
}

async function chat(state: HttpState, req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const startMs = performance.now();
  const body = req.body as ChatBody;
  checkModel(state, body.model);
  const n = body.n ?? 1;
  checkN(state, n);
  const messages = body.messages.map((m, i) => ({ role: m.role, content: messageText(m, i) }));
  const engine = state.engine;
  const tokenIds = engine.encodeChat(messages);
  const prompt: PreparedPrompt = { tokenIds: [...tokenIds], text: null };
  const maxParam =
    body.max_completion_tokens !== undefined && body.max_completion_tokens !== null
      ? 'max_completion_tokens'
      : 'max_tokens';
  const maxTokens = resolveMaxTokens(
    state,
    prompt.tokenIds.length,
    body.max_completion_tokens ?? body.max_tokens ?? null,
    'messages',
    maxParam,
  );
  state.admit();
  const wantLogprobs = body.logprobs === true;
  const topLogprobs = wantLogprobs ? (body.top_logprobs ?? 0) : null;
  if (
    !wantLogprobs &&
    body.top_logprobs !== undefined &&
    body.top_logprobs !== null &&
    body.top_logprobs > 0
  ) {
    throw badRequest('top_logprobs: requires logprobs: true', 'top_logprobs');
  }
  const controller = abortOnDisconnect(reply);
  const stop = stopList(body.stop);
  const jobs: Job[] = [];
  for (let c = 0; c < n; c++) {
    const seed = body.seed === undefined || body.seed === null ? null : body.seed + c;
    const sampling = samplingParams(
      { ...body, seed },
      topLogprobs === null ? 0 : topLogprobs === 0 ? -1 : topLogprobs,
    );
    jobs.push({
      request: engineRequest(
        prompt,
        sampling,
        maxTokens,
        stop,
        body.stop_token_ids,
        body.ignore_eos,
        routedDpRank(body.routed_dp_rank, req.headers),
        controller.signal,
      ),
      index: c,
      promptIndex: 0,
      promptTokens: prompt.tokenIds.length,
    });
  }
  const format = chatFormat(state, responseId('chatcmpl'), Math.floor(Date.now() / 1000), topLogprobs);
  return serveChoices(state, reply, 'chat', jobs, format, {
    stream: body.stream === true,
    includeUsage: body.stream_options?.include_usage === true,
    controller,
    startMs,
  });
}

export function registerOpenAIRoutes(app: FastifyInstance, state: HttpState): void {
  app.post('/v1/completions', { schema: { body: CompletionBody } }, (req, reply) =>
    completions(state, req, reply),
  );
  app.post('/v1/chat/completions', { schema: { body: ChatBody } }, (req, reply) => chat(state, req, reply));
}
