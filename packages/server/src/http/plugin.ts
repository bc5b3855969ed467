/**
 * tsinfer's routes as a fastify plugin, for tsinfer's own server and for an
 * existing fastify app that mounts them next to its own routes:
 *
 *   const engine = await createEngine({ modelPath: 'sim:tiny-cpu' });
 *   const tsinfer = new TsinferHttp({ engine });
 *   await app.register(tsinfer.plugin, { prefix: '/llm' });
 *   ...
 *   tsinfer.beginDrain(); await engine.shutdown();
 *
 * Everything it sets (TypeBox validation, the OpenAI error shape, API-key
 * auth, the 404 handler) is encapsulated: the app's own routes keep their
 * own validation and error handling.
 */
import { timingSafeEqual } from 'node:crypto';
import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { sendError } from './choices.js';
import { HttpError } from './errors.js';
import { ServerMetrics } from './metrics.js';
import { registerNativeRoutes } from './native.js';
import { registerOpenAIRoutes } from './openai.js';
import { type HttpOptions, HttpState } from './state.js';

/** Paths that never need the API key (probes and scrapes), as in SGLang. */
const OPEN_PATHS = new Set(['/health', '/health_generate', '/metrics']);

function keyMatches(expected: Buffer, given: string): boolean {
  const g = Buffer.from(given);
  return g.length === expected.length && timingSafeEqual(g, expected);
}

function presentedKey(req: FastifyRequest): string | null {
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m !== null) return m[1]!.trim();
  }
  const x = req.headers['x-api-key'];
  return typeof x === 'string' ? x : null;
}

export interface TsinferPluginOptions {
  /** Answer unknown paths under the plugin's prefix with OpenAI-shaped 404s (default true). */
  notFoundHandler?: boolean;
}

/** The HTTP layer of one engine: routes, state (admission, draining) and metrics. */
export class TsinferHttp {
  readonly state: HttpState;
  readonly metrics: ServerMetrics;
  readonly plugin: FastifyPluginAsync<TsinferPluginOptions>;

  constructor(options: HttpOptions) {
    this.metrics = new ServerMetrics(options.engine);
    this.state = new HttpState(options, this.metrics);
    const state = this.state;
    const key = state.apiKey === null ? null : Buffer.from(state.apiKey);
    this.plugin = async (app: FastifyInstance, opts: TsinferPluginOptions) => {
      app.setValidatorCompiler(TypeBoxValidatorCompiler);
      app.setErrorHandler((err, _req, reply) => {
        if (reply.raw.headersSent) {
          reply.raw.destroy();
          return;
        }
        if (!(err instanceof HttpError) && (err as { statusCode?: number }).statusCode === undefined) {
          _req.log.error({ err }, 'unexpected error');
        }
        return sendError(state, reply, err);
      });
      if (opts.notFoundHandler !== false) {
        app.setNotFoundHandler((req, reply) =>
          sendError(
            state,
            reply,
            new HttpError(
              'TSI_ERR_ROUTE_NOT_FOUND',
              `Route ${req.method} ${req.url.split('?')[0]} not found`,
            ),
          ),
        );
      }
      app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
        if (key === null) return;
        const path = req.routeOptions.url ?? req.url.split('?')[0] ?? '';
        const prefix = app.prefix;
        const local = prefix !== '' && path.startsWith(prefix) ? path.slice(prefix.length) || '/' : path;
        if (OPEN_PATHS.has(local)) return;
        const given = presentedKey(req);
        if (given === null || !keyMatches(key, given)) {
          return sendError(
            state,
            reply.header('www-authenticate', 'Bearer'),
            new HttpError(
              'TSI_ERR_UNAUTHORIZED',
              given === null
                ? 'Missing API key: send Authorization: Bearer <key>'
                : 'Incorrect API key provided',
            ),
          );
        }
      });
      app.addHook('onResponse', async (req, reply) => {
        state.metrics.httpRequests.inc({
          method: req.method,
          route: req.routeOptions.url ?? 'unmatched',
          status_code: String(reply.statusCode),
        });
      });
      registerOpenAIRoutes(app, state);
      registerNativeRoutes(app, state);
    };
  }

  /** Refuses new generations (503 TSI_ERR_SHUTTING_DOWN, /health 503); in-flight ones go on. */
  beginDrain(): void {
    this.state.beginDrain();
  }

  /** Resolves when no generation is in flight. */
  idle(): Promise<void> {
    return this.state.idle();
  }
}
