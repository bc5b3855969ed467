/**
 * A small node:http worker for gateway tests and the benchmark. It speaks
 * just enough of a tsinfer/SGLang server: POST /v1/completions,
 * /v1/chat/completions and /generate (JSON or SSE), GET /health,
 * /v1/models, /metrics (per-rank used tokens named `tsinfer_*` or SGLang's
 * `sglang:*`) and /v1/loads. Its used tokens per DP rank are the prompt
 * tokens (words) of the requests it holds on that rank (`routed_dp_rank`,
 * else rank 0) plus a settable base, like KV held by a real server.
 *
 * Behaviour is scriptable per test: a status queue, hold-until-released,
 * breaking a stream midway, health status.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRequest {
  readonly path: string;
  readonly body: Record<string, unknown>;
  readonly headers: IncomingMessage['headers'];
  /** Set when the client (the gateway) went away before the response ended. */
  aborted: boolean;
  /** Resolves when the request was answered or aborted. */
  readonly done: Promise<void>;
}

export interface FakeWorkerOptions {
  /** DP ranks reported (default 1). */
  dpSize?: number;
  /** `tsinfer` (default), `sglang` (sglang:num_used_tokens), or `none` (no load metric in /metrics). */
  metricsFlavor?: 'tsinfer' | 'sglang' | 'none';
  /** Model id of /v1/models (default 'fake'). */
  model?: string;
  /** Chunks of an SSE response (default 3). */
  streamChunks?: number;
}

export class FakeWorker {
  readonly server: Server;
  url = '';
  readonly requests: FakeRequest[] = [];
  /** Statuses to answer next generation requests with, consumed in order (then 200). */
  readonly statusQueue: number[] = [];
  /** While true, generation requests are held until `release()`. */
  hold = false;
  /** Break streamed responses after this many chunks (null: never). */
  breakStreamAfter: number | null = null;
  /** Destroy the socket of non-stream responses after the head (null/false: never). */
  breakBody = false;
  healthStatus = 200;
  metricsStatus = 200;
  loadsStatus = 200;
  baseUsed: number[];
  readonly options: Required<FakeWorkerOptions>;
  readonly #held = new Map<number, number>();
  #waiters: Array<() => void> = [];
  #releaseWaiters: Array<() => void> = [];

