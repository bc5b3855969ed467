/**
 * tsinfer's own HTTP server: a fastify instance with the tsinfer routes at
 * the root, pino logging, and a drain-then-close shutdown:
 *
 * 1. stop accepting (new generations get 503 TSI_ERR_SHUTTING_DOWN, the
 *    listening socket closes, idle keep-alive connections are closed);
 * 2. in-flight requests finish for up to `timeoutMs`; the engine then aborts
 *    the rest, whose streams end with a TSI_ERR_SHUTTING_DOWN error event;
 * 3. the engine stops its ranks.
 */
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import { TsinferHttp } from './plugin.js';
import type { HttpOptions } from './state.js';

export interface ServerOptions extends HttpOptions {
  /** pino level (`--log-level`), default 'info'; 'silent' disables logging. */
  logLevel?: string | undefined;
  /** Log every request/response (`--log-requests`). */
  logRequests?: boolean | undefined;
  /** `--body-limit` in bytes (default 32 MiB). */
  bodyLimit?: number | undefined;
}

export interface TsinferServer {
  readonly app: FastifyInstance;
  readonly http: TsinferHttp;
  /** Starts listening; resolves with the base URL. */
  listen(options: { host: string; port: number }): Promise<string>;
  /** Drains and closes: see the module comment. Idempotent. */
  shutdown(options?: { timeoutMs?: number }): Promise<void>;
}

export async function createServer(options: ServerOptions): Promise<TsinferServer> {
  const level = options.logLevel ?? 'info';
  const app = Fastify({
    logger: level === 'silent' ? false : { level },
    logController: new LogController({ disableRequestLogging: options.logRequests !== true }),
    bodyLimit: options.bodyLimit ?? 32 * 1024 * 1024,
    forceCloseConnections: 'idle',
    return503OnClosing: false,
    keepAliveTimeout: 65_000,
  });
  const http = new TsinferHttp(options);
  await app.register(http.plugin);
  let closing: Promise<void> | null = null;
  return {
    app,
    http,
    async listen({ host, port }) {
      const address = await app.listen({ host, port });
      return address;
    },
    shutdown({ timeoutMs = 30_000 } = {}) {
      closing ??= (async () => {
        http.beginDrain();
        // app.close() stops listening at once and resolves when every
        // connection has ended; engine.shutdown lets in-flight requests
        // finish for timeoutMs, then aborts the rest (their streams end).
        const closed = app.close();
        await options.engine.shutdown({ timeoutMs });
        await http.idle();
        // Keep-alive connections whose last response has ended are idle:
        // close them as they become so (a client may hold one open for
        // keepAliveTimeout); after a short grace, close whatever is left.
        const server = app.server;
        const sweep = setInterval(() => server.closeIdleConnections(), 20);
        let grace: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([closed, new Promise<void>((r) => (grace = setTimeout(r, 2000)))]);
        clearInterval(sweep);
        clearTimeout(grace);
        server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}
