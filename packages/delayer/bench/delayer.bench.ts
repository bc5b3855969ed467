import os from 'node:os';
import { createRng, startWorker } from '@tsinfer/core';
import { describeMachine, writeBenchSection } from '@tsinfer/core/bench-doc';
import { createSharedAllGatherInit } from '../src/collective/shared-memory.js';
import {
  createDecisionRecord,
  type DecisionConfig,
  type DelayerState,
  decidePrefill,
  decidePrefillInto,
} from '../src/decide.js';
import type { BenchRankJob, BenchRankReport } from './all-gather-rank.bench-worker.js';

const QUICK = process.env['BENCH_QUICK'] === '1';
const WRITE = process.env['BENCH_NO_WRITE'] !== '1';
const COMMAND = 'tsx --conditions=@tsinfer/source packages/delayer/bench/delayer.bench.ts';

// ---------------------------------------------------------------- decidePrefill

const DP = 8;
const ROW_SETS = 64;
const DECIDE_ITERATIONS = QUICK ? 200_000 : 2_000_000;
const DECIDE_WARMUP = QUICK ? 50_000 : 500_000;
const DECIDE_RUNS = QUICK ? 3 : 7;

const decideConfig: DecisionConfig = {
  maxDelayPasses: 30,
  tokenUsageLowWatermark: null,
  queueMinRatio: 0.5, // queue trigger on
  maxDelayMs: null,
  dpSize: DP,
  enableDpAttention: true,
};

type Mix = { all: number; mixed: number; none: number; queueTrigger: number };

/**
 * 64 sets of 8 rows (columns: prefillable, tokenWatermarkForceAllow,
 * runningBatch, maxPrefillBs, waitingQueueLen), cycled through: about half
 * `all` (most of those with a short queue, so the queue trigger fires), a
 * third `mixed`, the rest `none`.
 */