  constructor(options: FakeWorkerOptions = {}) {
    this.options = {
      dpSize: options.dpSize ?? 1,
      metricsFlavor: options.metricsFlavor ?? 'tsinfer',
      model: options.model ?? 'fake',
      streamChunks: options.streamChunks ?? 3,
    };
    this.baseUsed = Array.from({ length: this.options.dpSize }, () => 0);
    this.server = createServer((req, res) => void this.#handle(req, res));
    this.server.keepAliveTimeout = 60_000;
  }

  static async start(options: FakeWorkerOptions = {}): Promise<FakeWorker> {
    const w = new FakeWorker(options);
    await w.listen(0);
    return w;
  }

  async listen(port: number): Promise<void> {
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Used tokens per rank now (base + held prompt words). */
  used(): number[] {
    return this.baseUsed.map((b, r) => b + (this.#held.get(r) ?? 0));
  }

  generationRequests(): FakeRequest[] {
    return this.requests.filter((r) => r.path !== '/health' && !r.path.startsWith('/v1/models'));
  }

  /** Resolves once `n` generation requests are being held. */
  async waitHeld(n: number): Promise<void> {
    while (this.#releaseWaiters.length < n) await new Promise<void>((r) => this.#waiters.push(r));
  }

  heldCount(): number {
    return this.#releaseWaiters.length;
  }

  /** Lets every held request go on. */
  release(): void {
    this.hold = false;
    const w = this.#releaseWaiters;
    this.#releaseWaiters = [];
    for (const f of w) f();
  }

  async close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    if (this.server.listening) await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** Kills the server abruptly: every open connection is reset. */
  kill(): void {
    this.release();
    this.server.close();
    this.server.closeAllConnections();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'GET') return this.#get(path, req, res);
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"message":"bad json"}}');
      return;
    }
    let resolveDone!: () => void;
    const fr: FakeRequest = {
      path,
      body,
      headers: req.headers,
      aborted: false,
      done: new Promise<void>((r) => {
        resolveDone = r;
      }),
    };
    this.requests.push(fr);
    res.on('close', () => {
      if (!res.writableFinished) fr.aborted = true;
      resolveDone();
    });
    const status = this.statusQueue.shift() ?? 200;
    if (status !== 200) {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: { message: `scripted ${status}`, type: 'server_error', param: null, code: 'FAKE' },
        }),
      );
      return;
    }
    const rank = typeof body['routed_dp_rank'] === 'number' ? (body['routed_dp_rank'] as number) : 0;
    const words = promptWords(body);
    this.#held.set(rank, (this.#held.get(rank) ?? 0) + words);
    try {
      if (this.hold) {
        await new Promise<void>((r) => {
          this.#releaseWaiters.push(r);
          for (const w of this.#waiters.splice(0)) w();
        });
      }
      if (res.destroyed) return;
      if (body['stream'] === true) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        for (let i = 0; i < this.options.streamChunks; i++) {
          if (this.breakStreamAfter !== null && i >= this.breakStreamAfter) {
            res.socket?.destroy();
            return;
          }
          res.write(
            `data: ${JSON.stringify({ choices: [{ text: `t${i}`, index: 0, finish_reason: null }], worker: this.url })}\n\n`,
          );
          await new Promise((r) => setImmediate(r));
        }
        res.end('data: [DONE]\n\n');
        return;
      }
      const payload = JSON.stringify({
        id: `cmpl-${this.requests.length}`,
        object: 'text_completion',
        worker: this.url,
        dp_rank: rank,
        choices: [{ index: 0, text: 'ok', finish_reason: 'length' }],
      });
      if (this.breakBody) {
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': String(payload.length + 100),
        });
        res.write(payload.slice(0, 10));
        await new Promise((r) => setImmediate(r));
        res.socket?.destroy();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(payload);
    } finally {
      this.#held.set(rank, (this.#held.get(rank) ?? 0) - words);
    }
  }

  #get(path: string, req: IncomingMessage, res: ServerResponse): void {
    if (path === '/health') {
      this.requests.push({ path, body: {}, headers: req.headers, aborted: false, done: Promise.resolve() });
      res.writeHead(this.healthStatus, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    if (path === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          object: 'list',
          data: [{ id: this.options.model, object: 'model', owned_by: 'fake' }],
        }),
      );
      return;
    }
    if (path === '/metrics') {
      if (this.metricsStatus !== 200) {
        res.writeHead(this.metricsStatus).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(this.metricsText());
      return;
    }
    if (path === '/v1/loads') {
      if (this.loadsStatus !== 200) {
        res.writeHead(this.loadsStatus).end();
        return;
      }
      const loads = this.used().map((u, r) => ({ dp_rank: r, num_used_tokens: u, num_running_reqs: 0 }));
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ timestamp: new Date().toISOString(), loads }));
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
  }

  metricsText(): string {
    const used = this.used();
    const f = this.options.metricsFlavor;
    const lines: string[] = [
      '# HELP process_cpu_seconds_total cpu',
      '# TYPE process_cpu_seconds_total counter',
      'process_cpu_seconds_total 1.5',
    ];
    if (f === 'tsinfer') {
      lines.push(
        '# HELP tsinfer_num_used_tokens KV tokens in use on each DP rank.',
        '# TYPE tsinfer_num_used_tokens gauge',
      );
      for (const [r, u] of used.entries()) lines.push(`tsinfer_num_used_tokens{dp_rank="${r}"} ${u}`);
    } else if (f === 'sglang') {
      lines.push(
        '# HELP sglang:num_used_tokens The number of used tokens.',
        '# TYPE sglang:num_used_tokens gauge',
      );
      used.forEach((u, r) => {
        // Two TP ranks of one DP group report the same value (enable-metrics-for-all-schedulers).
        for (const tp of [0, 1]) {
          lines.push(
            `sglang:num_used_tokens{dp_rank="${r}",engine_type="unified",model_name="${this.options.model}",moe_ep_rank="0",pp_rank="0",tp_rank="${tp}"} ${u.toFixed(1)}`,
          );
        }
      });
      lines.push(
        '# TYPE sglang:num_running_reqs gauge',
        'sglang:num_running_reqs{dp_rank="0",tp_rank="0"} 0.0',
      );
    }
    return `${lines.join('\n')}\n`;
  }
}

/** Whitespace-separated words of a request's prompt (the fake's "tokens"). */
export function promptWords(body: Record<string, unknown>): number {
  const p = body['prompt'] ?? body['text'];
  if (typeof p === 'string') return p.split(/\s+/).filter((w) => w !== '').length;
  if (Array.isArray(body['messages'])) {
    return (body['messages'] as Array<{ content?: unknown }>)
      .map((m) => (typeof m.content === 'string' ? m.content.split(/\s+/).filter((w) => w !== '').length : 0))
      .reduce((a, b) => a + b, 0);
  }
  return 1;
}
