/**
 * A small HTTP client on node:http / node:https with keep-alive agents. No
 * headers timeout (a server may hold the first byte while it queues); one
 * total timeout per request, like aiohttp's `ClientTimeout(total=6 h)`.
 */
import http from 'node:http';
import https from 'node:https';

export interface HttpResponse {
  status: number;
  statusMessage: string;
  body: AsyncIterable<Buffer>;
}

export interface HttpClientOptions {
  /** Headers sent with every request (auth, `--header`). */
  headers?: Record<string, string>;
  /** Total time allowed per request (default 6 h). */
  timeoutMs?: number;
}

export const DEFAULT_TIMEOUT_MS = 6 * 60 * 60 * 1000;

export class HttpClient {
  readonly #httpAgent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  readonly #httpsAgent = new https.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;

  constructor(options: HttpClientOptions = {}) {
    this.#headers = options.headers ?? {};
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * Sends a request and resolves when the status line and headers arrive;
   * the body is read by iterating `body`. The total timeout covers the body.
   */
  request(
    method: 'GET' | 'POST',
    url: string,
    options: { json?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<HttpResponse> {
    const u = new URL(url);
    const isHttps = u.protocol === 'https:';
    const mod = isHttps ? https : http;
    const body = options.json === undefined ? undefined : Buffer.from(JSON.stringify(options.json));
    const headers: Record<string, string> = { ...this.#headers, ...options.headers };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(body.length);
    }
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    return new Promise<HttpResponse>((resolve, reject) => {
      const req = mod.request(
        u,
        { method, headers, agent: isHttps ? this.#httpsAgent : this.#httpAgent },
        (res) => {
          resolve({
            status: res.statusCode ?? 0,
            statusMessage: res.statusMessage ?? '',
            body: (async function* () {
              try {
                for await (const chunk of res) yield chunk as Buffer;
              } finally {
                clearTimeout(timer);
              }
              if (!res.complete) throw new Error('the response ended before it was complete');
            })(),
          });
        },
      );
      const timer = setTimeout(() => {
        req.destroy(new Error(`request timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      if (body !== undefined) req.end(body);
      else req.end();
    });
  }

  /** GET (or POST) and read the whole body as text. */
  async text(
    method: 'GET' | 'POST',
    url: string,
    options: { json?: unknown; timeoutMs?: number } = {},
  ): Promise<{ status: number; statusMessage: string; text: string }> {
    const res = await this.request(method, url, options);
    const parts: Buffer[] = [];
    for await (const c of res.body) parts.push(c);
    return {
      status: res.status,
      statusMessage: res.statusMessage,
      text: Buffer.concat(parts).toString('utf8'),
    };
  }

  /** GET a JSON document; `json` is null when the status is not 200 or the body is not JSON. */
  async getJson(url: string, timeoutMs?: number): Promise<{ status: number; json: unknown; text: string }> {
    const r = await this.text('GET', url, timeoutMs === undefined ? {} : { timeoutMs });
    let json: unknown = null;
    if (r.status === 200) {
      try {
        json = JSON.parse(r.text);
      } catch {
        json = null;
      }
    }
    return { status: r.status, json, text: r.text };
  }

  close(): void {
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }
}
