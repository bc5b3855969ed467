/**
 * Gateway benchmark: the latency the gateway adds to a request and its
 * throughput ceiling, against fixture upstreams that answer at once.
 *
 *   tsx --conditions=@tsinfer/source packages/gateway/bench/gateway.bench.ts   (pnpm bench:gateway)
 *
 * Three processes: the upstreams (two fake workers, 2 DP ranks each,
 * tsinfer-named /metrics), the gateway, and this load generator (undici,
 * keep-alive). Each measurement is taken against the upstream directly and
 * through the gateway, in alternating blocks, so machine noise hits both.
 *
 * Prints tables and rewrites the section between
 * `<!-- bench:gateway:start -->` and `<!-- bench:gateway:end -->` in
 * docs/benchmarks.md (everything outside the markers is kept).
 *
 * Environment: BENCH_QUICK=1 (fewer requests), BENCH_NO_WRITE=1 (leave the doc alone).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describeMachine, writeBenchSection } from '@tsinfer/core/bench-doc';
import { Pool } from 'undici';

const QUICK = process.env['BENCH_QUICK'] === '1';
const WRITE = process.env['BENCH_NO_WRITE'] !== '1';
const COMMAND = 'tsx --conditions=@tsinfer/source packages/gateway/bench/gateway.bench.ts';
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

const SEQ_REQUESTS = QUICK ? 600 : 4000;
const SEQ_BLOCK = 200;
const LOAD_SECONDS = QUICK ? 2 : 6;
const CONCURRENCY = [16, 64];

function startProc(
  script: string,
  args: string[],
): Promise<{ proc: ChildProcess; info: Record<string, unknown> }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', '--conditions=@tsinfer/source', script, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    rl.once('line', (line) => resolve({ proc, info: JSON.parse(line) as Record<string, unknown> }));
    proc.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
}

function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

const COMPLETION = JSON.stringify({
  model: 'fake',
  prompt:
    'You are a helpful assistant. Summarise the following text in one sentence: the quick brown fox jumps over the lazy dog.',
  max_tokens: 16,
});
const STREAM = JSON.stringify({ ...JSON.parse(COMPLETION), stream: true });

async function once(pool: Pool, body: string): Promise<void> {
  const res = await pool.request({
    path: '/v1/completions',
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  await res.body.text();
  if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
}

/** Sequential latency (µs) of `n` requests, alternating blocks between the two pools. */
async function sequential(
  direct: Pool,
  viaGateway: Pool,
  n: number,
  body: string,
): Promise<{ direct: number[]; gateway: number[] }> {
  const out = { direct: [] as number[], gateway: [] as number[] };
  for (let i = 0; i < 100; i++) {
    await once(direct, body);
    await once(viaGateway, body);
  }
  for (let done = 0; done < n; done += SEQ_BLOCK) {
    for (const [pool, arr] of [
      [direct, out.direct],
      [viaGateway, out.gateway],
    ] as const) {
      for (let i = 0; i < SEQ_BLOCK; i++) {
        const t = performance.now();
        await once(pool, body);
        arr.push((performance.now() - t) * 1000);
      }
    }
  }
  out.direct.sort((a, b) => a - b);
  out.gateway.sort((a, b) => a - b);
  return out;
}

/** Closed-loop throughput: `c` clients for `seconds`; requests per second. */
async function closedLoop(pool: Pool, c: number, seconds: number, body: string): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (performance.now() < end) {
        await once(pool, body);
        n++;
      }
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux; clock ticks of 1/100 s). */
function procCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

async function gatewayAddedMean(url: string): Promise<{ mean: number; count: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const sum = [...text.matchAll(/^tsinfer_gateway_added_latency_seconds_sum\{[^}]*\} ([\d.e+-]+)/gm)].reduce(
    (a, m) => a + Number(m[1]),
    0,
  );
  const count = [...text.matchAll(/^tsinfer_gateway_added_latency_seconds_count\{[^}]*\} (\d+)/gm)].reduce(
    (a, m) => a + Number(m[1]),
    0,
  );
  return { mean: count === 0 ? Number.NaN : (sum / count) * 1e6, count };
}

interface Row {
  config: string;
  seq: { direct: number[]; gateway: number[] };
  seqStream: { direct: number[]; gateway: number[] };
  ownMeanUs: number;
  throughput: Array<{ c: number; direct: number; gateway: number; gatewayCpuUs: number }>;
}

const f1 = (x: number): string => x.toFixed(1);
const f0 = (x: number): string => Math.round(x).toLocaleString('en-US');

