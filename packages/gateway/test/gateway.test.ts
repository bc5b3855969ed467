/**
 * The gateway over real sockets against scripted node:http workers
 * (fake-worker.ts). The clock is manual and backoff sleeps only record, so
 * nothing here waits on a timer.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeWorker } from './fake-worker.js';
import { getJson, postJson, type Reply, readSse, startTestGateway, type TestGateway } from './helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function workers(
  n: number,
  opts: ConstructorParameters<typeof FakeWorker>[0] = {},
): Promise<FakeWorker[]> {
  const ws = await Promise.all(Array.from({ length: n }, () => FakeWorker.start(opts)));
  cleanups.push(async () => {
    await Promise.all(ws.map((w) => w.close()));
  });
  return ws;
}

async function gateway(opts: Parameters<typeof startTestGateway>[0]): Promise<TestGateway> {
  const g = await startTestGateway(opts);
  cleanups.push(() => g.app.close());
  return g;
}

describe('proxying', () => {
  it('forwards a JSON completion and an SSE stream unchanged, counts nothing in flight afterwards', async () => {
    const [w] = await workers(1);
    const g = await gateway({ workerUrls: [w!.url], policy: 'round_robin' });
    const r = await postJson(`${g.url}/v1/completions`, { prompt: 'a b c', max_tokens: 2 });
    expect(r.status).toBe(200);
    expect(r.json.worker).toBe(w!.url);
    const res = await fetch(`${g.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true }),
    });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const events = await readSse(res);
    expect(events.at(-1)).toBe('[DONE]');
    expect(events.slice(0, 3).map((e) => (JSON.parse(e) as Reply).choices?.[0]?.text)).toEqual([
      't0',
      't1',
      't2',
    ]);
    const gw = g.app.gateway.router.get(w!.url)!;
    expect(gw.inflightRequests).toBe(0);
    expect(gw.inflightTokens).toBe(0);
    expect(w!.generationRequests().map((q) => q.path)).toEqual(['/v1/completions', '/v1/chat/completions']);
  });

  it('passes a worker 4xx through without retrying it', async () => {
    const [w] = await workers(1);
    w!.statusQueue.push(400);
    const g = await gateway({ workerUrls: [w!.url] });
    const r = await postJson(`${g.url}/generate`, { text: 'x' });
    expect(r.status).toBe(400);
    expect(r.json.error?.message).toBe('scripted 400');
    expect(w!.generationRequests()).toHaveLength(1);
    expect(g.sleeps).toEqual([]);
  });

  it('answers 503 in OpenAI shape when no worker is registered, and 404 for unknown routes', async () => {
    const g = await gateway({ workerUrls: [] });
    const r = await postJson(`${g.url}/v1/completions`, { prompt: 'x' });
    expect(r.status).toBe(503);
    expect(r.json).toEqual({
      error: {
        message: 'no worker is registered',
        type: 'service_unavailable_error',
        param: null,
        code: 'TSI_ERR_NO_HEALTHY_WORKER',
      },
    });
    const nf = await fetch(`${g.url}/nope`);
    expect(nf.status).toBe(404);
    expect(((await nf.json()) as Reply).error?.code).toBe('TSI_ERR_ROUTE_NOT_FOUND');
  });
});

describe('retries', () => {
  it('retries 503/429 with exponential backoff, then succeeds', async () => {
    const [w] = await workers(1);
    w!.statusQueue.push(503, 429, 502);
    const g = await gateway({ workerUrls: [w!.url], retry: { jitter: 0 } });
    const r = await postJson(`${g.url}/v1/completions`, { prompt: 'x' });
    expect(r.status).toBe(200);
    expect(g.sleeps).toEqual([50, 100, 200]);
    const m = await (await fetch(`${g.url}/metrics`)).text();
    for (const reason of ['503', '429', '502']) {
      expect(m).toContain(`tsinfer_gateway_retries_total{worker="${w!.url}",reason="${reason}"} 1`);
    }
  });

  it('a retry goes to a worker not tried yet', async () => {
    const ws = await workers(3);
    for (const w of ws.slice(0, 2)) w.statusQueue.push(503);
    const g = await gateway({ workerUrls: ws.map((w) => w.url), policy: 'random', seed: 4 });
    const r = await postJson(`${g.url}/v1/completions`, { prompt: 'x' });
    expect(r.status).toBe(200);
    const tried = ws.map((w) => w.generationRequests().length);
    expect(tried.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(3);
    expect(Math.max(...tried)).toBe(1);
  });

  it('when retries run out, the last worker answer reaches the client', async () => {
    const [w] = await workers(1);
    w!.statusQueue.push(503, 503, 503);
    const g = await gateway({ workerUrls: [w!.url], retry: { maxRetries: 2, jitter: 0 } });
    const r = await postJson(`${g.url}/v1/completions`, { prompt: 'x' });
    expect(r.status).toBe(503);
    expect(r.json.error?.message).toBe('scripted 503');
    expect(w!.generationRequests()).toHaveLength(3);
    expect(g.sleeps).toEqual([50, 100]);
  });

  it('a refused connection is retried on a live worker', async () => {
    const ws = await workers(2);
    const dead = ws[0]!;
    await dead.close();
    const g = await gateway({ workerUrls: [dead.url, ws[1]!.url], policy: 'round_robin' });
    for (let i = 0; i < 4; i++) {
      const r = await postJson(`${g.url}/v1/completions`, { prompt: `p${i}` });
      expect(r.status).toBe(200);
      expect(r.json.worker).toBe(ws[1]!.url);
    }
  });

  it('a non-stream body that breaks midway is retried (nothing had reached the client)', async () => {
    const ws = await workers(2);
    ws[0]!.breakBody = true;
    const g = await gateway({ workerUrls: ws.map((w) => w.url), policy: 'round_robin' });
    const r = await postJson(`${g.url}/v1/completions`, { prompt: 'x' });
    expect(r.status).toBe(200);
    expect(r.json.worker).toBe(ws[1]!.url);
  });

  it('a stream that breaks after its first byte ends with an SSE error event and [DONE], not a retry', async () => {
    const ws = await workers(2, { streamChunks: 5 });
    ws[0]!.breakStreamAfter = 2;
    const g = await gateway({ workerUrls: ws.map((w) => w.url), policy: 'round_robin' });
    const res = await fetch(`${g.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'x', stream: true }),
    });
    const events = await readSse(res);
    expect(events.slice(0, 2).map((e) => (JSON.parse(e) as Reply).choices?.[0]?.text)).toEqual(['t0', 't1']);
    const err = JSON.parse(events[2]!) as Reply;
    expect(err.error?.code).toBe('TSI_ERR_UPSTREAM');
    expect(err.error?.message).toContain(ws[0]!.url);
    expect(events[3]).toBe('[DONE]');
    expect(ws[1]!.generationRequests()).toHaveLength(0);
    expect(g.app.gateway.router.get(ws[0]!.url)!.inflightRequests).toBe(0);
  });

  it('with retries disabled a failure is answered at once (502, OpenAI shape)', async () => {
    const ws = await workers(2);
    await ws[0]!.close();
    const g = await gateway({
      workerUrls: ws.map((w) => w.url),
      policy: 'round_robin',
      retry: { enabled: false },
    });
    const r = await postJson(`${g.url}/v1/completions`, { prompt: 'x' });
    expect(r.status).toBe(502);
    expect(r.json.error?.code).toBe('TSI_ERR_UPSTREAM');
    expect(r.json.error?.type).toBe('server_error');
  });
});

describe('timeouts', () => {
  it('a worker that does not answer within the request timeout is aborted upstream: 504', async () => {
    const [w] = await workers(1);
    w!.hold = true;
    const g = await gateway({ workerUrls: [w!.url], requestTimeoutMs: 100 });
    const r = await postJson(`${g.url}/v1/completions`, { prompt: 'x' });
    expect(r.status).toBe(504);
    expect(r.json.error?.code).toBe('TSI_ERR_UPSTREAM_TIMEOUT');
    await w!.requests[0]!.done;
    expect(w!.requests[0]!.aborted).toBe(true);
    expect(g.app.gateway.router.get(w!.url)!.inflightRequests).toBe(0);
  });
});

describe('client disconnects', () => {
  it('abort the upstream request and free the in-flight count', async () => {
    const [w] = await workers(1);
    w!.hold = true;
    const g = await gateway({ workerUrls: [w!.url] });
    const ac = new AbortController();
    const p = postJson(`${g.url}/v1/completions`, { prompt: 'a b' }, ac.signal).catch((e: Error) => e);
    await w!.waitHeld(1);
    expect(g.app.gateway.router.get(w!.url)!.inflightRequests).toBe(1);
    ac.abort();
    expect(await p).toBeInstanceOf(Error);
    await w!.requests[0]!.done;
    expect(w!.requests[0]!.aborted).toBe(true);
    expect(g.app.gateway.router.get(w!.url)!.inflightRequests).toBe(0);
  });
});

describe('circuit breaker', () => {
  it('opens after consecutive failures, moves traffic, then one probe at a time closes it again', async () => {
    const ws = await workers(2);
    const bad = ws[0]!;
    const g = await gateway({
      workerUrls: ws.map((w) => w.url),
      policy: 'round_robin',
      circuitBreaker: { failureThreshold: 3, successThreshold: 2, timeoutMs: 10_000 },
      retry: { maxRetries: 1 },
    });
    const badW = g.app.gateway.router.get(bad.url)!;
    bad.statusQueue.push(500, 500, 500);
    for (let i = 0; i < 6; i++) {
      const r = await postJson(`${g.url}/v1/completions`, { prompt: `q${i}` });
      expect(r.status).toBe(200);
    }
    expect(badW.breaker.state).toBe('open');
    const before = bad.generationRequests().length;
    for (let i = 0; i < 5; i++) await postJson(`${g.url}/v1/completions`, { prompt: `r${i}` });
    expect(bad.generationRequests().length).toBe(before); // open: no traffic
    g.clock.advance(10_000);
    expect(badW.breaker.state).toBe('half_open');
    // One probe at a time: hold the probe; concurrent requests go to the other worker.
    bad.hold = true;
    const probe = postJson(`${g.url}/v1/completions`, { prompt: 'probe' });
    await bad.waitHeld(1);
    const others = await Promise.all(
      Array.from({ length: 4 }, (_, i) => postJson(`${g.url}/v1/completions`, { prompt: `o${i}` })),
    );
    for (const o of others) expect(o.json.worker).toBe(ws[1]!.url);
    expect(bad.heldCount()).toBe(1);
    bad.release();
    expect((await probe).status).toBe(200);
    expect(badW.breaker.state).toBe('half_open');
    // Second successful probe closes it; traffic returns.
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++)
      seen.add((await postJson(`${g.url}/v1/completions`, { prompt: `c${i}` })).json.worker ?? '');
    expect(badW.breaker.state).toBe('closed');
    expect(seen).toEqual(new Set(ws.map((w) => w.url)));
    const m = await (await fetch(`${g.url}/metrics`)).text();
    expect(m).toContain(`tsinfer_gateway_circuit_breaker_state{worker="${bad.url}"} 0`);
    expect(m).toContain(`tsinfer_gateway_circuit_breaker_transitions{worker="${bad.url}"} 3`);
  });

  it('with every breaker open the answer is 503 TSI_ERR_NO_HEALTHY_WORKER', async () => {
    const [w] = await workers(1);
    const g = await gateway({
      workerUrls: [w!.url],
      circuitBreaker: { failureThreshold: 1 },
      retry: { maxRetries: 2, jitter: 0 },
    });
    w!.statusQueue.push(500);
    const r1 = await postJson(`${g.url}/v1/completions`, { prompt: 'x' });
    expect(r1.status).toBe(502);
    const r2 = await postJson(`${g.url}/v1/completions`, { prompt: 'x' });
    expect(r2.status).toBe(503);
    expect(r2.json.error?.code).toBe('TSI_ERR_NO_HEALTHY_WORKER');
  });
});

describe('health checks', () => {
  it('failure threshold marks a worker unhealthy (no traffic), success threshold brings it back', async () => {
    const ws = await workers(2);
    const g = await gateway({
      workerUrls: ws.map((w) => w.url),
      policy: 'round_robin',
      health: { failureThreshold: 2, successThreshold: 2 },
    });
    const hc = g.app.gateway.healthChecker;
    const w0 = g.app.gateway.router.get(ws[0]!.url)!;
    ws[0]!.healthStatus = 503;
    await hc.checkOnce();
    expect(w0.healthy).toBe(true);
    await hc.checkOnce();
    expect(w0.healthy).toBe(false);
    for (let i = 0; i < 4; i++)
      expect((await postJson(`${g.url}/v1/completions`, { prompt: 'x' })).json.worker).toBe(ws[1]!.url);
    ws[0]!.healthStatus = 200;
    await hc.checkOnce();
    expect(w0.healthy).toBe(false);
    await hc.checkOnce();
    expect(w0.healthy).toBe(true);
    const h = await (await fetch(`${g.url}/health`)).json();
    expect(h).toEqual({ status: 'ok', workers: 2, available_workers: 2 });
  });

  it('GET /health is 503 when no worker is available', async () => {
    const [w] = await workers(1);
    const g = await gateway({ workerUrls: [w!.url], health: { failureThreshold: 1 } });
    await w!.close();
    await g.app.gateway.healthChecker.checkOnce();
    const res = await fetch(`${g.url}/health`);
    expect(res.status).toBe(503);
  });
});

describe('load monitor', () => {
  it('reads /metrics, falls back to /v1/loads, and keeps a failed poll from ever counting as zero', async () => {
    const [a, b, c] = await workers(3, { dpSize: 2 });
    b!.metricsStatus = 404; // no /metrics: auto falls back to /v1/loads
    const g = await gateway({ workerUrls: [a!.url, b!.url, c!.url], load: { staleAfterMs: 3000 } });
    a!.baseUsed = [5, 6];
    b!.baseUsed = [7, 8];
    c!.baseUsed = [9, 10];
    const lm = g.app.gateway.loadMonitor;
    await lm.pollOnce();
    const now = g.clock.nowMs();
    const get = (u: string) => g.app.gateway.router.get(u)!;
    expect([...get(a!.url).polled(now, 3000)!.ranks!]).toEqual([
      [0, 5],
      [1, 6],
    ]);
    expect([...get(b!.url).polled(now, 3000)!.ranks!]).toEqual([
      [0, 7],
      [1, 8],
    ]);
    await c!.close();
    g.clock.advance(1000);
    await lm.pollOnce();
    expect(get(c!.url).lastPollError).toBeTruthy();
    expect(get(c!.url).polled(g.clock.nowMs(), 3000)!.total).toBe(19); // last value kept, not 0
    g.clock.advance(2001);
    expect(get(c!.url).knownLoad(g.clock.nowMs(), 3000)).toBeNull(); // aged out: unknown = busy
  });

  it('a worker whose /metrics has no load metric and no /v1/loads is unknown', async () => {
    const [w] = await workers(1, { metricsFlavor: 'none' });
    w!.loadsStatus = 404;
    const g = await gateway({ workerUrls: [w!.url] });
    await g.app.gateway.loadMonitor.pollOnce();
    const gw = g.app.gateway.router.get(w!.url)!;
    expect(gw.polled(g.clock.nowMs(), 1e9)).toBeNull();
    expect(gw.lastPollError).toContain('404');
  });
});

describe('DP-rank minimum tokens', () => {
  it('injects routed_dp_rank of the least-loaded rank and respects a client pin', async () => {
    const [w] = await workers(1, { dpSize: 3 });
    w!.baseUsed = [50, 10, 30];
    const g = await gateway({ workerUrls: [w!.url], dpMinimumTokensScheduler: true });
    await g.app.gateway.loadMonitor.pollOnce();
    await postJson(`${g.url}/v1/completions`, { prompt: 'one two three' });
    await postJson(`${g.url}/v1/completions`, { prompt: 'x', routed_dp_rank: 2 });
    const reqs = w!.generationRequests();
    expect(reqs[0]!.body['routed_dp_rank']).toBe(1);
    expect(reqs[1]!.body['routed_dp_rank']).toBe(2);
    const m = await (await fetch(`${g.url}/metrics`)).text();
    expect(m).toContain(
      `tsinfer_gateway_requests_total{route="/v1/completions",worker="${w!.url}",dp_rank="1",status="200"} 1`,
    );
  });

  it('injects nothing while the load is unknown', async () => {
    const [w] = await workers(1, { dpSize: 2 });
    const g = await gateway({ workerUrls: [w!.url], dpMinimumTokensScheduler: true });
    await postJson(`${g.url}/v1/completions`, { prompt: 'x' });
    expect(w!.generationRequests()[0]!.body).not.toHaveProperty('routed_dp_rank');
  });
});

describe('/v1/models and /workers', () => {
  it('merges the models of the healthy workers', async () => {
    const [a, b] = await workers(2, { model: 'm1' });
    const [c] = await workers(1, { model: 'm2' });
    const g = await gateway({ workerUrls: [a!.url, b!.url, c!.url] });
    const body = await getJson(`${g.url}/v1/models`);
    expect(body.object).toBe('list');
    expect(body.data!.map((m) => m.id).sort()).toEqual(['m1', 'm2']);
    expect(body.data!.find((m) => m.id === 'm1')!.workers.sort()).toEqual([a!.url, b!.url].sort());
  });

  it('lists, adds and removes workers at run time', async () => {
    const [a, b] = await workers(2);
    const g = await gateway({ workerUrls: [a!.url], policy: 'round_robin' });
    const list = async () => (await getJson(`${g.url}/workers`)).workers!.map((w) => w.url);
    expect(await list()).toEqual([a!.url]);
    const add = await fetch(`${g.url}/workers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: `${b!.url}/` }),
    });
    expect(add.status).toBe(201);
    expect(await list()).toEqual([a!.url, b!.url]);
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++)
      seen.add((await postJson(`${g.url}/v1/completions`, { prompt: 'x' })).json.worker ?? '');
    expect(seen).toEqual(new Set([a!.url, b!.url]));
    const del = await fetch(`${g.url}/workers?url=${encodeURIComponent(a!.url)}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect(await list()).toEqual([b!.url]);
    for (let i = 0; i < 3; i++)
      expect((await postJson(`${g.url}/v1/completions`, { prompt: 'x' })).json.worker).toBe(b!.url);
    const again = await fetch(`${g.url}/remove_worker?url=${encodeURIComponent(a!.url)}`, { method: 'POST' });
    expect(again.status).toBe(404);
    expect(((await again.json()) as Reply).error?.code).toBe('TSI_ERR_WORKER_NOT_FOUND');
    const bad = await fetch(`${g.url}/add_worker?url=ftp://x`, { method: 'POST' });
    expect(bad.status).toBe(400);
  });
});