function makeRowSets(): { sets: Float64Array[][]; mix: Mix } {
  const rng = createRng(2026);
  const mix: Mix = { all: 0, mixed: 0, none: 0, queueTrigger: 0 };
  const sets: Float64Array[][] = [];
  for (let s = 0; s < ROW_SETS; s++) {
    const u = rng.next();
    const kind = u < 0.5 ? 'all' : u < 0.85 ? 'mixed' : 'none';
    const shortQueue = rng.next() < 0.7;
    const rows: Float64Array[] = [];
    let prefillable = 0;
    for (let k = 0; k < DP; k++) {
      const p = kind === 'all' ? 1 : kind === 'none' ? 0 : k === 0 || rng.next() < 0.5 ? 1 : 0;
      prefillable += p;
      const runningBatch = rng.int(40, 200);
      const maxPrefillBs = rng.int(16, 64);
      const waitingQueueLen = kind === 'all' && shortQueue ? rng.int(0, 8) : rng.int(100, 300);
      rows.push(Float64Array.of(p, 0, runningBatch, maxPrefillBs, waitingQueueLen));
    }
    // A mixed set must have at least one non-prefillable rank.
    if (kind === 'mixed' && prefillable === DP) rows[DP - 1]![0] = 0;
    mix[kind]++;
    if (kind === 'all' && shortQueue) mix.queueTrigger++;
    sets.push(rows);
  }
  return { sets, mix };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** ns per call of `decidePrefill` (the allocating API) with its state fed back, median of runs. */
function benchDecidePrefill(sets: Float64Array[][]): { medianNs: number; runsNs: number[]; allows: number } {
  const local = { maxRunningRequests: 256 };
  let state: DelayerState = { prev: null, skipFirst: true };
  let now = 1_000_000;
  let allows = 0;
  const loop = (n: number): void => {
    for (let i = 0; i < n; i++) {
      now += 1;
      const d = decidePrefill(sets[i & (ROW_SETS - 1)]!, local, state, now, decideConfig);
      state = d.state;
      if (d.allow) allows++;
    }
  };
  loop(DECIDE_WARMUP);
  const runsNs: number[] = [];
  for (let run = 0; run < DECIDE_RUNS; run++) {
    const t0 = process.hrtime.bigint();
    loop(DECIDE_ITERATIONS);
    runsNs.push(Number(process.hrtime.bigint() - t0) / DECIDE_ITERATIONS);
  }
  return { medianNs: median(runsNs), runsNs, allows };
}

/** Same workload through `decidePrefillInto` (the non-allocating form the per-pass executor uses). */
function benchDecidePrefillInto(sets: Float64Array[][]): {
  medianNs: number;
  runsNs: number[];
  allows: number;
} {
  const out = createDecisionRecord();
  let hasPrev = false;
  let prevCount = 0;
  let prevStart = 0;
  let skipFirst = true;
  let now = 1_000_000;
  let allows = 0;
  const loop = (n: number): void => {
    for (let i = 0; i < n; i++) {
      now += 1;
      decidePrefillInto(
        out,
        sets[i & (ROW_SETS - 1)]!,
        256,
        hasPrev,
        prevCount,
        prevStart,
        skipFirst,
        now,
        decideConfig,
      );
      hasPrev = out.hasPrev;
      prevCount = out.delayedCount;
      prevStart = out.startMs;
      skipFirst = out.skipFirst;
      if (out.allow) allows++;
    }
  };
  loop(DECIDE_WARMUP);
  const runsNs: number[] = [];
  for (let run = 0; run < DECIDE_RUNS; run++) {
    const t0 = process.hrtime.bigint();
    loop(DECIDE_ITERATIONS);
    runsNs.push(Number(process.hrtime.bigint() - t0) / DECIDE_ITERATIONS);
  }
  return { medianNs: median(runsNs), runsNs, allows };
}

// ---------------------------------------------------------------- all-gather

const GATHER_WARMUP = QUICK ? 500 : 2_000;
const GATHER_ROUNDS = QUICK ? 2_000 : 20_000;
const GATHER_RANKS = [2, 4, 8];

interface GatherStats {
  ranks: number;
  rounds: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

function runRank(job: BenchRankJob): Promise<BenchRankReport> {
  return new Promise((resolve, reject) => {
    const worker = startWorker(import.meta.url, './all-gather-rank.bench-worker', { workerData: job });
    let report: BenchRankReport | undefined;
    worker.once('message', (m: BenchRankReport) => {
      report = m;
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (report !== undefined) resolve(report);
      else reject(new Error(`bench rank ${job.rank} exited with code ${code} without a report`));
    });
  });
}

/**
 * `ranks` worker threads, each one rank, DELAYER-sized rows (5 numbers). The
 * time of a round is the interval between two consecutive returns of
 * rank 0's `gather` (every rank passes every round, so this is the group's
 * round period, including rank 0's loop overhead).
 */
async function benchAllGather(ranks: number): Promise<GatherStats> {
  const init = createSharedAllGatherInit(ranks, 5, { timeoutMs: 60_000 });
  const reports = await Promise.all(
    Array.from({ length: ranks }, (_, rank) =>
      runRank({ init, rank, warmup: GATHER_WARMUP, rounds: GATHER_ROUNDS }),
    ),
  );
  const times = reports.find((r) => r.rank === 0)!.returnTimes!;
  const periods = new Float64Array(GATHER_ROUNDS);
  for (let r = 0; r < GATHER_ROUNDS; r++) periods[r] = times[r + 1]! - times[r]!;
  const total = times[GATHER_ROUNDS]! - times[0]!;
  periods.sort();
  const q = (p: number): number => periods[Math.min(GATHER_ROUNDS - 1, Math.floor(p * GATHER_ROUNDS))]!;
  return {
    ranks,
    rounds: GATHER_ROUNDS,
    meanUs: (total / GATHER_ROUNDS) * 1000,
    p50Us: q(0.5) * 1000,
    p99Us: q(0.99) * 1000,
    maxUs: periods[GATHER_ROUNDS - 1]! * 1000,
  };
}

// ---------------------------------------------------------------- report

function fmt(x: number, digits = 1): string {
  return x.toFixed(digits);
}

async function main(): Promise<void> {
  const cores = os.availableParallelism();
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const date = new Date().toISOString();
  // Other processes on the machine skew the numbers; the 1-minute load average says how busy it was.
  const load = os.loadavg()[0] ?? 0;
  console.log(
    `delayer bench — ${cpu}, ${cores} cores, node ${process.version}${QUICK ? ' (BENCH_QUICK)' : ''}`,
  );

  const { sets, mix } = makeRowSets();
  const dec = benchDecidePrefill(sets);
  const decInto = benchDecidePrefillInto(sets);
  console.log(
    `decidePrefill: median ${fmt(dec.medianNs)} ns/call (runs: ${dec.runsNs.map((x) => fmt(x)).join(', ')}); allow ${dec.allows}`,
  );
  console.log(
    `decidePrefillInto: median ${fmt(decInto.medianNs)} ns/call (runs: ${decInto.runsNs.map((x) => fmt(x)).join(', ')})`,
  );

  const gathers: GatherStats[] = [];
  for (const n of GATHER_RANKS) {
    const s = await benchAllGather(n);
    gathers.push(s);
    console.log(
      `all-gather ${n} thread ranks: mean ${fmt(s.meanUs)} µs/round, p50 ${fmt(s.p50Us)}, p99 ${fmt(s.p99Us)}, max ${fmt(s.maxUs)}${n > cores ? ` (oversubscribed: ${n} ranks on ${cores} cores)` : ''}`,
    );
  }

  const oversubscribed = GATHER_RANKS.filter((n) => n > cores);
  const lines = [
    '## Delayer',
    '',
    `Command: \`${COMMAND}\` (\`pnpm bench:delayer\`)${QUICK ? ' with BENCH_QUICK=1 (smoke run, fewer iterations)' : ''}  `,
    `Date: ${date}  `,
    `Machine: ${describeMachine(load)}`,
    '',
    '### decidePrefill',
    '',
    `DP ${DP} rows, ${ROW_SETS} row sets cycled (${mix.all} all — ${mix.queueTrigger} of them with the queue trigger firing —, ${mix.mixed} mixed, ${mix.none} none), queue trigger on (ratio ${decideConfig.queueMinRatio}), maxDelayPasses ${decideConfig.maxDelayPasses}, state fed back, now +1 ms per call. ${DECIDE_WARMUP.toLocaleString('en-US')} calls of warm-up, then ${DECIDE_RUNS} runs of ${DECIDE_ITERATIONS.toLocaleString('en-US')} calls.`,
    '',
    '| function | median ns/call | runs (ns/call) |',
    '|---|---:|---|',
    `| \`decidePrefill\` (returns a fresh decision + state) | ${fmt(dec.medianNs)} | ${dec.runsNs.map((x) => fmt(x)).join(', ')} |`,
    `| \`decidePrefillInto\` (fills a reused record) | ${fmt(decInto.medianNs)} | ${decInto.runsNs.map((x) => fmt(x)).join(', ')} |`,
    '',
    '### SharedMemoryAllGather (worker-thread ranks)',
    '',
    `Each rank a worker thread; rows of 5 numbers; ${GATHER_WARMUP.toLocaleString('en-US')} warm-up rounds, then ${GATHER_ROUNDS.toLocaleString('en-US')} measured rounds. A round's time is the interval between two consecutive returns of rank 0's \`gather\` (the group's round period).`,
    '',
    '| ranks | rounds | mean µs/round | p50 µs | p99 µs | max µs |',
    '|---:|---:|---:|---:|---:|---:|',
    ...gathers.map(
      (s) =>
        `| ${s.ranks}${s.ranks > cores ? ' *' : ''} | ${s.rounds.toLocaleString('en-US')} | ${fmt(s.meanUs)} | ${fmt(s.p50Us)} | ${fmt(s.p99Us)} | ${fmt(s.maxUs)} |`,
    ),
    '',
    oversubscribed.length > 0
      ? `\\* Oversubscribed: ${oversubscribed.join(' and ')} thread ranks on ${cores} cores, so every round needs the OS to schedule each waiting thread in turn; these rows are dominated by scheduler hand-offs (futex wake-ups and context switches), not by the protocol itself.`
      : 'Every configuration had a core per rank.',
  ];
  const section = lines.join('\n');
  console.log(`\n${section}`);

  if (WRITE)
    console.log(`
wrote ${writeBenchSection('delayer', section)}`);
}

await main();
