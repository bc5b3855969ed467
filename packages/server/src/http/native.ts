/**
 * SGLang's native API: POST /generate (text or input_ids, sampling_params,
 * stream with cumulative `text` and `meta_info`), and the side endpoints
 * GET /health, GET /server_info, GET /model_info, POST /flush_cache,
 * GET /v1/models, GET /v1/loads, GET /get_load, GET /metrics.
 */
import {
  buildGetLoad,
  buildLoadsPayload,
  LOADS_PROMETHEUS_CONTENT_TYPE,
  type LoadSnapshot,
  parseLoadsQuery,
  renderLoadsPrometheus,
} from '@tsinfer/scheduler';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { GenerateEvent } from '../engine/types.js';
import { sendError, sendFinishError } from './choices.js';
import { badRequest, errorOfFinish, HttpError, toErrorResponse } from './errors.js';
import {
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
import { GenerateBody, LoadsQuery } from './schemas.js';
import { SseStream } from './sse.js';
import { abortOnDisconnect, type Finish, type HttpState } from './state.js';

/** SGLang's default max_new_tokens. */
const DEFAULT_MAX_NEW_TOKENS = 128;

function finishReasonObject(f: Finish): Record<string, unknown> {
  if (f.reason === 'length') return { type: 'length', length: f.completionTokens };
  if (f.reason === 'stop') return { type: 'stop', matched: f.matchedStop };
  return { type: 'abort', message: f.error?.message ?? 'aborted' };
}

async function generate(state: HttpState, req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const startMs = performance.now();
  const body = req.body as GenerateBody;
  const hasText = body.text !== undefined && body.text !== null;
  const hasIds = body.input_ids !== undefined && body.input_ids !== null;
  if (hasText === hasIds)
    throw badRequest('exactly one of text and input_ids must be given', hasText ? 'input_ids' : 'text');
  let prompt: PreparedPrompt;
  if (hasIds) {
    checkTokenIds(state, body.input_ids!, 'input_ids');
    prompt = { tokenIds: [...body.input_ids!], text: null };
  } else {
    prompt = tokenizePrompt(state, body.text!);
  }
  const sp = body.sampling_params ?? {};
  const maxNew = resolveMaxTokens(
    state,
    prompt.tokenIds.length,
    sp.max_new_tokens ?? DEFAULT_MAX_NEW_TOKENS,
    hasIds ? 'input_ids' : 'text',
    'sampling_params.max_new_tokens',
  );
  state.admit();
  const topN = body.top_logprobs_num ?? 0;
  const wantLogprobs = body.return_logprob === true;
  const sampling = samplingParams(
    { ...sp, seed: sp.sampling_seed ?? null },
    wantLogprobs ? (topN === 0 ? -1 : topN) : 0,
  );
  const controller = abortOnDisconnect(reply);
  const request = engineRequest(
    prompt,
    sampling,
    maxNew,
    stopList(sp.stop),
    sp.stop_token_ids,
    sp.ignore_eos,
    routedDpRank(body.routed_dp_rank, req.headers),
    controller.signal,
  );
  const rid = body.rid ?? responseId('gen');
  const promptTokens = prompt.tokenIds.length;
  let text = '';
  const outputIds: number[] = [];
  const tokenLogprobs: Array<[number, number, null]> = [];
  const topLogprobs: Array<Array<[number, number, null]>> = [];
  const stream = body.stream === true;
  let sse: SseStream | null = null;
  const meta = (finish: Finish | null): Record<string, unknown> => ({
    id: rid,
    finish_reason: finish === null ? null : finishReasonObject(finish),
    prompt_tokens: promptTokens,
    completion_tokens: finish === null ? outputIds.length : finish.completionTokens,
    cached_tokens: 0,
    ...(finish !== null ? { e2e_latency: (performance.now() - startMs) / 1000, dp_rank: finish.dpRank } : {}),
    ...(wantLogprobs ? { output_token_logprobs: tokenLogprobs, output_top_logprobs: topLogprobs } : {}),
  });
  const onEvent = async (ev: GenerateEvent): Promise<void> => {
    if (ev.type === 'tokens') {
      text += ev.text;
      for (let i = 0; i < ev.tokenIds.length; i++) {
        const id = ev.tokenIds[i]!;
        outputIds.push(id);
        if (wantLogprobs) {
          const lp = ev.logprobs?.[i] ?? null;
          tokenLogprobs.push([lp?.logprob ?? 0, id, null]);
          const top: Array<[number, number, null]> = [];
          if (lp !== null)
            for (let j = 0; j < lp.topIds.length; j++) top.push([lp.topLogprobs[j]!, lp.topIds[j]!, null]);
          topLogprobs.push(top);
        }
      }
      if (stream && ev.text !== '') {
        sse ??= new SseStream(reply);
        await sse.send({ text, meta_info: meta(null) });
      }
      return;
    }
    text += ev.text;
    if (stream && !(ev.reason === 'abort' && ev.error !== undefined) && !controller.signal.aborted) {
      sse ??= new SseStream(reply);
      await sse.send({ text, output_ids: outputIds, meta_info: meta(ev) });
    }
  };
  let finish: Finish;
  try {
    finish = await state.run('generate', request, onEvent, startMs);
  } catch (err) {
    if (sse === null) return sendError(state, reply, err);
    const s = sse as SseStream;
    await s.send(toErrorResponse(err).body);
    await s.done();
    return undefined;
  }
  const error = finish.error;
  if (stream) {
    const s = sse as SseStream | null;
    if (s === null) {
      if (error !== undefined) return sendFinishError(state, reply, error);
      return undefined;
    }
    if (error !== undefined) await s.send(errorOfFinish(error));
    await s.done();
    return undefined;
  }
  if (error !== undefined) return sendFinishError(state, reply, error);
  if (reply.raw.destroyed) return reply;
  return reply.send({ text, output_ids: outputIds, meta_info: meta(finish) });
}

function readLoads(state: HttpState, dpRank: number | null): readonly LoadSnapshot[] {
  return state.engine.loads(dpRank);
}

export function registerNativeRoutes(app: FastifyInstance, state: HttpState): void {
  app.post('/generate', { schema: { body: GenerateBody } }, (req, reply) => generate(state, req, reply));

  app.get('/v1/models', async () => ({
    object: 'list',
    data: [
      {
        id: state.modelName,
        object: 'model',
        created: Math.floor(state.startedAt / 1000),
        owned_by: 'tsinfer',
        root: state.engine.info.modelPath,
        max_model_len: state.engine.info.contextLength,
      },
    ],
  }));

  app.get('/v1/models/:model', async (req) => {
    const { model } = req.params as { model: string };
    if (model !== state.modelName) {
      throw new HttpError('TSI_ERR_MODEL_NOT_FOUND', `The model \`${model}\` does not exist`, 'model');
    }
    return {
      id: state.modelName,
      object: 'model',
      created: Math.floor(state.startedAt / 1000),
      owned_by: 'tsinfer',
      root: state.engine.info.modelPath,
      max_model_len: state.engine.info.contextLength,
    };
  });

  const health = async (_req: FastifyRequest, reply: FastifyReply) => {
    const h = state.engine.health();
    if (state.draining) {
      return reply
        .code(503)
        .send({ status: 'draining', ranks: h.ranks.map((r) => ({ dp_rank: r.dpRank, alive: r.alive })) });
    }
    const ranks = h.ranks.map((r) => ({
      dp_rank: r.dpRank,
      alive: r.alive,
      ...(r.reason ? { reason: r.reason } : {}),
    }));
    return reply.code(h.ok ? 200 : 503).send({ status: h.ok ? 'ok' : 'unhealthy', ranks });
  };
  app.get('/health', health);
  app.get('/health_generate', health);

  app.get('/model_info', async () => ({
    model_path: state.engine.info.modelPath,
    tokenizer_path: state.engine.info.modelPath,
    served_model_name: state.modelName,
    is_generation: true,
    context_length: state.engine.info.contextLength,
    vocab_size: state.engine.info.vocabSize,
  }));

  app.get('/server_info', async () => {
    const info = state.engine.info;
    return {
      version: state.version,
      model_path: info.modelPath,
      served_model_name: state.modelName,
      context_length: info.contextLength,
      vocab_size: info.vocabSize,
      dp_size: info.dpSize,
      device: info.device,
      uptime_s: (Date.now() - state.startedAt) / 1000,
      max_queued_requests: state.engine.config.maxQueuedRequests,
      load_balance_method: state.engine.info.loadBalanceMethod,
      prefill_delayer: state.engine.info.prefillDelayer,
      runtime_backend: state.engine.info.runtimeBackend,
      runtime_backend_reason: state.engine.info.runtimeBackendReason,
      kv_capacity_tokens: state.engine.info.kvCapacityTokens,
      max_running_requests: state.engine.info.maxRunningRequests,
      engine_queued_requests: state.engine.requestCounts().queued,
      engine_inflight_requests: state.engine.requestCounts().inFlight,
      num_waiting_http_requests: state.waiting,
      num_inflight_http_requests: state.inflight,
      draining: state.draining,
      internal_states: readLoads(state, null).map((s) => ({
        dp_rank: s.dpRank,
        num_running_reqs: s.numRunningReqs,
        num_waiting_reqs: s.numWaitingReqs,
        num_used_tokens: s.numUsedTokens,
        max_total_num_tokens: s.maxTotalNumTokens,
        token_usage: s.tokenUsage,
        gen_throughput: s.genThroughput,
      })),
      server_args: state.serverArgs,
    };
  });

  app.post('/flush_cache', async (_req, reply) => {
    await state.engine.flushCache();
    return reply.type('text/plain; charset=utf-8').send('Cache flushed.\n');
  });
  app.get('/flush_cache', async (_req, reply) => {
    await state.engine.flushCache();
    return reply.type('text/plain; charset=utf-8').send('Cache flushed.\n');
  });

  app.get('/v1/loads', { schema: { querystring: LoadsQuery } }, async (req, reply) => {
    const t0 = performance.now();
    try {
      const q = parseLoadsQuery(req.query as Record<string, unknown>);
      const loads = readLoads(state, q.dpRank);
      if (q.format === 'prometheus') {
        return reply.type(LOADS_PROMETHEUS_CONTENT_TYPE).send(renderLoadsPrometheus(loads, q));
      }
      return reply.send(
        buildLoadsPayload(loads, q, {
          version: state.version,
          nowMs: Date.now(),
          accelerator: state.engine.info.device,
          numAccelerators: 1,
        }),
      );
    } finally {
      state.metrics.getLoadsDuration.observe((performance.now() - t0) / 1000);
    }
  });

  app.get('/get_load', async (req, reply) => {
    req.log.warn('GET /get_load is deprecated; use GET /v1/loads');
    return reply.send(buildGetLoad(readLoads(state, null), performance.now() / 1000));
  });

  app.get('/metrics', async (_req, reply) => {
    const text = await state.metrics.render();
    return reply.type(state.metrics.contentType).send(text);
  });
}
