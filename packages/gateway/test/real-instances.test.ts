/**
 * The gateway in front of three real `tsinfer serve` instances on the
 * simulated runner (sim:tiny-cpu): A and B with --dp-size 2, C with one
 * rank. Real processes, real sockets, the system clock.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type GatewayApp, type GatewayOptions } from '../src/gateway.js';
import { getJson, type Reply, readSse } from './helpers.js';
import { restartServe, type ServeInstance, startServe } from './serve-process.js';

let A: ServeInstance;
let B: ServeInstance;
let C: ServeInstance;
const gateways: GatewayApp[] = [];

beforeAll(async () => {
  [A, B, C] = await Promise.all([
    startServe(['--dp-size', '2']),
    startServe(['--dp-size', '2']),
    startServe([]),
  ]);
}, 120_000);

afterAll(async () => {
  for (const g of gateways) await g.close();
  await Promise.all([A, B, C].filter((x) => x !== undefined).map((x) => x.kill()));
});

async function gateway(opts: GatewayOptions): Promise<{ g: GatewayApp; url: string }> {
  const g = await createGateway({ logLevel: 'silent', background: false, ...opts });
  gateways.push(g);
  const url = await g.listen({ host: '127.0.0.1', port: 0 });
  return { g, url };
}

function words(n: number, tag: string): string {
  return Array.from({ length: n }, (_, i) => `${tag}${i}`).join(' ');
}

async function complete(
  url: string,
  body: Record<string, unknown>,
): Promise<{ status: number; json: Reply }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Reply };
}

function processed(g: GatewayApp): Record<string, number> {
  return Object.fromEntries(g.gateway.router.workers().map((w) => [w.url, w.processed]));
}

describe('policies over three tsinfer serve instances', () => {
  it("GET /model_info answers with a worker's model facts (what bench reads to count tokens like the server)", async () => {
    const { url } = await gateway({ workerUrls: [A.url, B.url, C.url], policy: 'round_robin' });
    const [viaGateway, direct] = await Promise.all([
      fetch(`${url}/model_info`).then(async (r) => ({ status: r.status, body: await r.json() })),
      fetch(`${A.url}/model_info`).then((r) => r.json()),
    ]);
    expect(viaGateway.status).toBe(200);
    expect(viaGateway.body).toEqual(direct);
  }, 60_000);

  it('round_robin: 30 requests, exactly 10 per instance', async () => {
    const { g, url } = await gateway({ workerUrls: [A.url, B.url, C.url], policy: 'round_robin' });
    for (let i = 0; i < 30; i++)
      expect((await complete(url, { prompt: `hi ${i}`, max_tokens: 3 })).status).toBe(200);
    expect(processed(g)).toEqual({ [A.url]: 10, [B.url]: 10, [C.url]: 10 });
  }, 60_000);

  it('random: 90 requests spread over all instances (seeded)', async () => {
    const { g, url } = await gateway({ workerUrls: [A.url, B.url, C.url], policy: 'random', seed: 1 });
    for (let i = 0; i < 90; i++)
      expect((await complete(url, { prompt: `hi ${i}`, max_tokens: 2 })).status).toBe(200);
    const p = Object.values(processed(g));
    expect(p.reduce((a, b) => a + b, 0)).toBe(90);
    for (const n of p) expect(n).toBeGreaterThanOrEqual(18);
  }, 60_000);

  it('power_of_two: a loaded instance gets nothing while its polled load is higher', async () => {
    const { g, url } = await gateway({ workerUrls: [A.url, B.url, C.url], policy: 'power_of_two', seed: 3 });
    // Load A directly with long requests, then poll.
    const ac = new AbortController();
    const long = Array.from({ length: 4 }, (_, i) =>
      fetch(`${A.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          prompt: words(80, `L${i}`),
          max_tokens: 1400,
          ignore_eos: true,
          stream: true,
        }),
        signal: ac.signal,
      })
        .then((r) => r.text())
        .catch(() => ''),
    );
    const lm = g.gateway.loadMonitor;
    const aw = g.gateway.router.get(A.url)!;
    const t0 = Date.now();
    while (Date.now() - t0 < 10_000) {
      await lm.pollOnce();
      if ((aw.polled(Date.now(), 5000)?.total ?? 0) > 500) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(aw.polled(Date.now(), 5000)!.total).toBeGreaterThan(500);
    expect(aw.polled(Date.now(), 5000)!.ranks!.size).toBe(2);
    const before = processed(g);
    for (let i = 0; i < 20; i++)
      expect((await complete(url, { prompt: `p ${i}`, max_tokens: 2 })).status).toBe(200);
    const after = processed(g);
    expect(after[A.url]! - before[A.url]!).toBe(0);
    expect(after[B.url]! - before[B.url]! + after[C.url]! - before[C.url]!).toBe(20);
    ac.abort();
    await Promise.all(long);
  }, 60_000);

  it('cache_aware: each shared prefix sticks to one instance, distinct prefixes spread', async () => {
    const { url, g } = await gateway({ workerUrls: [A.url, B.url, C.url], policy: 'cache_aware' });
    const owner: string[] = [];
    for (const tag of ['alpha', 'beta', 'gamma']) {
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) {
        const before = processed(g);
        expect(
          (await complete(url, { prompt: `${words(40, tag)} question ${i}`, max_tokens: 2 })).status,
        ).toBe(200);
        const after = processed(g);
        for (const u of Object.keys(after)) if (after[u] !== before[u]) seen.add(u);
      }
      expect(seen.size).toBe(1);
      owner.push([...seen][0]!);
    }
    expect(new Set(owner).size).toBe(3);
  }, 60_000);
});

describe('DP-rank minimum tokens over tsinfer serve --dp-size 2', () => {
  const aborted = async (s: ServeInstance): Promise<number> => {
    const m = await (await fetch(`${s.url}/metrics`)).text();
    return [...m.matchAll(/^tsinfer_num_aborted_requests_total\{[^}]*\} (\d+)/gm)].reduce(
      (a, x) => a + Number(x[1]),
      0,
    );
  };

  it('a burst keeps per-rank in-flight tokens within one request estimate of each other; client aborts reach the servers', async () => {
    const { g, url } = await gateway({
      workerUrls: [A.url, B.url],
      policy: 'round_robin',
      dpMinimumTokensScheduler: true,
    });
    await g.gateway.loadMonitor.pollOnce(); // idle: every rank 0 used tokens
    const ws = [A.url, B.url].map((u) => g.gateway.router.get(u)!);
    for (const w of ws) expect([...w.polled(Date.now(), 5000)!.ranks!.keys()]).toEqual([0, 1]);
    const abortedBefore = await Promise.all([A, B].map(aborted));
    // Non-stream: the whole burst is dispatched long before the first request
    // finishes (an SSE burst of 24 x 1500 events slows dispatch on 2 cores).
    const N = 24;
    const lengths = Array.from({ length: N }, (_, i) => 3 + ((i * 37) % 70));
    const ac = new AbortController();
    const streams = lengths.map((n, i) =>
      fetch(`${url}/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          text: words(n, `b${i}_`),
          sampling_params: { max_new_tokens: 1500, ignore_eos: true },
        }),
        signal: ac.signal,
      })
        .then((r) => r.text())
        .catch(() => 'aborted'),
    );
    const t0 = Date.now();
    while (ws.reduce((s, w) => s + w.inflightRequests, 0) < N && Date.now() - t0 < 20_000) {
      await new Promise((r) => setImmediate(r));
    }
    expect(ws.reduce((s, w) => s + w.inflightRequests, 0)).toBe(N);
    const r = ws.map((w) => [w.rankInflight(0), w.rankInflight(1)] as const);
    ac.abort();
    const maxEstimate = Math.max(...lengths.map((n) => Math.ceil(n * 1.3)));
    for (const [r0, r1] of r) {
      expect(r0).toBeGreaterThan(0);
      expect(r1).toBeGreaterThan(0);
      expect(Math.abs(r0 - r1)).toBeLessThanOrEqual(maxEstimate);
    }
    expect(r.flat().reduce((a, b) => a + b, 0)).toBe(lengths.reduce((a, n) => a + Math.ceil(n * 1.3), 0));
    await Promise.all(streams);
    const t1 = Date.now();
    while (ws.some((w) => w.inflightRequests > 0) && Date.now() - t1 < 10_000)
      await new Promise((r) => setTimeout(r, 10));
    for (const w of ws) {
      expect(w.inflightRequests).toBe(0);
      expect(w.rankInflightEntries()).toEqual([]);
    }
    // The client aborts were passed upstream: both servers aborted requests and drained.
    for (const [k, s] of [A, B].entries()) {
      let n = -1;
      while (Date.now() - t1 < 10_000) {
        const info = await getJson(`${s.url}/server_info`);
        n = info.engine_inflight_requests ?? -1;
        if (n === 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(n).toBe(0);
      expect(await aborted(s)).toBeGreaterThan(abortedBefore[k]!);
    }
  }, 90_000);

  it('the servers run each request on the rank the gateway injected', async () => {
    const { g, url } = await gateway({
      workerUrls: [A.url, B.url],
      policy: 'round_robin',
      dpMinimumTokensScheduler: true,
    });
    await g.gateway.loadMonitor.pollOnce();
    const res = await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const r = await fetch(`${url}/generate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            text: words(5 + i * 3, 'g'),
            sampling_params: { max_new_tokens: 200, ignore_eos: true },
          }),
        });
        return ((await r.json()) as Reply).meta_info!.dp_rank;
      }),
    );
    const m = await (await fetch(`${url}/metrics`)).text();
    const injected = [0, 1].map((rank) =>
      [
        ...m.matchAll(
          new RegExp(
            `^tsinfer_gateway_requests_total\\{route="/generate",worker="[^"]+",dp_rank="${rank}",status="200"\\} (\\d+)`,
            'gm',
          ),
        ),
      ].reduce((a, x) => a + Number(x[1]), 0),
    );
    expect(injected[0]! + injected[1]!).toBe(16);
    expect(injected[0]).toBeGreaterThan(0);
    expect(injected[1]).toBeGreaterThan(0);
    expect([res.filter((d) => d === 0).length, res.filter((d) => d === 1).length]).toEqual(injected);
  }, 60_000);
});

describe('an instance dies mid-run', () => {
  it('loses no request, moves traffic to the others, opens its breaker, and recovers when it is back', async () => {
    const { g, url } = await gateway({
      workerUrls: [A.url, B.url, C.url],
      policy: 'round_robin',
      background: true,
      health: { intervalMs: 200, timeoutMs: 1000, failureThreshold: 2, successThreshold: 2 },
      circuitBreaker: { failureThreshold: 3, successThreshold: 2, timeoutMs: 1000 },
      retry: { maxRetries: 4, initialBackoffMs: 20 },
      load: { intervalMs: 200, staleAfterMs: 1000 },
    });
    type Outcome = 'ok' | 'clear-error' | 'unclear' | 'hung';
    const one = async (i: number): Promise<Outcome> => {
      const stream = i % 2 === 0;
      const body = { prompt: `req ${i} ${words(10, 'k')}`, max_tokens: 300, ignore_eos: true, stream };
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), 30_000);
      try {
        const res = await fetch(`${url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: ac.signal,
        });
        if (!stream) {
          const j = (await res.json()) as Reply;
          if (res.status === 200 && j.choices?.[0]?.finish_reason === 'length') return 'ok';
          return res.status >= 400 && typeof j.error?.code === 'string' ? 'clear-error' : 'unclear';
        }
        const events = await readSse(res);
        const last = events.at(-1);
        const errs = events.filter((e) => e !== '[DONE]' && (JSON.parse(e) as Reply).error !== undefined);
        if (res.status === 200 && last === '[DONE]' && errs.length === 0) return 'ok';
        if (errs.length > 0 && typeof (JSON.parse(errs[0]!) as Reply).error?.code === 'string')
          return 'clear-error';
        return 'unclear';
      } catch {
        return ac.signal.aborted ? 'hung' : 'unclear';
      } finally {
        clearTimeout(timer);
      }
    };
    const outcomes: Outcome[] = [];
    let next = 0;
    let killed = false;
    let inflightAtKill = -1;
    const total = 60;
    const runner = async (): Promise<void> => {
      while (next < total) {
        const i = next++;
        if (i === 18 && !killed) {
          killed = true;
          inflightAtKill = g.gateway.router.get(C.url)!.inflightRequests;
          await C.kill();
        }
        outcomes.push(await one(i));
      }
    };
    await Promise.all(Array.from({ length: 9 }, runner));
    expect(outcomes).toHaveLength(total);
    expect(inflightAtKill).toBeGreaterThan(0); // C died with requests in flight
    expect(outcomes.filter((o) => o === 'hung' || o === 'unclear')).toEqual([]);
    // Only streams already past their first byte at C can fail; everything else was retried.
    expect(outcomes.filter((o) => o === 'ok').length).toBeGreaterThanOrEqual(total - 9);

    const cw = g.gateway.router.get(C.url)!;
    expect(cw.isAvailable()).toBe(false);
    const cBefore = cw.processed;
    const after = await Promise.all(
      Array.from({ length: 20 }, (_, i) => complete(url, { prompt: `after ${i}`, max_tokens: 4 })),
    );
    expect(after.every((r) => r.status === 200)).toBe(true);
    expect(cw.processed).toBe(cBefore);
    const m = await (await fetch(`${url}/metrics`)).text();
    expect(m).toMatch(
      new RegExp(
        `tsinfer_gateway_circuit_breaker_state\\{worker="${C.url.replace(/[.]/g, '\\.')}"\\} [12]|tsinfer_gateway_worker_healthy\\{worker="${C.url.replace(/[.]/g, '\\.')}"\\} 0`,
      ),
    );

    // C comes back on the same port: health checks and a half-open probe bring it back into rotation.
    C = await restartServe(C);
    const t0 = Date.now();
    while (
      Date.now() - t0 < 20_000 &&
      !(cw.healthy && cw.breaker.state === 'closed' && cw.processed > cBefore)
    ) {
      await complete(url, { prompt: 'probe', max_tokens: 2 });
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(cw.healthy).toBe(true);
    expect(cw.breaker.state).toBe('closed');
    const p0 = cw.processed;
    for (let i = 0; i < 9; i++) await complete(url, { prompt: `back ${i}`, max_tokens: 2 });
    expect(cw.processed - p0).toBe(3);
  }, 120_000);
});
