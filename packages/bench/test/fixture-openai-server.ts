/**
 * TEST FIXTURE — this is NOT the tsinfer server. A small node:http server
 * that speaks just enough of the OpenAI streaming protocol
 * (`/v1/completions`, `/v1/chat/completions`), SGLang's native `/generate`
 * and `/v1/loads` to exercise the bench client over real sockets. Every
 * request streams exactly `max_tokens` tokens ("t0 ", "t1 ", ...), one SSE
 * event per token (two per event on /generate), `tokenDelayMs` apart.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FixtureOptions {
  tokenDelayMs?: number;
  /** 0-based request numbers (counting every POST, warm-up included) answered with HTTP 500. */
  fail?: (n: number) => boolean;
  modelId?: string;
}

export interface Fixture {
  url: string;
  port: number;
  stats: {
    posts: number;
    inFlight: number;
    maxInFlight: number;
    bodies: Array<Record<string, unknown>>;
    loadsGets: number;
  };
  close(): Promise<void>;
}

const wait = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function startFixture(o: FixtureOptions = {}): Promise<Fixture> {
  const delay = o.tokenDelayMs ?? 0;
  const stats: Fixture['stats'] = { posts: 0, inFlight: 0, maxInFlight: 0, bodies: [], loadsGets: 0 };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET') {
      if (url.pathname === '/v1/models')
        return json(res, 200, { object: 'list', data: [{ id: o.modelId ?? 'fixture-model' }] });
      if (url.pathname === '/server_info') return json(res, 200, { fixture: true, internal_states: [{}] });
      if (url.pathname === '/v1/loads') {
        stats.loadsGets++;
        return json(res, 200, {
          timestamp: new Date().toISOString(),
          loads: [0, 1].map((r) => ({
            dp_rank: r,
            num_running_reqs: r === 0 ? Math.ceil(stats.inFlight / 2) : Math.floor(stats.inFlight / 2),
            num_waiting_reqs: 0,
            num_used_tokens: 10 * stats.inFlight,
            num_total_tokens: 10 * stats.inFlight,
            token_usage: 0.01,
          })),
        });
      }
      return json(res, 404, { error: 'not found' });
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    const n = stats.posts++;
    stats.bodies.push(body);
    if (o.fail?.(n)) return json(res, 500, { error: { message: `fixture failure #${n}` } });
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    try {
      const path = url.pathname;
      const sp = (body['sampling_params'] ?? {}) as Record<string, unknown>;
      const count = Number(body['max_tokens'] ?? body['max_completion_tokens'] ?? sp['max_new_tokens']);
      const stream = body['stream'] !== false;
      const toks = Array.from({ length: count }, (_, i) => `t${i} `);
      if (!stream) {
        await wait(delay * count);
        const text = toks.join('');
        if (path === '/generate')
          return json(res, 200, { text, meta_info: { completion_tokens: count, prompt_tokens: 3 } });
        if (path === '/v1/completions')
          return json(res, 200, {
            choices: [{ text }],
            usage: { prompt_tokens: 3, completion_tokens: count },
          });
        return json(res, 200, {
          choices: [{ message: { role: 'assistant', content: text } }],
          usage: { prompt_tokens: 3, completion_tokens: count },
        });
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const send = (e: unknown) => res.write(`data: ${JSON.stringify(e)}\n\n`);
      if (path === '/generate') {
        let text = '';
        for (let i = 0; i < count; i += 2) {
          await wait(delay);
          const k = Math.min(count, i + 2);
          text += toks.slice(i, k).join('');
          send({ text, meta_info: { completion_tokens: k, prompt_tokens: 3 } });
        }
      } else if (path === '/v1/completions') {
        for (let i = 0; i < count; i++) {
          await wait(delay);
          const last = i === count - 1;
          send({
            choices: [{ index: 0, text: toks[i] }],
            ...(last ? { usage: { prompt_tokens: 3, completion_tokens: count } } : {}),
          });
        }
      } else {
        send({ choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] });
        for (let i = 0; i < count; i++) {
          await wait(delay);
          send({ choices: [{ index: 0, delta: { content: toks[i] } }] });
        }
        const so = body['stream_options'] as Record<string, unknown> | undefined;
        if (so?.['include_usage'])
          send({ choices: [], usage: { prompt_tokens: 3, completion_tokens: count } });
      }
      res.end('data: [DONE]\n\n');
    } finally {
      stats.inFlight--;
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stats,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const b = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
  res.end(b);
}
