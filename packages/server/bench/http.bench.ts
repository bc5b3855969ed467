/**
 * `pnpm bench:http`: requests per second and added latency of tsinfer's
 * HTTP layer, with the simulated runner at zero model time (every cost term
 * of the tiny-cpu profile set to 0), against a bare fastify route that
 * answers the same body shape, on the same machine.
 *
 *   tsx --conditions=@tsinfer/source packages/server/bench/http.bench.ts [--no-write] [--seconds 3]
 *
 * The load generator runs in a worker thread (plain node:http, keep-alive
 * agent, a closed loop per connection); both servers run in the main thread,
 * one at a time. Rewrites the section between `<!-- bench:http:start -->` and
 * `<!-- bench:http:end -->` of docs/benchmarks.md.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describeMachine, writeBenchSection } from '@tsinfer/core/bench-doc';
import { BUILTIN_PROFILE_DIR, ZERO_COST } from '@tsinfer/runtime';
import Fastify from 'fastify';
import { createEngine } from '../src/engine/index.js';
import { createServer } from '../src/http/server.js';

const args = process.argv.slice(2);
const WRITE = !args.includes('--no-write');
const secIdx = args.indexOf('--seconds');
const SECONDS = secIdx >= 0 ? Number(args[secIdx + 1]) : 3;

/** The load loop, as plain JS evaluated in a worker thread. */
const LOADER = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const { url, body, concurrency, seconds } = workerData;
const u = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
const payload = Buffer.from(body);
const lat = [];
let errors = 0;
function one() {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'content-length': payload.length } }, (res) => {
      let ok = res.statusCode === 200;
      res.on('data', () => {});
      res.on('end', () => { if (ok) lat.push(Number(process.hrtime.bigint() - t0) / 1e6); else errors++; resolve(); });
    });
    req.on('error', () => { errors++; resolve(); });
    req.end(payload);
  });
}
(async () => {
  // warm-up
  const warmEnd = Date.now() + 500;
  await Promise.all(Array.from({ length: concurrency }, async () => { while (Date.now() < warmEnd) await one(); }));
  lat.length = 0; errors = 0;
  const t0 = Date.now();
  const end = t0 + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => { while (Date.now() < end) await one(); }));
  const elapsed = (Date.now() - t0) / 1000;
  agent.destroy();
  parentPort.postMessage({ lat, errors, elapsed });
})();
`;

interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  mean: number;
  n: number;
  errors: number;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = (sorted.length - 1) * p;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (i - lo);
}

function load(url: string, body: object, concurrency: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(LOADER, {
      eval: true,
      workerData: { url, body: JSON.stringify(body), concurrency, seconds: SECONDS },
    });
    w.once('message', (m: { lat: number[]; errors: number; elapsed: number }) => {
      const s = [...m.lat].sort((a, b) => a - b);
      resolve({
        rps: s.length / m.elapsed,
        p50: pct(s, 0.5),
        p99: pct(s, 0.99),
        mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length),
        n: s.length,
        errors: m.errors,
      });
      void w.terminate();
    });
    w.once('error', reject);
  });
}

/** A bare fastify app answering what tsinfer answers, without an engine behind it. */
async function bareServer(tokens: number): Promise<{ url: string; close: () => Promise<void> }> {
  const app = Fastify({ logger: false });
  app.post('/v1/completions', async (req, reply) => {
    const b = req.body as { stream?: boolean; prompt: string };
    const created = Math.floor(Date.now() / 1000);
    if (b.stream !== true) {
      return {
        id: 'cmpl-bare',
        object: 'text_completion',
        created,
        model: 'bare',
        choices: [
          {
            index: 0,
            text: ' t1'.repeat(tokens),
            logprobs: null,
            finish_reason: 'length',
            matched_stop: null,
          },
        ],
        usage: {
          prompt_tokens: b.prompt.length,
          completion_tokens: tokens,
          total_tokens: b.prompt.length + tokens,
        },
      };
    }
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
    });
    for (let i = 0; i < tokens; i++) {
      const chunk = {
        id: 'cmpl-bare',
        object: 'text_completion',
        created,
        model: 'bare',
        choices: [
          { index: 0, text: ' t1', logprobs: null, finish_reason: i === tokens - 1 ? 'length' : null },
        ],
        usage: {
          prompt_tokens: b.prompt.length,
          completion_tokens: i + 1,
          total_tokens: b.prompt.length + i + 1,
        },
      };
      reply.raw.write(`data: ${JSON.stringify(chunk)}\n\n`);
      await new Promise<void>((r) => setImmediate(r)); // one event per loop turn, like tokens arriving
    }
    reply.raw.end('data: [DONE]\n\n');
    return reply;
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { url, close: () => app.close() };
}

function zeroCostProfile(): string {
  const p = JSON.parse(readFileSync(join(BUILTIN_PROFILE_DIR, 'tiny-cpu.json'), 'utf8'));
  p.cost = { ...ZERO_COST };
  p.source = 'tiny-cpu with every cost term 0 (HTTP bench)';
  const file = join(mkdtempSync(join(os.tmpdir(), 'tsinfer-bench-')), 'zero.json');
  writeFileSync(file, JSON.stringify(p));
  return `sim:${file}`;
}

const fmt = (x: number, d = 2): string =>
  Number.isFinite(x)
    ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
    : 'n/a';

interface Scenario {
  name: string;
  body: object;
  tokens: number;
}

async function main(): Promise<void> {
  const load1 = os.loadavg()[0] ?? 0;
  const scenarios: Scenario[] = [
    {
      name: 'non-streaming, max_tokens 1',
      body: { prompt: 'Hello world', max_tokens: 1, ignore_eos: true },
      tokens: 1,
    },
    {
      name: 'streaming, max_tokens 16',
      body: { prompt: 'Hello world', max_tokens: 16, ignore_eos: true, stream: true },
      tokens: 16,
    },
  ];
  const concurrencies = [1, 32];
  const rows: string[] = [];
  const engine = await createEngine({ modelPath: zeroCostProfile() });
  const server = await createServer({ engine, logLevel: 'silent' });
  const tsUrl = await server.listen({ host: '127.0.0.1', port: 0 });
  for (const sc of scenarios) {
    const bare = await bareServer(sc.tokens);
    for (const c of concurrencies) {
      const b = await load(`${bare.url}/v1/completions`, sc.body, c);
      const t = await load(`${tsUrl}/v1/completions`, sc.body, c);
      const line = `| ${sc.name} | ${c} | ${fmt(b.rps, 0)} | ${fmt(t.rps, 0)} | ${fmt(b.p50, 3)} | ${fmt(t.p50, 3)} | ${fmt(t.p50 - b.p50, 3)} | ${fmt(b.p99, 3)} | ${fmt(t.p99, 3)} | ${b.errors + t.errors} |`;
      console.log(line);
      rows.push(line);
    }
    await bare.close();
  }
  await server.shutdown({ timeoutMs: 1000 });

  const section = [
    '## HTTP layer',
    '',
    'Command: `tsx --conditions=@tsinfer/source packages/server/bench/http.bench.ts` (`pnpm bench:http`)  ',
    `Date: ${new Date().toISOString()}  `,
    `Machine: ${describeMachine(load1)}`,
    '',
    `tsinfer: \`createServer\` + \`createEngine\` (dp-size 1, one rank worker thread) on the simulated runner with every cost term of the tiny-cpu profile set to 0 (zero model time), so what is measured is tokenization, dispatch to the rank thread, the scheduler's passes, detokenization and the HTTP layer (validation, SSE, metrics). Bare: a fastify route in the same process answering the same JSON body (or the same number of SSE events, one per event-loop turn) with no engine. Load: a closed loop of C keep-alive connections (node:http) in a worker thread of the same process, ${SECONDS} s per cell after a 0.5 s warm-up; latency is from sending the request to the end of the response body. Both servers and the load generator share the machine's cores, so the numbers are a floor on what the HTTP layer costs, not a capacity figure.`,
    '',
    '| request | C | bare req/s | tsinfer req/s | bare p50 ms | tsinfer p50 ms | added p50 ms | bare p99 ms | tsinfer p99 ms | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    'Added latency at C = 1 is the cost of one request through tsinfer beyond a bare fastify route: for the non-streaming row that is one prefill pass of the rank thread plus two thread hops; for the streaming row, 16 passes and 16 SSE events.',
  ].join('\n');
  console.log(`\n${section}`);
  if (WRITE)
    console.log(`
wrote ${writeBenchSection('http', section)}`);
}

await main();
