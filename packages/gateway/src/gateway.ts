/**
 * `createGateway(options)`: a fastify app in front of several tsinfer (or
 * SGLang) workers.
 *
 * Proxied (POST): /v1/completions, /v1/chat/completions, /generate,
 * /v1/embeddings. Per request: estimate the prompt tokens, pick a worker
 * (policy over healthy workers whose breaker admits), with
 * `--dp-minimum-tokens-scheduler` pick its least-loaded DP rank and inject
 * `routed_dp_rank`, send, and count the request in flight on that worker
 * and rank until it ends.
 *
 * Retries (exponential backoff with jitter) on 408/429/5xx and connection
 * errors, and only while nothing has been sent to the client: a non-stream
 * response is read whole before the client sees any of it (so a worker
 * dying mid-body is retried too); an SSE stream (text/event-stream) is
 * passed through chunk by chunk as it arrives, and once its first byte went
 * out a failure ends it with an SSE error event and `data: [DONE]`. A client
 * that goes away aborts the upstream request.
 *
 * Own endpoints: GET /health, GET /metrics, GET /v1/models (merged over the
 * healthy workers), GET/POST/DELETE /workers (and SGLang's /list_workers,
 * /add_worker, /remove_worker).
 */
import { once } from 'node:events';
import { type Clock, createRng, type Rng, systemClock, TsinferError } from '@tsinfer/core';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { Agent, type Dispatcher, request } from 'undici';
import { type GatewayConfig, type GatewayConfigInput, resolveConfig } from './config.js';
import { GatewayError, toErrorResponse } from './errors.js';
import { estimateRequestTokens, loadTokenCounter, requestText, type TokenCounter } from './estimate.js';
import { GatewayMetrics } from './metrics.js';
import { HealthChecker, LoadMonitor } from './monitor.js';
import { backoffMs, isRetryableStatus, realSleep, type SleepFn } from './retry.js';
import { Router } from './router.js';
import type { InflightTicket, Worker } from './worker.js';

/** POST routes passed to workers. */
export const PROXY_ROUTES: readonly string[] = [
  '/v1/completions',
  '/v1/chat/completions',
  '/generate',
  '/v1/embeddings',
];

export interface GatewayOptions extends GatewayConfigInput {
  /** Time source for breakers and load staleness (default: the system clock). */
  clock?: Clock;
  /** RNG for random / power_of_two / jitter (default: createRng(seed)). */
  rng?: Rng;
  /** Backoff wait (default: a timer); tests inject one that does not sleep. */
  sleep?: SleepFn;
  /** Token counter for estimates (default: from tokenizerPath, else the word-count estimate). */
  tokenCounter?: TokenCounter | null;
  /** Start the load monitor, health checker and tree eviction when the app is ready (default true). */
  background?: boolean;
}

/** What createGateway adds to the fastify instance. */
export interface GatewayRuntime {
  readonly config: GatewayConfig;
  readonly router: Router;
  readonly loadMonitor: LoadMonitor;
  readonly healthChecker: HealthChecker;
  readonly metrics: GatewayMetrics;
}

export type GatewayApp = FastifyInstance & { gateway: GatewayRuntime };

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'trailers',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
]);

function forwardHeaders(h: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP_BY_HOP.has(k.toLowerCase())) continue;
    out[k] = v;
  }
  return out;
}

function errCode(err: unknown): string {
  const e = err as { code?: string; name?: string; cause?: { code?: string } };
  return e?.code ?? e?.cause?.code ?? e?.name ?? 'error';
}

class AttemptTimeout extends Error {
  constructor() {
    super('attempt timed out');
    this.name = 'AttemptTimeout';
  }
}

function sendError(reply: FastifyReply, err: unknown): FastifyReply {
  const { status, body } = toErrorResponse(err);
  return reply.code(status).type('application/json; charset=utf-8').send(body);
}

function sseErrorEvent(err: TsinferError): string {
  return `data: ${JSON.stringify(toErrorResponse(err).body)}\n\ndata: [DONE]\n\n`;
}

interface ParsedBody {
  json: Record<string, unknown> | null;
  raw: Buffer;
}

