/**
 * E4 — gateway DP-rank minimum tokens. Two `tsinfer serve` instances
 * (sim profile, `--dp-size 2`, the instance's own DP dispatch round_robin),
 * `tsinfer gateway --policy round_robin` in front, `tsinfer bench` against
 * the gateway on a variable-length random dataset (range ratio 0), closed
 * loop at a few concurrencies; with vs without `--dp-minimum-tokens-scheduler`.
 * The seed saw TTFT −15% and TPOT −10% with it.
 *
 *   npx tsx --conditions=@tsinfer/source packages/bench/experiments/e4-gateway.ts [--repeats 2] [--quick] [--no-doc]
 *
 * Every configuration runs on fresh processes (servers, gateway, bench are
 * each their own `node --import tsx` child process, as the CLIs), in the
 * order A B / B A / A B ... so that drift of the machine's load hits both.
 * Meanwhile this script polls each instance's `/v1/loads` every 250 ms to
 * measure how evenly the two ranks of an instance are loaded.
 *
 * Outputs:
 *   results/e4-gateway.jsonl        the bench's own JSONL lines (--output-file), one per run
 *   results/e4-gateway-ranks.jsonl  per run: rank balance from the /v1/loads samples
 *   results/e4-gateway-1.svg, -2.svg, e4-gateway.html   comparison charts
 *   results/e4-report/index.html    `tsinfer bench report` of the JSONL
 *   docs/benchmarks.md              the section between <!-- bench:e4:start/end -->
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeMachine, loadAverage, writeBenchSection } from '@tsinfer/core/bench-doc';
import type { TopLevelSpec } from 'vega-lite';
import { parseLoads } from '../src/loads.js';
import { parsePyJson } from '../src/pyformat.js';
import { renderSvg, writeReport } from '../src/report.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results');
const ROOT = join(HERE, '..', '..', '..');
const MAIN = 'packages/server/src/cli/main.ts';
const COMMAND = 'npx tsx --conditions=@tsinfer/source packages/bench/experiments/e4-gateway.ts';

const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const QUICK = argv.includes('--quick');
const WRITE_DOC = !argv.includes('--no-doc');
const REPORT_ONLY = argv.includes('--report-only');
const REPEATS = Math.max(1, Number(flag('--repeats') ?? 3));
const PROFILE = flag('--profile') ?? 'medium-h100';
const CONCURRENCIES = (flag('--concurrency') ?? (QUICK ? '16' : '16,48')).split(',').map(Number);
const NUM_PROMPTS = Number(flag('--num-prompts') ?? (QUICK ? 60 : 300));
const WARMUPS = 2;
const INPUT_LEN = Number(flag('--input-len') ?? 1024);
const OUTPUT_LEN = Number(flag('--output-len') ?? 512);

interface Config {
  key: 'rr' | 'dpmin' | 'dpmin-fast';
  label: string;
  gatewayFlags: string[];
}
const CONFIGS: Config[] = [
  { key: 'rr', label: 'without', gatewayFlags: [] },
  { key: 'dpmin', label: 'with min tokens', gatewayFlags: ['--dp-minimum-tokens-scheduler'] },
  {
    key: 'dpmin-fast',
    label: 'with min tokens, 0.1 s polls',
    gatewayFlags: ['--dp-minimum-tokens-scheduler', '--worker-load-check-interval', '0.1'],
  },
];
const SELECTED = (flag('--configs') ?? 'rr,dpmin,dpmin-fast').split(',');
const ACTIVE = CONFIGS.filter((c) => SELECTED.includes(c.key));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function cli(args: string[], logTo: string | null): ChildProcess {
  const p = spawn(process.execPath, ['--import', 'tsx', '--conditions=@tsinfer/source', MAIN, ...args], {
    cwd: ROOT,
    stdio: ['ignore', logTo === null ? 'ignore' : 'pipe', 'pipe'],
  });
  let err = '';
  p.stderr?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  p.once('exit', (code, sig) => {
    if (code !== 0 && sig === null) console.error(`[${args[0]}] exited ${code}: ${err}`);
  });
  return p;
}

async function waitOk(url: string, timeoutMs = 180_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms`);
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
  await done;
  clearTimeout(t);
}

/** Sum of a counter's samples in a server's /metrics. */
async function counter(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Mean over busy samples (either rank non-zero) and both ranks of a per-rank field. */
function perRankMean(samples: RankSample[], field: 'used' | 'running' | 'waiting'): number {
  const busy = samples.filter((s) => s.used[0]! + s.used[1]! + s.running[0]! + s.running[1]! > 0);
  if (busy.length === 0) return Number.NaN;
  return busy.reduce((a, s) => a + (s[field][0]! + s[field][1]!) / 2, 0) / busy.length;
}

/** Polls the gateway's /metrics: its in-flight requests and token estimates, summed over workers and ranks. */
function sampleGateway(
  url: string,
  intervalMs: number,
): { stop: () => Promise<{ requests: number; tokens: number; n: number }> } {
  let stopped = false;
  let requests = 0;
  let tokens = 0;
  let n = 0;
  const sum = (text: string, name: string): number =>
    text
      .split('\n')
      .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
      .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  const loop = (async () => {
    while (!stopped) {
      try {
        const text = await (await fetch(`${url}/metrics`)).text();
        const r = sum(text, 'tsinfer_gateway_inflight_requests');
        if (r > 0) {
          requests += r;
          tokens += sum(text, 'tsinfer_gateway_inflight_tokens');
          n++;
        }
      } catch {
        // a missed sample
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return { requests, tokens, n };
    },
  };
}

interface RankSample {
  t: number;
  used: number[];
  running: number[];
  waiting: number[];
}

/** Polls one instance's /v1/loads until stopped. */
function sampleLoads(url: string, intervalMs: number): { stop: () => Promise<RankSample[]> } {
  const samples: RankSample[] = [];
  let stopped = false;
  const t0 = Date.now();
  const loop = (async () => {
    while (!stopped) {
      try {
        const r = await fetch(`${url}/v1/loads`);
        const loads = parseLoads(await r.json());
        if (loads !== null && loads.length >= 2) {
          loads.sort((a, b) => a.dp_rank - b.dp_rank);
          samples.push({
            t: (Date.now() - t0) / 1000,
            used: loads.map((l) => l.num_used_tokens ?? 0),
            running: loads.map((l) => l.num_running_reqs ?? 0),
            waiting: loads.map((l) => l.num_waiting_reqs ?? 0),
          });
        }
      } catch {
        // a missed sample
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return samples;
    },
  };
}

/** Mean over busy samples of |a − b| / (a + b) for a two-rank field (0 = even, 1 = all on one rank). */
function imbalance(samples: RankSample[], field: 'used' | 'running'): number {
  const xs = samples
    .map((s) => s[field])
    .filter((v) => v[0]! + v[1]! > 0)
    .map((v) => Math.abs(v[0]! - v[1]!) / (v[0]! + v[1]!));
  return xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
}

interface RunSummary {
  experiment: 'e4';
  repeat: number;
  config: Config['key'];
  concurrency: number;
  tag: string;
  completed: number;
  mean_ttft_ms: number;
  median_ttft_ms: number;
  p99_ttft_ms: number;
  mean_tpot_ms: number;
  p99_tpot_ms: number;
  output_throughput: number;
  request_throughput: number;
  used_tokens_imbalance: number;
  running_reqs_imbalance: number;
  load_samples: number;
  /** Per rank, mean over busy /v1/loads samples. */
  mean_running_per_rank: number;
  mean_used_tokens_per_rank: number;
  mean_waiting_per_rank: number;
  /** Server-side (byte-tokenizer) prompt and generated tokens of this run, warm-up included, from the instances' /metrics. */
  server_prompt_tokens: number;
  server_generation_tokens: number;
  /** The gateway's mean prompt-token estimate per in-flight request (its /metrics; NaN without the DP-rank scheduler). */
  gateway_estimate_per_request: number | null;
  load_average: number;
  profile: string;
  input_len: number;
  output_len: number;
  num_prompts: number;
  /** When the whole experiment started, its load average then, and its arguments. */
  started: string;
  start_load_average: number;
  args: string;
}

async function runOne(
  repeat: number,
  cfg: Config,
  jsonl: string,
  ranksJsonl: string,
  meta: { started: string; startLoad: number; args: string },
): Promise<RunSummary[]> {
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const [p1, p2, pg] = ports as [number, number, number];
  const workers = [p1, p2].map((p) => `http://127.0.0.1:${p}`);
  const servers = [p1, p2].map((p) =>
    cli(
      [
        'serve',
        '--model-path',
        `sim:${PROFILE}`,
        '--dp-size',
        '2',
        '--load-balance-method',
        'round_robin',
        '--port',
        String(p),
        '--log-level',
        'warn',
      ],
      null,
    ),
  );
  const gw = cli(
    [
      'gateway',
      '--worker-urls',
      ...workers,
      '--port',
      String(pg),
      '--policy',
      'round_robin',
      '--log-level',
      'warn',
      ...cfg.gatewayFlags,
    ],
    null,
  );
  const out: RunSummary[] = [];
  try {
    await Promise.all(workers.map((w) => waitOk(`${w}/health`)));
    await waitOk(`http://127.0.0.1:${pg}/health`);
    for (const c of CONCURRENCIES) {
      const tag = `${cfg.key} r${repeat}`;
      const la = loadAverage();
      console.log(`e4: repeat ${repeat} ${cfg.key} c=${c} (load average ${la.toFixed(2)})`);
      const before = await Promise.all(
        workers.flatMap((w) => [
          counter(w, 'tsinfer_prompt_tokens_total'),
          counter(w, 'tsinfer_generation_tokens_total'),
        ]),
      );
      const samplers = workers.map((w) => sampleLoads(w, 250));
      const gwSampler = sampleGateway(`http://127.0.0.1:${pg}`, 250);
      const bench = cli(
        [
          'bench',
          '--backend',
          'sglang',
          '--base-url',
          `http://127.0.0.1:${pg}`,
          '--dataset-name',
          'random',
          '--random-input-len',
          String(INPUT_LEN),
          '--random-output-len',
          String(OUTPUT_LEN),
          '--random-range-ratio',
          '0',
          '--num-prompts',
          String(NUM_PROMPTS),
          '--max-concurrency',
          String(c),
          '--request-rate',
          'inf',
          '--seed',
          '42',
          '--warmup-requests',
          String(WARMUPS),
          '--disable-tqdm',
          '--output-file',
          jsonl,
          '--tag',
          tag,
        ],
        'pipe',
      );
      bench.stdout?.on('data', () => {});
      const code = await new Promise<number | null>((r) => bench.once('exit', (cd) => r(cd)));
      const samples = (await Promise.all(samplers.map((s) => s.stop()))).flat();
      const gws = await gwSampler.stop();
      if (code !== 0) throw new Error(`bench exited ${code}`);
      const after = await Promise.all(
        workers.flatMap((w) => [
          counter(w, 'tsinfer_prompt_tokens_total'),
          counter(w, 'tsinfer_generation_tokens_total'),
        ]),
      );
      const delta = after.map((x, i) => x - before[i]!);
      const lines = (await readFile(jsonl, 'utf8')).trim().split('\n');
      const d = parsePyJson(lines[lines.length - 1]!) as Record<string, number>;
      const s: RunSummary = {
        experiment: 'e4',
        repeat,
        config: cfg.key,
        concurrency: c,
        tag,
        completed: d['completed']!,
        mean_ttft_ms: d['mean_ttft_ms']!,
        median_ttft_ms: d['median_ttft_ms']!,
        p99_ttft_ms: d['p99_ttft_ms']!,
        mean_tpot_ms: d['mean_tpot_ms']!,
        p99_tpot_ms: d['p99_tpot_ms']!,
        output_throughput: d['output_throughput']!,
        request_throughput: d['request_throughput']!,
        used_tokens_imbalance: imbalance(samples, 'used'),
        running_reqs_imbalance: imbalance(samples, 'running'),
        load_samples: samples.length,
        mean_running_per_rank: perRankMean(samples, 'running'),
        mean_used_tokens_per_rank: perRankMean(samples, 'used'),
        mean_waiting_per_rank: perRankMean(samples, 'waiting'),
        server_prompt_tokens: delta[0]! + delta[2]!,
        server_generation_tokens: delta[1]! + delta[3]!,
        gateway_estimate_per_request: gws.n > 0 && gws.tokens > 0 ? gws.tokens / gws.requests : null,
        load_average: la,
        profile: PROFILE,
        input_len: INPUT_LEN,
        output_len: OUTPUT_LEN,
        num_prompts: NUM_PROMPTS,
        started: meta.started,
        start_load_average: meta.startLoad,
        args: meta.args,
      };
      console.log(
        `  TTFT mean ${s.mean_ttft_ms.toFixed(1)} p99 ${s.p99_ttft_ms.toFixed(1)} ms, TPOT ${s.mean_tpot_ms.toFixed(2)} ms, ${s.output_throughput.toFixed(0)} tok/s, rank imbalance used ${s.used_tokens_imbalance.toFixed(3)} running ${s.running_reqs_imbalance.toFixed(3)}`,
      );
      await appendFile(ranksJsonl, `${JSON.stringify(s)}\n`);
      out.push(s);
    }
  } finally {
    await Promise.all([...servers, gw].map(stop));
  }
  return out;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const span = (xs: number[], d: number): string => {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? lo.toFixed(d) : `${lo.toFixed(d)} – ${hi.toFixed(d)}`;
};
const pctChange = (a: number, b: number): string =>
  `${b >= a ? '+' : '−'}${Math.abs(((b - a) / a) * 100).toFixed(1)}%`;

async function main(): Promise<void> {
  await mkdir(RESULTS, { recursive: true });
  const jsonl = join(RESULTS, 'e4-gateway.jsonl');
  const ranksJsonl = join(RESULTS, 'e4-gateway-ranks.jsonl');

  if (!REPORT_ONLY) {
    const started = new Date().toISOString();
    const startLoad = loadAverage();
    for (const f of [jsonl, ranksJsonl]) if (existsSync(f)) await rm(f);
    for (let r = 1; r <= REPEATS; r++) {
      const order = r % 2 === 1 ? ACTIVE : [...ACTIVE].reverse();
      for (const cfg of order)
        await runOne(r, cfg, jsonl, ranksJsonl, { started, startLoad, args: argv.join(' ') });
    }
  }
  // Everything below is computed from the raw files, so `--report-only` redraws it without measuring.
  const all = (await readFile(ranksJsonl, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as RunSummary);
  if (all.length === 0) throw new Error(`no runs in ${ranksJsonl}`);
  const date = all[0]!.started;
  const load0 = all[0]!.start_load_average;
  const runArgs = all[0]!.args;
  const repeats = Math.max(...all.map((s) => s.repeat));
  const concurrencies = [...new Set(all.map((s) => s.concurrency))].sort((a, b) => a - b);
  const profile = all[0]!.profile;

  // Charts.
  const metrics: Array<[keyof RunSummary, string]> = [
    ['mean_ttft_ms', 'mean TTFT (ms)'],
    ['p99_ttft_ms', 'P99 TTFT (ms)'],
    ['mean_tpot_ms', 'mean TPOT (ms)'],
    ['output_throughput', 'output tok/s'],
  ];
  const cfgLabel = (k: string): string => CONFIGS.find((c) => c.key === k)?.label ?? k;
  const rows = all.flatMap((s) =>
    metrics.map(([k, name]) => ({
      metric: name,
      concurrency: `c=${s.concurrency}`,
      gateway: cfgLabel(s.config),
      repeat: s.repeat,
      value: s[k] as number,
    })),
  );
  const barSpec = (
    title: string,
    data: Array<{ metric: string }>,
    yTitle: string | null,
    facet: string,
  ): TopLevelSpec =>
    ({
      $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
      title,
      data: { values: data },
      facet: {
        column: { field: facet, type: 'nominal', title: null, sort: [...new Set(data.map((d) => d.metric))] },
      },
      resolve: { scale: { y: 'independent' } },
      spec: {
        width: 170,
        height: 240,
        layer: [
          {
            mark: 'bar',
            encoding: {
              x: { field: 'concurrency', type: 'nominal', title: 'max concurrency', axis: { labelAngle: 0 } },
              xOffset: { field: 'gateway', type: 'nominal', sort: CONFIGS.map((c) => c.label) },
              y: { aggregate: 'mean', field: 'value', type: 'quantitative', title: yTitle },
              color: {
                field: 'gateway',
                type: 'nominal',
                title: 'gateway',
                legend: { labelLimit: 400 },
                scale: { domain: CONFIGS.map((c) => c.label) },
              },
            },
          },
          {
            mark: { type: 'tick', color: 'black', thickness: 1.5 },
            encoding: {
              x: { field: 'concurrency', type: 'nominal' },
              xOffset: { field: 'gateway', type: 'nominal', sort: CONFIGS.map((c) => c.label) },
              y: { field: 'value', type: 'quantitative' },
            },
          },
        ],
      },
    }) as TopLevelSpec;
  const svg1 = await renderSvg(
    barSpec(
      `E4: gateway with vs without DP-rank minimum tokens (sim:${profile}, 2 × DP 2; bars = mean of ${repeats} repeats, ticks = each repeat)`,
      rows,
      null,
      'metric',
    ),
  );
  const balRows = all.flatMap((s) =>
    (
      [
        ['used_tokens_imbalance', 'KV used tokens'],
        ['running_reqs_imbalance', 'running requests'],
      ] as const
    ).map(([k, name]) => ({
      metric: `rank imbalance: ${name}`,
      concurrency: `c=${s.concurrency}`,
      gateway: cfgLabel(s.config),
      repeat: s.repeat,
      value: s[k],
    })),
  );
  const svg2 = await renderSvg(
    barSpec(
      'E4: imbalance between the two ranks of an instance, mean over /v1/loads samples of |a − b| / (a + b)',
      balRows,
      null,
      'metric',
    ),
  );
  const svg1Path = join(RESULTS, 'e4-gateway-1.svg');
  const svg2Path = join(RESULTS, 'e4-gateway-2.svg');
  await writeFile(svg1Path, svg1);
  await writeFile(svg2Path, svg2);
  await writeFile(
    join(RESULTS, 'e4-gateway.html'),
    `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>E4 gateway DP-rank minimum tokens</title></head><body><h1>E4: gateway DP-rank minimum tokens</h1>\n${svg1}\n${svg2}\n</body></html>\n`,
  );
  const report = await writeReport([jsonl], join(RESULTS, 'e4-report'), {
    title: `E4: gateway with vs without --dp-minimum-tokens-scheduler (sim:${profile})`,
  });

  // Table and verdict.
  const relp = (p: string): string => relative(ROOT, p);

  // How much TPOT could perfect rank balance buy at all, in the profile's cost model?
  // A decode pass costs F + V (fixed part, and the part that grows with the rank's batch
  // and KV). With a rank pair split b(1 ± I), a request's mean pass time is F + V(1 + I²)
  // against F + V when balanced; this bounds the TPOT gain of balancing.
  const prof = JSON.parse(
    await readFile(join(ROOT, 'packages', 'runtime', 'profiles', `${profile}.json`), 'utf8'),
  ) as {
    cost: Record<string, number>;
  };
  const k = prof.cost;
  const fixed = (k['fixedMs'] ?? 0) + (k['decodeFixedMs'] ?? 0);
  const bounds: string[] = [];
  for (const c of concurrencies) {
    const rr = all.filter(
      (s) => s.config === 'rr' && s.concurrency === c && Number.isFinite(s.mean_running_per_rank),
    );
    if (rr.length === 0) continue;
    const b = mean(rr.map((s) => s.mean_running_per_rank));
    const u = mean(rr.map((s) => s.mean_used_tokens_per_rank));
    const ir = mean(rr.map((s) => s.running_reqs_imbalance));
    const iu = mean(rr.map((s) => s.used_tokens_imbalance));
    const vReq = (k['perDecodeRequestMs'] ?? 0) * b;
    const vKv = (k['perKvTokenReadMs'] ?? 0) * u;
    const pass = fixed + vReq + vKv;
    const gain = (vReq * ir ** 2 + vKv * iu ** 2) / (fixed + vReq * (1 + ir ** 2) + vKv * (1 + iu ** 2));
    bounds.push(
      `c=${c}: without the scheduler a rank held on average ${b.toFixed(1)} running requests and ${u.toFixed(0)} KV tokens (imbalance ${ir.toFixed(2)} / ${iu.toFixed(2)}), so a decode pass costs ${fixed.toFixed(2)} ms fixed + ${vReq.toFixed(2)} ms per-request + ${vKv.toFixed(2)} ms KV = ${pass.toFixed(2)} ms, of which ${(((vReq + vKv) / pass) * 100).toFixed(0)}% depends on the load; perfect balance would cut the mean pass time by about ${(gain * 100).toFixed(1)}%`,
    );
  }
  const balanceNotes: string[] = [];
  for (const c of concurrencies) {
    const parts = CONFIGS.map((cf) => {
      const runs = all.filter((s) => s.config === cf.key && s.concurrency === c);
      return runs.length === 0
        ? null
        : `${cf.label} ${mean(runs.map((s) => s.used_tokens_imbalance)).toFixed(2)}`;
    }).filter((x): x is string => x !== null);
    balanceNotes.push(`at c=${c} the mean KV-used imbalance was ${parts.join(', ')}`);
  }
  const estRuns = all.filter((s) => s.gateway_estimate_per_request !== null);
  const estRatio =
    estRuns.length === 0
      ? 'not measured'
      : `${mean(estRuns.map((s) => s.server_prompt_tokens / (s.num_prompts + WARMUPS) / s.gateway_estimate_per_request!)).toFixed(1)}×`;
  const short = all.filter((s) => s.completed < s.num_prompts);
  const failedNote =
    short.length === 0
      ? ''
      : `Failed requests: ${short.length} of ${all.length} runs completed fewer than all ${all[0]!.num_prompts} requests (completed: ${[...new Set(short.map((s) => s.completed))].join(', ')}). Checked by hand once (not by this script), with \`--output-details\` against one instance behind a round_robin gateway: request 296, whose prompt is one token long by the bench's tokenizer, is answered 400 \`text: the prompt is empty\`; the same bench command sent to the instance directly completes ${all[0]!.num_prompts} of ${all[0]!.num_prompts}. Not investigated further. The bench seed is fixed, so it is presumably the same request in every run and does not bias the comparison.`;
  const tableRows: string[] = [];
  const verdicts: string[] = [];
  for (const c of concurrencies) {
    const of = (k: Config['key']): RunSummary[] => all.filter((s) => s.config === k && s.concurrency === c);
    const present = CONFIGS.filter((cf) => of(cf.key).length > 0);
    for (const cf of present) {
      const runs = of(cf.key);
      const est = runs.map((s) => s.gateway_estimate_per_request).filter((x): x is number => x !== null);
      const actual = runs.map((s) => s.server_prompt_tokens / (s.num_prompts + WARMUPS));
      tableRows.push(
        `| ${c} | ${cf.label} | ${span(
          runs.map((s) => s.mean_ttft_ms),
          0,
        )} | ${span(
          runs.map((s) => s.p99_ttft_ms),
          0,
        )} | ${span(
          runs.map((s) => s.mean_tpot_ms),
          2,
        )} | ${span(
          runs.map((s) => s.output_throughput),
          0,
        )} | ${span(
          runs.map((s) => s.used_tokens_imbalance),
          2,
        )} | ${span(
          runs.map((s) => s.running_reqs_imbalance),
          2,
        )} | ${est.length > 0 ? `${mean(est).toFixed(0)} vs ${mean(actual).toFixed(0)}` : '–'} | ${runs.map((s) => s.completed).join(', ')} |`,
      );
    }
    const a = of('rr');
    if (a.length === 0) continue;
    const separated = (xa: number[], xb: number[]): boolean =>
      Math.max(...xb) < Math.min(...xa) || Math.min(...xb) > Math.max(...xa);
    for (const cf of present.filter((x) => x.key !== 'rr')) {
      const b = of(cf.key);
      const ttftA = mean(a.map((s) => s.mean_ttft_ms));
      const ttftB = mean(b.map((s) => s.mean_ttft_ms));
      const tpotA = mean(a.map((s) => s.mean_tpot_ms));
      const tpotB = mean(b.map((s) => s.mean_tpot_ms));
      const ttftSep = separated(
        a.map((s) => s.mean_ttft_ms),
        b.map((s) => s.mean_ttft_ms),
      );
      const tpotSep = separated(
        a.map((s) => s.mean_tpot_ms),
        b.map((s) => s.mean_tpot_ms),
      );
      const ttftMet = (ttftB - ttftA) / ttftA <= -0.15 && ttftSep;
      const tpotMet = (tpotB - tpotA) / tpotA <= -0.1 && tpotSep;
      verdicts.push(
        `- c=${c}, ${cf.label} vs without: mean TTFT ${pctChange(ttftA, ttftB)} (${ttftSep ? 'outside' : 'within'} the repeats' spread): the seed's −15% ${ttftMet ? '**reproduced**' : '**not reproduced**'}; mean TPOT ${pctChange(tpotA, tpotB)} (${tpotSep ? 'outside' : 'within'} the spread): the seed's −10% ${tpotMet ? '**reproduced**' : '**not reproduced**'}.`,
      );
    }
  }
  const body = [
    '## E4: gateway DP-rank minimum tokens (two DP-2 instances)',
    '',
    `Command: \`${COMMAND}${runArgs.length > 0 ? ` ${runArgs}` : ''}\`${REPORT_ONLY ? ` (this text and the charts redrawn from the raw files with \`--report-only\`)` : ''}  `,
    `Date: ${date}  `,
    `Machine: ${describeMachine(load0)}; load average at each run: ${all.map((s) => s.load_average.toFixed(1)).join(', ')}  `,
    `Raw: \`${relp(jsonl)}\` (the bench's JSONL lines, tag = configuration and repeat), \`${relp(ranksJsonl)}\` (per run: the numbers below and the rank balance) · charts: \`${relp(svg1Path)}\`, \`${relp(svg2Path)}\`, bench report \`${relp(report.path)}\``,
    '',
    `Setup: two \`tsinfer serve --model-path sim:${profile} --dp-size 2 --load-balance-method round_robin\` instances, \`tsinfer gateway --policy round_robin\` in front of them, in three configurations: without the DP-rank scheduler (each instance alternates its own ranks), with \`--dp-minimum-tokens-scheduler\` (the gateway picks the rank with the least polled used tokens + its in-flight prompt-token estimate and injects \`routed_dp_rank\`, pinning the rank; loads polled every 1 s, the default), and the same with \`--worker-load-check-interval 0.1\`. The gateway has no tokenizer for a \`sim:\` model, so its estimate is ceil(words × 1.3), while a \`sim:\` server counts UTF-8 bytes as tokens; the table shows both per request. \`tsinfer bench --backend sglang --dataset-name random --random-input-len ${all[0]!.input_len} --random-output-len ${all[0]!.output_len} --random-range-ratio 0 --num-prompts ${all[0]!.num_prompts} --max-concurrency <c> --request-rate inf --seed 42\` against the gateway (the same prompts in every run). Every server, the gateway and the bench are separate processes, fresh for each configuration and repeat; configurations alternate A B / B A. ${repeats} repeats; cells are min – max over the repeats. Rank imbalance: mean over the instances' \`/v1/loads\` samples (every 250 ms, busy samples only) of |rank0 − rank1| / (rank0 + rank1).`,
    '',
    '| concurrency | gateway | mean TTFT ms | P99 TTFT ms | mean TPOT ms | output tok/s | imbalance, KV used | imbalance, running | gateway estimate vs server prompt tokens per request | completed |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---|',
    ...tableRows,
    '',
    ...(failedNote === '' ? [] : [failedNote, '']),
    `![E4 chart](../${relp(svg1Path)})`,
    '',
    `![E4 rank balance](../${relp(svg2Path)})`,
    '',
    `**Why TPOT cannot move much here:** in \`sim:${profile}\` the decode pass is dominated by its fixed cost (\`fixedMs\` + \`decodeFixedMs\` = ${fixed.toFixed(2)} ms), as for a small batch on a GPU. Measured from the \`/v1/loads\` samples: ${bounds.join('; ')}. A −10% TPOT needs the load-dependent part of the pass to be a large share of it (long contexts, large batches) and the ranks to be badly balanced without the scheduler; neither holds at these concurrencies.`,
    '',
    `**Why the ranks are not better balanced with the scheduler:** ${balanceNotes.join('; ')}. Without the scheduler each instance alternates its two ranks, which over hundreds of independent lengths already keeps them close. The gateway's choice is made from loads polled every ${'`'}--worker-load-check-interval${'`'} (the snapshot itself is republished every 15 decode passes) plus its own in-flight estimate, and that estimate is ${estRatio} smaller than the prompt the \`sim:\` server actually holds (no tokenizer.json for the gateway, words × 1.3 vs UTF-8 bytes), so between polls a newly sent request weighs a fraction of its real KV, and (our reading, not measured per request) consecutive requests can pile onto the rank that looked lightest at the last poll. TTFT also carries the harness: servers, gateway and bench share this loaded 2-core machine.`,
    '',
    `**Result against the seed (TTFT −15%, TPOT −10% with DP-rank minimum tokens; "reproduced" needs the change of the means to reach the seed's and the repeats of the two configurations not to overlap):**`,
    '',
    ...verdicts,
  ];
  const section = body.join('\n');
  console.log(`\n${section}`);
  if (WRITE_DOC) console.log(`\nwrote ${writeBenchSection('e4', section)}`);
}

await main();
