import { loadavg } from 'node:os';
import { createRng, ManualClock } from '@tsinfer/core';
import { describeMachine, writeBenchSection } from '@tsinfer/core/bench-doc';
import { SimRunner, validateSimProfile } from '@tsinfer/runtime';
import { Scheduler } from '../src/index.js';

const args = process.argv.slice(2);
const passesArg = args.indexOf('--passes');
const PASSES = passesArg >= 0 ? Number(args[passesArg + 1]) : 3000;
const WRITE = !args.includes('--no-write');
const RUNNING = 1000;
const ROUNDS = 3;
const SCALE_PASSES = Math.min(PASSES, 1000);

const profile = validateSimProfile({
  format: 'tsinfer-sim-profile/1',
  source: 'scheduler bench: made-up coefficients (only the scheduling overhead is measured)',
  model: {
    name: 'sim-bench',
    vocabSize: 32000,
    contextLength: 8192,
    eosTokenIds: [2],
    kvCapacityTokens: 50_000_000,
  },
  cost: {
    fixedMs: 2,
    prefillFixedMs: 1,
    perPrefillTokenMs: 0.001,
    decodeFixedMs: 1,
    perDecodeRequestMs: 0.01,
  },
  generation: { eosProbability: 0 },
});

interface Sample {
  mode: string;
  admitted: number;
  /** process CPU µs of the pass minus that of the forward (user + system, from getrusage). */
  us: number;
  /** wall µs (PassStats.schedulingUs). */
  wall: number;
}

/**
 * Steps `s` once and measures the pass's CPU time outside the forward:
 * `process.cpuUsage()` around the step minus around `runner.forward`. CPU
 * time, unlike wall time, does not count the time this process is preempted
 * by other load on the machine.
 */
function instrument(s: Scheduler, runner: SimRunner): () => Promise<Sample> {
  let fwdCpu = 0;
  const orig = runner.forward.bind(runner);
  runner.forward = async (batch) => {
    const c0 = process.cpuUsage();
    const out = await orig(batch);
    const d = process.cpuUsage(c0);
    fwdCpu += d.user + d.system;
    return out;
  };
  return async () => {
    fwdCpu = 0;
    const c0 = process.cpuUsage();
    const st = await s.step();
    const d = process.cpuUsage(c0);
    return {
      mode: st.mode,
      admitted: st.admittedReqs,
      us: d.user + d.system - fwdCpu,
      wall: st.schedulingUs,
    };
  };
}

async function run(waiting: number, passes: number, seed: number): Promise<Sample[]> {
  const clock = new ManualClock(0);
  const runner = new SimRunner({ profile, wait: () => Promise.resolve(), seed });
  const s = new Scheduler({ runner, clock, config: { maxRunningRequests: RUNNING } });
  const rng = createRng(seed);
  const prompts: Int32Array[] = [];
  for (let i = 0; i < 64; i++) {
    const p = new Int32Array(rng.int(32, 256));
    for (let j = 0; j < p.length; j++) p[j] = rng.int(3, 31999);
    prompts.push(p);
  }
  let n = 0;
  const top = (): void => {
    while (s.numWaiting < waiting) {
      s.addRequest({ rid: `r${n}`, promptTokens: prompts[n % 64]!, maxNewTokens: rng.int(100, 600) });
      n++;
    }
  };
  top();
  // fill the running batch
  while (s.numRunning < RUNNING) {
    await s.step();
    clock.advance(runner.lastStepCostMs);
    top();
  }
  const samples: Sample[] = [];
  const warmup = 300;
  const step = instrument(s, runner);
  for (let i = 0; i < warmup + passes; i++) {
    const x = await step();
    clock.advance(runner.lastStepCostMs);
    if (i >= warmup) samples.push(x);
    top();
  }
  return samples;
}