function parseBody(req: FastifyRequest): ParsedBody {
  const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const ct = String(req.headers['content-type'] ?? '');
  if (raw.length > 0 && (ct === '' || ct.includes('json'))) {
    try {
      const v: unknown = JSON.parse(raw.toString('utf8'));
      if (typeof v === 'object' && v !== null && !Array.isArray(v))
        return { json: v as Record<string, unknown>, raw };
    } catch {
      // forwarded as is; the worker answers the 400
    }
  }
  return { json: null, raw };
}

export async function createGateway(options: GatewayOptions = {}): Promise<GatewayApp> {
  const config = resolveConfig(options);
  const clock = options.clock ?? systemClock;
  const rng = options.rng ?? createRng(config.seed);
  const sleep = options.sleep ?? realSleep;
  const counter =
    options.tokenCounter !== undefined
      ? options.tokenCounter
      : config.tokenizerPath !== null
        ? await loadTokenCounter(config.tokenizerPath)
        : null;
  const dispatcher: Dispatcher = new Agent({
    connect: { timeout: config.connectTimeoutMs },
    headersTimeout: config.requestTimeoutMs,
    bodyTimeout: config.requestTimeoutMs,
    keepAliveTimeout: 30_000,
    connections: null,
    pipelining: 1,
  });

  const app = Fastify({
    logger: config.logLevel === 'silent' ? false : { level: config.logLevel },
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024 * 1024,
    forceCloseConnections: true,
    keepAliveTimeout: 65_000,
  });
  const log = (level: 'info' | 'warn', msg: string): void => {
    app.log[level](msg);
  };
  const router = new Router(config, clock, rng);
  const metrics = new GatewayMetrics(() => router.workers());
  const probeDeps = { clock, dispatcher, apiKey: config.workerApiKey, workers: () => router.workers(), log };
  const loadMonitor = new LoadMonitor(config.load, probeDeps);
  const healthChecker = new HealthChecker(config.health, probeDeps);
  const background = options.background !== false;
  let started = false;
  router.onAdd = (w) => {
    if (!started) return;
    void loadMonitor.pollWorker(w);
    void healthChecker.checkWorker(w);
  };
  hookBreakerLogs(router, log);

  const runtime: GatewayRuntime = { config, router, loadMonitor, healthChecker, metrics };
  const gw = Object.assign(app, { gateway: runtime }) as GatewayApp;

  let evictTimer: NodeJS.Timeout | null = null;
  app.addHook('onReady', async () => {
    if (!background) return;
    started = true;
    loadMonitor.start();
    healthChecker.start();
    evictTimer = setInterval(() => router.policy.maintain(), config.cacheAware.evictionIntervalMs);
    evictTimer.unref();
  });
  app.addHook('onClose', async () => {
    if (evictTimer !== null) clearInterval(evictTimer);
    await Promise.all([loadMonitor.stop(), healthChecker.stop()]);
    await dispatcher.close();
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err, _req, reply) => sendError(reply, err));
  app.setNotFoundHandler((req, reply) =>
    sendError(
      reply,
      new GatewayError('TSI_ERR_ROUTE_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`),
    ),
  );

  // ------------------------------------------------------------------ proxy

  const proxy = async (route: string, req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const t0 = performance.now();
    const parsed = parseBody(req);
    const tokens = estimateRequestTokens(parsed.json, counter);
    const text = config.policy === 'cache_aware' ? requestText(parsed.json) : '';
    const pinned = parsed.json?.['routed_dp_rank'];
    const clientPinned = typeof pinned === 'number' && Number.isInteger(pinned) ? pinned : null;
    const headers = forwardHeaders(req.headers);
    const client = new AbortController();
    const onClose = (): void => {
      if (!reply.raw.writableFinished) client.abort(new Error('client disconnected'));
    };
    reply.raw.on('close', onClose);
    const tried = new Set<string>();
    const maxAttempts = config.retry.enabled ? config.retry.maxRetries + 1 : 1;
    let lastError: TsinferError | null = null;
    let retryIndex = 0;

    const finish = (
      worker: Worker | null,
      dpRank: number | null,
      status: number,
      upstreamMs: number,
    ): void => {
      const total = (performance.now() - t0) / 1000;
      metrics.addedLatency.observe({ route }, Math.max(0, total - upstreamMs / 1000));
      metrics.upstreamLatency.observe({ route }, upstreamMs / 1000);
      if (worker !== null) {
        metrics.requests.inc({
          route,
          worker: worker.url,
          dp_rank: dpRank === null ? '' : String(dpRank),
          status: String(status),
        });
      }
    };
    const abandon = (): FastifyReply => {
      metrics.clientAborts.inc({ route });
      if (!reply.sent) reply.hijack();
      reply.raw.destroy();
      return reply;
    };
    const fail = (err: TsinferError): FastifyReply => {
      metrics.failures.inc({ route, code: err.code });
      return sendError(reply, err);
    };

    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      if (attempt > 0) {
        try {
          await sleep(backoffMs(config.retry, retryIndex++, rng), client.signal);
        } catch {
          break;
        }
      }
      if (client.signal.aborted) break;
      const pick = router.pick(text, tried);
      if (pick === null) {
        lastError ??= new GatewayError(
          'TSI_ERR_NO_HEALTHY_WORKER',
          router.workers().length === 0
            ? 'no worker is registered'
            : 'no worker can take the request: every worker is unhealthy or its circuit breaker is open',
        );
        if (lastError.code === 'TSI_ERR_NO_HEALTHY_WORKER' && attempt === 0 && router.workers().length === 0)
          break;
        continue;
      }
      const { worker, permit } = pick;
      tried.add(worker.url);
      const dpRank = clientPinned ?? pick.dpRank;
      let body: Buffer = parsed.raw;
      if (parsed.json !== null && clientPinned === null && pick.dpRank !== null) {
        body = Buffer.from(JSON.stringify({ ...parsed.json, routed_dp_rank: pick.dpRank }));
      }
      const ticket: InflightTicket = router.begin(worker, dpRank, tokens);
      const attemptAbort = new AbortController();
      const onClientAbort = (): void => attemptAbort.abort(client.signal.reason);
      client.signal.addEventListener('abort', onClientAbort, { once: true });
      const timer = setTimeout(() => attemptAbort.abort(new AttemptTimeout()), config.requestTimeoutMs);
      timer.unref();
      const cleanup = (): void => {
        clearTimeout(timer);
        client.signal.removeEventListener('abort', onClientAbort);
        ticket.end();
      };
      const tSend = performance.now();
      let res: Dispatcher.ResponseData;
      try {
        res = await request(`${worker.url}${req.url}`, {
          method: 'POST',
          headers: { ...headers, 'content-length': String(body.length) },
          body,
          dispatcher,
          signal: attemptAbort.signal,
        });
      } catch (err) {
        cleanup();
        if (client.signal.aborted) {
          worker.breaker.release(permit);
          return abandon();
        }
        worker.breaker.record(permit, false);
        if (attemptAbort.signal.reason instanceof AttemptTimeout) {
          return fail(
            new GatewayError(
              'TSI_ERR_UPSTREAM_TIMEOUT',
              `worker ${worker.url} did not answer within ${config.requestTimeoutMs / 1000} s`,
            ),
          );
        }
        const code = errCode(err);
        lastError = new GatewayError('TSI_ERR_UPSTREAM', `worker ${worker.url} failed: ${code}`);
        if (attempt + 1 < maxAttempts) metrics.retries.inc({ worker: worker.url, reason: code });
        continue;
      }
      const status = res.statusCode;
      worker.breaker.record(permit, status < 500);
      if (isRetryableStatus(status) && attempt + 1 < maxAttempts) {
        await res.body.dump().catch(() => {});
        cleanup();
        metrics.retries.inc({ worker: worker.url, reason: String(status) });
        lastError = new GatewayError('TSI_ERR_UPSTREAM', `worker ${worker.url} answered ${status}`);
        continue;
      }
      const resHeaders = forwardHeaders(res.headers as Record<string, string | string[] | undefined>);
      const ct = String(res.headers['content-type'] ?? '');
      if (!ct.includes('text/event-stream')) {
        // Read whole before the client sees a byte: a failure here can still be retried.
        let buf: Buffer;
        try {
          buf = Buffer.from(await res.body.arrayBuffer());
        } catch (err) {
          cleanup();
          if (client.signal.aborted) return abandon();
          worker.breaker.recordFailure();
          if (attemptAbort.signal.reason instanceof AttemptTimeout) {
            return fail(
              new GatewayError(
                'TSI_ERR_UPSTREAM_TIMEOUT',
                `worker ${worker.url} did not finish within ${config.requestTimeoutMs / 1000} s`,
              ),
            );
          }
          const code = errCode(err);
          lastError = new GatewayError(
            'TSI_ERR_UPSTREAM',
            `worker ${worker.url} broke off its response: ${code}`,
          );
          if (attempt + 1 < maxAttempts) metrics.retries.inc({ worker: worker.url, reason: code });
          continue;
        }
        const upstreamMs = performance.now() - tSend;
        cleanup();
        if (client.signal.aborted) return abandon();
        finish(worker, dpRank, status, upstreamMs);
        return reply.code(status).headers(resHeaders).send(buf);
      }

      // SSE: pass through as it arrives; no retry after the first byte.
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(status, resHeaders);
      raw.flushHeaders();
      try {
        for await (const chunk of res.body) {
          if (client.signal.aborted) break;
          if (!raw.write(chunk as Buffer)) await once(raw, 'drain', { signal: client.signal });
        }
      } catch (err) {
        if (!client.signal.aborted) {
          worker.breaker.recordFailure();
          const timedOut = attemptAbort.signal.reason instanceof AttemptTimeout;
          const e = timedOut
            ? new GatewayError(
                'TSI_ERR_UPSTREAM_TIMEOUT',
                `worker ${worker.url} did not finish within ${config.requestTimeoutMs / 1000} s`,
              )
            : new GatewayError(
                'TSI_ERR_UPSTREAM',
                `worker ${worker.url} broke off the stream: ${errCode(err)}`,
              );
          metrics.failures.inc({ route, code: e.code });
          raw.write(sseErrorEvent(e));
        }
      }
      const upstreamMs = performance.now() - tSend;
      cleanup();
      if (client.signal.aborted) {
        res.body.destroy();
        metrics.clientAborts.inc({ route });
        raw.destroy();
        return reply;
      }
      finish(worker, dpRank, status, upstreamMs);
      raw.end();
      return reply;
    }
    if (client.signal.aborted) return abandon();
    return fail(lastError ?? new GatewayError('TSI_ERR_NO_HEALTHY_WORKER', 'no worker can take the request'));
  };

  for (const route of PROXY_ROUTES) {
    app.post(route, (req, reply) => proxy(route, req, reply));
  }

  // -------------------------------------------------------------- own routes

  app.get('/health', async (_req, reply) => {
    const workers = router.workers();
    const available = workers.filter((w) => w.isAvailable()).length;
    return reply.code(available > 0 ? 200 : 503).send({
      status: available > 0 ? 'ok' : 'unhealthy',
      workers: workers.length,
      available_workers: available,
    });
  });

  app.get('/metrics', async (_req, reply) => {
    return reply.type(metrics.contentType).send(await metrics.render());
  });

  app.get('/v1/models', async (_req, reply) => {
    const workers = router.workers().filter((w) => w.healthy);
    const h: Record<string, string> = {};
    if (config.workerApiKey !== null) h['authorization'] = `Bearer ${config.workerApiKey}`;
    const answers = await Promise.all(
      workers.map(async (w) => {
        try {
          const r = await request(`${w.url}/v1/models`, {
            headers: h,
            dispatcher,
            signal: AbortSignal.timeout(config.health.timeoutMs),
          });
          if (r.statusCode !== 200) {
            await r.body.dump();
            return null;
          }
          return { worker: w.url, body: (await r.body.json()) as { data?: unknown } };
        } catch {
          return null;
        }
      }),
    );
    const byId = new Map<string, Record<string, unknown>>();
    let any = false;
    for (const a of answers) {
      if (a === null || !Array.isArray(a.body.data)) continue;
      any = true;
      for (const m of a.body.data as Array<Record<string, unknown>>) {
        const id = String(m['id']);
        const prev = byId.get(id);
        if (prev === undefined) byId.set(id, { ...m, workers: [a.worker] });
        else (prev['workers'] as string[]).push(a.worker);
      }
    }
    if (!any) {
      return sendError(
        reply,
        new GatewayError('TSI_ERR_NO_HEALTHY_WORKER', 'no healthy worker answered GET /v1/models'),
      );
    }
    return reply.send({ object: 'list', data: [...byId.values()] });
  });

  // Model facts (GET /model_info): every worker serves the same model, so the first healthy worker
  // that answers speaks for all. Clients such as `tsinfer bench` read it to pick the tokenizer that
  // counts tokens the way the server does.
  for (const route of ['/model_info']) {
    app.get(route, async (_req, reply) => {
      const h: Record<string, string> = {};
      if (config.workerApiKey !== null) h['authorization'] = `Bearer ${config.workerApiKey}`;
      for (const w of router.workers().filter((x) => x.healthy)) {
        try {
          const r = await request(`${w.url}${route}`, {
            headers: h,
            dispatcher,
            signal: AbortSignal.timeout(config.health.timeoutMs),
          });
          if (r.statusCode !== 200) {
            await r.body.dump();
            continue;
          }
          return reply.send(await r.body.json());
        } catch {
          // next worker
        }
      }
      return sendError(
        reply,
        new GatewayError('TSI_ERR_NO_HEALTHY_WORKER', `no healthy worker answered GET ${route}`),
      );
    });
  }

  const workerJson = (w: Worker): Record<string, unknown> => {
    const now = clock.nowMs();
    const polled = w.polled(now, config.load.staleAfterMs);
    return {
      url: w.url,
      healthy: w.healthy,
      available: w.isAvailable(),
      circuit_breaker: w.breaker.toJSON(),
      inflight_requests: w.inflightRequests,
      inflight_tokens: w.inflightTokens,
      processed: w.processed,
      load:
        polled === null
          ? null
          : {
              age_ms: Math.round(now - w.polledAtMs),
              total_used_tokens: polled.total,
              dp_ranks:
                polled.ranks === null
                  ? null
                  : [...polled.ranks].map(([r, v]) => ({
                      dp_rank: r,
                      used_tokens: v,
                      inflight_tokens: w.rankInflight(r),
                    })),
            },
      last_poll_error: w.lastPollError,
      last_health_error: w.lastHealthError,
    };
  };
  const listWorkers = async () => ({
    policy: config.policy,
    dp_minimum_tokens_scheduler: config.dpMinimumTokensScheduler,
    workers: router.workers().map(workerJson),
  });
  const urlOf = (req: FastifyRequest): string => {
    const q = (req.query ?? {}) as Record<string, unknown>;
    if (typeof q['url'] === 'string') return q['url'];
    const p = parseBody(req).json;
    if (p !== null && typeof p['url'] === 'string') return p['url'];
    throw new GatewayError(
      'TSI_ERR_BAD_REQUEST',
      'give the worker as ?url=<url> or a JSON body {"url": ...}',
      'url',
    );
  };
  const addWorker = async (req: FastifyRequest, reply: FastifyReply) => {
    let out: { worker: Worker; added: boolean };
    try {
      out = router.add(urlOf(req));
    } catch (err) {
      if (err instanceof TsinferError && err.code === 'TSI_ERR_INVALID_CONFIG') {
        throw new GatewayError('TSI_ERR_BAD_REQUEST', err.message, 'url');
      }
      throw err;
    }
    log('info', `worker ${out.worker.url} ${out.added ? 'added' : 'already registered'}`);
    return reply.code(out.added ? 201 : 200).send(workerJson(out.worker));
  };
  const removeWorker = async (req: FastifyRequest, reply: FastifyReply) => {
    const w = router.remove(urlOf(req));
    log('info', `worker ${w.url} removed (${w.inflightRequests} requests still in flight finish there)`);
    return reply.send({ removed: w.url });
  };
  app.get('/workers', listWorkers);
  app.post('/workers', addWorker);
  app.delete('/workers', removeWorker);
  app.get('/list_workers', listWorkers);
  app.post('/add_worker', addWorker);
  app.post('/remove_worker', removeWorker);

  return gw;
}

function hookBreakerLogs(router: Router, log: (level: 'info' | 'warn', msg: string) => void): void {
  const hook = (w: Worker): void => {
    w.breaker.onChange = (from, to) =>
      log(to === 'open' ? 'warn' : 'info', `worker ${w.url}: circuit breaker ${from} -> ${to}`);
  };
  for (const w of router.workers()) hook(w);
  const prev = router.onAdd;
  router.onAdd = (w) => {
    hook(w);
    prev?.(w);
  };
}