async function main(): Promise<void> {
  const load1 = os.loadavg()[0]!;
  const up = await startProc('packages/gateway/bench/upstream.bench-proc.ts', ['2']);
  const urls = up.info['urls'] as string[];
  const configs: Array<{ name: string; input: Record<string, unknown> }> = [
    { name: '`round_robin`', input: { workerUrls: urls, policy: 'round_robin' } },
    {
      name: '`cache_aware` + `--dp-minimum-tokens-scheduler`',
      input: { workerUrls: urls, policy: 'cache_aware', dpMinimumTokensScheduler: true },
    },
  ];
  const rows: Row[] = [];
  try {
    for (const cfg of configs) {
      const gw = await startProc('packages/gateway/bench/gateway.bench-proc.ts', [JSON.stringify(cfg.input)]);
      const gwUrl = gw.info['url'] as string;
      // Let the first load poll land (dp-minimum-tokens needs known loads to inject).
      await new Promise((r) => setTimeout(r, 1500));
      const direct = new Pool(urls[0]!, { connections: 128, pipelining: 1 });
      const viaGw = new Pool(gwUrl, { connections: 128, pipelining: 1 });
      try {
        console.error(`[${cfg.name}] sequential latency, ${SEQ_REQUESTS} requests each way`);
        const seq = await sequential(direct, viaGw, SEQ_REQUESTS, COMPLETION);
        const own = await gatewayAddedMean(gwUrl);
        console.error(`[${cfg.name}] sequential SSE latency`);
        const seqStream = await sequential(direct, viaGw, Math.round(SEQ_REQUESTS / 4), STREAM);
        const throughput: Row['throughput'] = [];
        for (const c of CONCURRENCY) {
          console.error(`[${cfg.name}] closed loop, ${c} clients, ${LOAD_SECONDS} s each way`);
          const d = await closedLoop(direct, c, LOAD_SECONDS, COMPLETION);
          const cpu0 = procCpuSeconds(gw.proc.pid!);
          const g = await closedLoop(viaGw, c, LOAD_SECONDS, COMPLETION);
          const cpu1 = procCpuSeconds(gw.proc.pid!);
          throughput.push({
            c,
            direct: d,
            gateway: g,
            gatewayCpuUs: ((cpu1 - cpu0) / (g * LOAD_SECONDS)) * 1e6,
          });
        }
        rows.push({ config: cfg.name, seq, seqStream, ownMeanUs: own.mean, throughput });
      } finally {
        await direct.close();
        await viaGw.close();
        gw.proc.kill('SIGKILL');
      }
    }
  } finally {
    up.proc.kill('SIGKILL');
  }

  const lines: string[] = [];
  lines.push('## Gateway', '');
  lines.push(`Command: \`${COMMAND}\` (\`pnpm bench:gateway\`)  `);
  lines.push(`Date: ${new Date().toISOString()}  `);
  lines.push(`Machine: ${describeMachine(load1)}${QUICK ? '; BENCH_QUICK=1' : ''}`);
  lines.push('');
  lines.push(
    'Three processes on the same cores: two fixture upstreams (fake workers answering at once, 2 DP ranks each, in one process), the gateway (`createGateway`, logging off, health and load polls on at their defaults), and the load generator (undici `Pool`, keep-alive). "direct" sends the same requests straight to one upstream; the difference is what the gateway adds. Non-stream bodies are ~260 bytes each way; the SSE response is 16 events.',
  );
  lines.push('');
  lines.push(`### Added latency (one request at a time, ${f0(SEQ_REQUESTS)} requests each way, µs)`);
  lines.push('');
  lines.push(
    "| gateway config | request | direct p50 | gateway p50 | added p50 | direct p99 | gateway p99 | added p99 | gateway's own mean |",
  );
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    for (const [kind, s, own] of [
      ['completion (JSON)', r.seq, `${f1(r.ownMeanUs)}`],
      ['completion (SSE, 16 events)', r.seqStream, ''],
    ] as const) {
      const d50 = pct(s.direct, 50);
      const g50 = pct(s.gateway, 50);
      const d99 = pct(s.direct, 99);
      const g99 = pct(s.gateway, 99);
      lines.push(
        `| ${r.config} | ${kind} | ${f1(d50)} | ${f1(g50)} | **${f1(g50 - d50)}** | ${f1(d99)} | ${f1(g99)} | **${f1(g99 - d99)}** | ${own} |`,
      );
    }
  }
  lines.push('');
  lines.push(
    '"added" is gateway minus direct at the same percentile. "gateway\'s own mean" is `tsinfer_gateway_added_latency_seconds` (sum / count) from the gateway\'s /metrics: its whole time per request minus the worker\'s part, measured inside the gateway process, so it leaves out the extra client↔gateway hop that the client-side difference includes.',
  );
  lines.push('');
  lines.push(
    `### Throughput ceiling (closed loop, ${LOAD_SECONDS} s per cell, JSON completions, requests/s)`,
  );
  lines.push('');
  lines.push(
    "| gateway config | clients | direct | through the gateway | gateway process CPU per request (µs) | one gateway core's ceiling (1 s / CPU per request) |",
  );
  lines.push('|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    for (const t of r.throughput) {
      lines.push(
        `| ${r.config} | ${t.c} | ${f0(t.direct)} | **${f0(t.gateway)}** | ${f1(t.gatewayCpuUs)} | **${f0(1e6 / t.gatewayCpuUs)}** |`,
      );
    }
  }
  lines.push('');
  lines.push(
    'On this 2-core machine the client, the upstreams and the gateway share the cores (and other work on the machine shares them too), so "through the gateway" is the ceiling of the whole three-process setup, not of the gateway alone. The gateway\'s own cost is the CPU its process spent per request (user + system from /proc, 10 ms ticks), and 1 s divided by it is what one fully busy core running the gateway (one Node process) can forward. The "direct" column is the fixture\'s own ceiling with one hop fewer. Real workers are far slower than the fixture, so the gateway is not the bottleneck in front of them.',
  );
  const section = lines.join('\n');
  console.log(section);

  if (WRITE) console.error(`wrote ${writeBenchSection('gateway', section)}`);
}

await main();