/** Prefill passes that admit exactly `k` requests each (`--prefill-max-requests k`), filling an empty batch from 10,000 waiting. */
async function burst(k: number, seed: number): Promise<number[]> {
  const clock = new ManualClock(0);
  const runner = new SimRunner({ profile, wait: () => Promise.resolve(), seed });
  const s = new Scheduler({
    runner,
    clock,
    config: {
      maxRunningRequests: RUNNING,
      prefillMaxRequests: k,
      maxPrefillTokens: 1 << 20,
      chunkedPrefillSize: null,
    },
  });
  const rng = createRng(seed);
  for (let i = 0; i < 10_000; i++) {
    const p = new Int32Array(rng.int(32, 256));
    for (let j = 0; j < p.length; j++) p[j] = rng.int(3, 31999);
    s.addRequest({ rid: `b${i}`, promptTokens: p, maxNewTokens: 1000 });
  }
  const us: number[] = [];
  const step = instrument(s, runner);
  while (s.numRunning < RUNNING) {
    const x = await step();
    clock.advance(runner.lastStepCostMs);
    if (x.mode === 'prefill' && x.admitted === k) us.push(x.us);
  }
  return us;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summarize(xs: Sample[]): { n: number; mean: number; p50: number; p99: number; wall50: number } {
  const us = xs.map((x) => x.us).sort((a, b) => a - b);
  const wall = xs.map((x) => x.wall).sort((a, b) => a - b);
  const mean = us.reduce((a, b) => a + b, 0) / Math.max(us.length, 1);
  return { n: us.length, mean, p50: pct(us, 50), p99: pct(us, 99), wall50: pct(wall, 50) };
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '-');

async function main(): Promise<void> {
  const load0 = loadavg()[0]!;
  const lines: string[] = [];
  await run(10_000, 1000, 9); // JIT warm-up, discarded
  const main10k = await run(10_000, PASSES, 1);
  const all = summarize(main10k);
  const dec = summarize(main10k.filter((x) => x.mode === 'decode'));
  const pre = summarize(main10k.filter((x) => x.mode === 'prefill'));
  lines.push(
    `CPU µs per scheduling pass, excluding the forward, ${RUNNING} running, 10,000 waiting, ${PASSES} passes after warm-up:`,
  );
  lines.push('');
  lines.push('| passes | count | CPU mean | CPU p50 | CPU p99 | wall p50 |');
  lines.push('|---|---|---|---|---|---|');
  for (const [label, x] of [
    ['all', all],
    ['decode (1,000 rows)', dec],
    ['prefill (admissions)', pre],
  ] as const) {
    lines.push(`| ${label} | ${x.n} | ${f1(x.mean)} | ${f1(x.p50)} | ${f1(x.p99)} | ${f1(x.wall50)} |`);
  }
  lines.push('');
  lines.push(
    `By waiting-queue length (same running batch; ${ROUNDS} interleaved rounds of ${SCALE_PASSES} passes per length, median of the rounds' values, µs):`,
  );
  lines.push('');
  lines.push('| waiting | decode CPU mean | decode CPU p99 | prefill CPU mean | prefill CPU p99 |');
  lines.push('|---|---|---|---|---|');
  const lengths = [1_000, 10_000, 100_000];
  const perLen = new Map<number, Array<{ dm: number; dp: number; pm: number; pp: number }>>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const w of lengths) {
      const xs = await run(w, SCALE_PASSES, 10 + round);
      const d = summarize(xs.filter((x) => x.mode === 'decode'));
      const p = summarize(xs.filter((x) => x.mode === 'prefill'));
      const list = perLen.get(w) ?? [];
      list.push({ dm: d.mean, dp: d.p99, pm: p.mean, pp: p.p99 });
      perLen.set(w, list);
    }
  }
  const med = (v: number[]): number => v.sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  for (const w of lengths) {
    const r = perLen.get(w)!;
    lines.push(
      `| ${w.toLocaleString('en-US')} | ${f1(med(r.map((x) => x.dm)))} | ${f1(med(r.map((x) => x.dp)))} | ${f1(med(r.map((x) => x.pm)))} | ${f1(med(r.map((x) => x.pp)))} |`,
    );
  }
  lines.push('');
  lines.push('Prefill passes of the first table by requests admitted in the pass (CPU µs):');
  lines.push('');
  lines.push('| admitted | passes | mean | p50 | p99 |');
  lines.push('|---|---|---|---|---|');
  const buckets: Array<[string, (a: number) => boolean]> = [
    ['1', (a) => a === 1],
    ['2', (a) => a === 2],
    ['3–4', (a) => a >= 3 && a <= 4],
    ['5+', (a) => a >= 5],
  ];
  for (const [label, pred] of buckets) {
    const b = summarize(main10k.filter((x) => x.mode === 'prefill' && pred(x.admitted)));
    lines.push(`| ${label} | ${b.n} | ${f1(b.mean)} | ${f1(b.p50)} | ${f1(b.p99)} |`);
  }
  lines.push('');
  lines.push(
    'Admission bursts: prefill passes admitting exactly k requests (`--prefill-max-requests k`), filling an empty batch of 1,000 from 10,000 waiting (running grows 0 → 1,000 during the fill; 3 rounds pooled):',
  );
  lines.push('');
  lines.push('| k admitted | passes | CPU mean µs | CPU p50 µs | CPU p99 µs | p50 µs per admitted request |');
  lines.push('|---|---|---|---|---|---|');
  for (const k of [1, 8, 64, 256]) {
    await burst(k, 99); // warm-up
    const xs: number[] = [];
    for (let round = 0; round < 3; round++) xs.push(...(await burst(k, 20 + round)));
    const sorted = xs.slice().sort((a, b) => a - b);
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const p50 = pct(sorted, 50);
    lines.push(
      `| ${k} | ${xs.length} | ${f1(mean)} | ${f1(p50)} | ${f1(pct(sorted, 99))} | ${(p50 / k).toFixed(2)} |`,
    );
  }
  const header = [
    '## Scheduler: CPU per scheduling pass',
    '',
    'Command: `pnpm bench:scheduler` (= `tsx --conditions=@tsinfer/source packages/scheduler/bench/scheduler.bench.ts`).',
    `Date: ${new Date().toISOString()}. Machine: ${describeMachine(load0)}.`,
    '',
    'One rank, SimRunner with an instant `wait` (virtual clock advanced by the modelled pass time), `--max-running-requests 1000`, ',
    'prompts of 32–256 tokens, max_new_tokens 100–600, waiting queue topped up after every pass. The number is',
    'process CPU time (`process.cpuUsage()`, user + system) of `Scheduler.step()` minus that of `runner.forward` (the runner',
    "validates and samples; excluded); 'wall p50' is `PassStats.schedulingUs` (real time, which also counts preemption by",
    'other load on the machine). Target: under 100 µs, growing with admitted requests, not with the queue.',
    '',
  ];
  const section = [...header, ...lines].join('\n');
  process.stdout.write(`${section}\n`);
  if (WRITE) writeBenchSection('scheduler', section);
}

await main();
