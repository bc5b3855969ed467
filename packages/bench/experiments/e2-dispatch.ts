/**
 * E2: DP dispatch methods (SGLang's round_robin, total_requests, total_tokens
 * with and without PR #22614's token increment, minimum_tokens) in `tsinfer
 * sim` under bursty variable-length traffic, DP 4 and DP 8 with DP attention.
 *
 * Workload (fixed before any run): random dataset, 2048 in / 1024 out with
 * range ratio 0 (lengths uniform on [1, len]); --max-running-requests 32 per
 * rank; three loads per DP size: gamma arrivals with --burstiness 0.25 at
 * 7.5 and 10 requests/s per rank, and everything at once (rate inf, 64
 * requests per rank, the seed's bench_serving setup). Each run is
 *   tsinfer sim --model-path sim:medium-h100 --dp-size <dp> --enable-dp-attention \
 *     --max-running-requests <32 dp> --dataset-name random --random-input-len 2048 \
 *     --random-output-len 1024 --random-range-ratio 0 --request-rate <r> --burstiness 0.25 \
 *     --num-prompts <n> --load-balance-method <m> [--disable-token-increment] --loads-interval 0.5
 *
 * Run: npx tsx --conditions=@tsinfer/source packages/bench/experiments/e2-dispatch.ts
 */

import { describeMachine, loadAverage, writeBenchSection } from '@tsinfer/core/bench-doc';
import type { LoadBalanceMethod } from '@tsinfer/scheduler';
import { DEFAULT_SIM_OPTIONS, runSim, type SimRunResult } from '../src/sim/index.js';
import { benchReport, freshFile, fx, mdTable, type NamedChart, rel, writeCharts } from './lib.js';

const METHODS: Array<{ name: string; method: LoadBalanceMethod; increment: boolean }> = [
  { name: 'round_robin', method: 'round_robin', increment: true },
  { name: 'total_requests', method: 'total_requests', increment: true },
  { name: 'total_tokens (no increment)', method: 'total_tokens', increment: false },
  { name: 'total_tokens', method: 'total_tokens', increment: true },
  { name: 'minimum_tokens', method: 'minimum_tokens', increment: true },
];
const DPS = [4, 8];
const LOADS = [
  { name: 'bursty 7.5/s/rank', perRank: 7.5, prompts: 375 },
  { name: 'bursty 10/s/rank', perRank: 10, prompts: 375 },
  { name: 'all at once', perRank: Number.POSITIVE_INFINITY, prompts: 64 },
  // Added after the first three loads had run (and missed the targets): the seed's own shape,
  // a burst small enough that no rank runs out of running slots (SGLang: 100 prompts over
  // DP 16), so that TTFT is prefill queueing, not waiting for a slot. Reported beside the others.
  { name: 'all at once, no slot limit', perRank: Number.POSITIVE_INFINITY, prompts: 16, noCap: true },
];

interface Row {
  dp: number;
  load: string;
  method: string;
  r: SimRunResult;
}

const jsonl = await freshFile('e2-dispatch.jsonl');
const rows: Row[] = [];
const wall0 = performance.now();
for (const dp of DPS) {
  for (const load of LOADS) {
    for (const m of METHODS) {
      const r = await runSim(
        {
          ...DEFAULT_SIM_OPTIONS,
          modelPath: 'sim:medium-h100',
          datasetName: 'random',
          randomInputLen: 2048,
          randomOutputLen: 1024,
          randomRangeRatio: 0,
          numPrompts: load.prompts * dp,
          requestRate: load.perRank * dp,
          burstiness: 0.25,
          seed: 2,
          tag: `dp${dp} ${load.name} ${m.name}`,
          outputFile: jsonl,
          loadsInterval: 0.5,
          loadBalanceMethod: m.method,
          incrementTokens: m.increment,
          scheduler: {
            dpSize: dp,
            enableDpAttention: true,
            ...('noCap' in load ? {} : { maxRunningRequests: 32 * dp }),
          },
        },
        { log: () => {} },
      );
      rows.push({ dp, load: load.name, method: m.name, r });
      console.log(
        `dp${dp} ${load.name} ${m.name}: TTFT mean ${fx(r.metrics.ttft.mean, 0)} p99 ${fx(r.metrics.ttft.p99, 0)} ms, ITL p99 ${fx(r.metrics.itl.p99)} ms, load max/mean ${fx(r.sim.rankLoadImbalance, 3)}, peak waiting ${r.sim.peakWaitingOneRank.reqs}, out ${fx(r.metrics.outputThroughput, 0)} tok/s`,
      );
    }
  }
}
const wallS = (performance.now() - wall0) / 1000;
const virtualS = rows.reduce((a, x) => a + x.r.sim.virtualS, 0);
const get = (dp: number, load: string, method: string): SimRunResult =>
  rows.find((x) => x.dp === dp && x.load === load && x.method === method)!.r;

// ---- charts ------------------------------------------------------------------
const points = rows.map((x) => ({
  setup: `DP ${x.dp}, ${x.load}`,
  method: x.method,
  mean_ttft_ms: x.r.metrics.ttft.mean,
  p99_ttft_ms: x.r.metrics.ttft.p99,
  p99_itl_ms: x.r.metrics.itl.p99,
  rank_load_max_over_mean: x.r.sim.rankLoadImbalance,
}));
const bars = (y: string, title: string): NamedChart['spec'] => ({
  data: { values: points },
  mark: 'bar',
  encoding: {
    column: { field: 'setup', type: 'nominal', title: '' },
    x: { field: 'method', type: 'nominal', title: null, sort: METHODS.map((m) => m.name) },
    y: { field: y, type: 'quantitative', title },
    color: { field: 'method', type: 'nominal', sort: METHODS.map((m) => m.name) },
  },
});
// per-rank load over time (exact num_total_tokens of the snapshots) for the busiest load at DP 8
const timeline: Array<{ t: number; rank: string; tokens: number; method: string }> = [];
for (const x of rows.filter((y) => y.dp === 8 && y.load === 'bursty 10/s/rank')) {
  for (const s of x.r.loads ?? []) {
    for (const l of s.loads)
      timeline.push({ t: s.t, rank: `rank ${l.dp_rank}`, tokens: l.num_total_tokens ?? 0, method: x.method });
  }
}
const charts: NamedChart[] = [
  { title: 'Mean TTFT', note: 'ms, virtual time.', spec: bars('mean_ttft_ms', 'mean TTFT (ms)') },
  { title: 'P99 TTFT', note: 'ms.', spec: bars('p99_ttft_ms', 'p99 TTFT (ms)') },
  { title: 'P99 ITL', note: 'ms.', spec: bars('p99_itl_ms', 'p99 ITL (ms)') },
  {
    title: 'Rank load max / mean',
    note: 'Per rank, the time average of num_total_tokens (KV in use + waiting prompt tokens); max over ranks / mean over ranks.',
    spec: bars('rank_load_max_over_mean', 'max / mean rank load'),
  },
  {
    title: 'Per-rank load over time, DP 8, bursty 10/s/rank',
    note: 'num_total_tokens of each rank’s load snapshot (what the DP controller reads), every 0.5 virtual s.',
    spec: {
      data: { values: timeline },
      mark: { type: 'line', interpolate: 'step-after', strokeWidth: 1 },
      encoding: {
        row: { field: 'method', type: 'nominal', title: '', sort: METHODS.map((m) => m.name) },
        x: { field: 't', type: 'quantitative', title: 'virtual s' },
        y: { field: 'tokens', type: 'quantitative', title: 'num_total_tokens' },
        color: { field: 'rank', type: 'nominal' },
      },
      width: 640,
      height: 120,
    } as NamedChart['spec'],
  },
];
const chartFiles = await writeCharts(
  'e2-dispatch',
  'E2: DP dispatch methods (tsinfer sim)',
  charts,
  'Simulated in virtual time on sim:medium-h100 (estimated, not calibrated).',
);
const report = await benchReport(jsonl, 'e2-report', 'E2 runs (bench report)');

// ---- targets -----------------------------------------------------------------
const targetRows: Array<Array<string | number>> = [];
let okRr = true;
let okTt = true;
let okLoad = true;
for (const dp of DPS) {
  for (const load of LOADS) {
    const mt = get(dp, load.name, 'minimum_tokens');
    const rr = get(dp, load.name, 'round_robin');
    const tt = get(dp, load.name, 'total_tokens');
    const vsRr = 1 - mt.metrics.ttft.mean / rr.metrics.ttft.mean;
    const vsTt = 1 - mt.metrics.ttft.mean / tt.metrics.ttft.mean;
    okRr &&= vsRr >= 0.3;
    okTt &&= vsTt >= 0.1;
    okLoad &&= mt.sim.rankLoadImbalance <= 1.1;
    targetRows.push([
      dp,
      load.name,
      `${fx(vsRr * 100)} %`,
      vsRr >= 0.3 ? 'met' : 'NOT met',
      `${fx(vsTt * 100)} %`,
      vsTt >= 0.1 ? 'met' : 'NOT met',
      fx(mt.sim.rankLoadImbalance, 3),
      mt.sim.rankLoadImbalance <= 1.1 ? 'met' : 'NOT met',
    ]);
  }
}

const main = mdTable(
  [
    'DP',
    'load',
    'method',
    'TTFT mean / p99 (ms)',
    'ITL p99 (ms)',
    'rank load max/mean',
    'dispatched tokens max/mean',
    'worst pile-up (waiting reqs on one rank)',
    'out tok/s',
  ],
  rows.map((x) => [
    x.dp,
    x.load,
    x.method,
    `${fx(x.r.metrics.ttft.mean, 0)} / ${fx(x.r.metrics.ttft.p99, 0)}`,
    fx(x.r.metrics.itl.p99, 1),
    fx(x.r.sim.rankLoadImbalance, 3),
    fx(x.r.sim.dispatchedTokenImbalance, 3),
    `${x.r.sim.peakWaitingOneRank.reqs} (rank ${x.r.sim.peakWaitingOneRank.rank}, t=${fx(x.r.sim.peakWaitingOneRank.t)} s)`,
    fx(x.r.metrics.outputThroughput, 0),
  ]),
);

const doc = `
## E2 — DP dispatch methods (simulated, DP 4 and 8, DP attention)

**Command:** \`npx tsx --conditions=@tsinfer/source packages/bench/experiments/e2-dispatch.ts\`
(each run is \`tsinfer sim --model-path sim:medium-h100 --dp-size <dp> --enable-dp-attention --max-running-requests <32·dp> --dataset-name random --random-input-len 2048 --random-output-len 1024 --random-range-ratio 0 --request-rate <r> --burstiness 0.25 --num-prompts <n> --seed 2 --load-balance-method <m> [--disable-token-increment] --loads-interval 0.5\`).
**Machine:** ${describeMachine(loadAverage())}; ${rows.length} runs, ${fx(virtualS, 0)} s of virtual time in ${fx(wallS, 1)} s of wall time.
**Raw:** \`${rel(jsonl)}\`; **charts:** \`${rel(chartFiles[0]!)}\` (+ \`.svg\`; the last one is the per-rank load over time), bench report with every run's per-rank load \`${rel(report)}\`.

Setup (the dataset, the first three loads and the methods were fixed before any run): random dataset 2048/1024 with range ratio 0 (every length uniform on [1, len]: highly variable), \`--max-running-requests\` 32 per rank (except the fourth load), the real DP controller (\`DpDispatcher\`) reading the ranks' load snapshots from a \`LoadSnapshotBoard\` that each rank publishes to on the real cadence (every prefill pass, every 15 decode passes, on going idle; 20 ms refresh throttle). Loads per DP size: gamma arrivals (bench_serving's \`--burstiness 0.25\`, burstier than Poisson) at 7.5 and 10 requests/s per rank (375 requests per rank), and everything at once (64 requests per rank, rate inf, as the seed's \`bench_serving --num-prompt 100\`). A fourth load was added after the first three had run and missed the targets: everything at once with 16 requests per rank and no \`--max-running-requests\` cap (the seed's shape: 100 prompts over DP 16, so no request waits for a running slot and TTFT is prefill queueing); it is reported beside the others, not instead of them. "total_tokens (no increment)" is the seed's "before" (PR #22614). Rank load = per rank, the time average of num_total_tokens (KV in use + waiting prompt tokens) sampled every 50 virtual ms; worst pile-up = the most waiting requests one rank held at a sample. The timing model \`sim:medium-h100\` is estimated, not calibrated.

SGLang (seeds: the minimum_tokens PR by WANG-GH, June 2025, and PR #22614): minimum_tokens mean TTFT 4767.87 ms against round_robin 6945.23 ms (−31 %), DeepSeek-R1 at DP 16; total_tokens without the increment piled 21 pre-allocated requests on DP0.

${main}

Targets (minimum_tokens against the other methods in the same setup):

${mdTable(['DP', 'load', 'mean TTFT vs round_robin', '≥ 30 % lower', 'vs total_tokens', '≥ 10 % lower', 'rank load max/mean', '≤ 1.1'], targetRows)}

- minimum_tokens mean TTFT at least 30 % below round_robin in every setup: **${okRr ? 'met' : 'not met'}**.
- at least 10 % below total_tokens in every setup: **${okTt ? 'met' : 'not met'}**.
- max/mean rank load at most 1.1 for minimum_tokens in every setup: **${okLoad ? 'met' : 'not met'}**.

Why, from the runs (the dispatcher code is unchanged by these results; one simulator change was made after the first E2 results, see the last point):
- All at once, no load snapshot changes between the dispatches, so the methods collapse into two: count-based (round_robin, total_requests, total_tokens without the increment: its token budgets stay equal and its request-count tie-break spreads the burst evenly) and token-based (total_tokens with the increment and minimum_tokens make the same greedy choice on prompt tokens). minimum_tokens therefore equals total_tokens exactly (0 %) and differs from round_robin by a few percent either way. What the seed gained there comes from prefill-bound TTFT on a large model; here the variable *output* lengths, which no method knows at dispatch, decide how long a rank stays loaded, so max/mean rank load exceeds 1.1 for every method in the all-at-once loads.
- Under DP attention the ranks prefill in lockstep: a burst spread over all ranks is prefilled in one pass, while requests stacked on one rank are prefilled pass after pass (with the other ranks idle). round_robin spreads every burst by count; the token-based methods send the requests of a burst to the momentarily emptiest rank. That is why round_robin has the lowest mean TTFT under the moderate bursty load (DP 8: ${fx(get(8, 'bursty 7.5/s/rank', 'round_robin').metrics.ttft.mean, 0)} ms against minimum_tokens ${fx(get(8, 'bursty 7.5/s/rank', 'minimum_tokens').metrics.ttft.mean, 0)} ms) and a lower p99 ITL, although its time-averaged rank load is the least even (${fx(get(8, 'bursty 7.5/s/rank', 'round_robin').sim.rankLoadImbalance, 3)} against ${fx(get(8, 'bursty 7.5/s/rank', 'minimum_tokens').sim.rankLoadImbalance, 3)}). At 10 requests/s per rank the ranks are past saturation, every method queues for running slots, and mean TTFT differs by a few percent.
- Where snapshots go stale between dispatches (the bursty loads), the in-flight accounting shows: total_tokens without the increment herds onto the rank whose snapshot looks emptiest (the seed's pile-up: worst pile-up ${get(8, 'bursty 7.5/s/rank', 'total_tokens (no increment)').sim.peakWaitingOneRank.reqs} waiting requests on one rank at DP 8, 7.5/s, mean TTFT ${fx(get(8, 'bursty 7.5/s/rank', 'total_tokens (no increment)').metrics.ttft.mean, 0)} ms), the increment fixes most of it (${fx(get(8, 'bursty 7.5/s/rank', 'total_tokens').metrics.ttft.mean, 0)} ms), and minimum_tokens, which keeps unacknowledged requests until a snapshot counts them, is lowest of the three (${fx(get(8, 'bursty 7.5/s/rank', 'minimum_tokens').metrics.ttft.mean, 0)} ms).
- Simulator change made after the first E2 results: at first a dispatched request was queued on its rank at the dispatch instant, mid-pass, so the rank's next snapshot always counted it and total_tokens' increments were never overwritten by an older count — the failure the seeds describe could not happen. The simulator now delivers a request dispatched during a rank's pass when that pass ends, after its snapshot, as the real engine does (the rank worker is blocked in onnxruntime's run during a forward and takes its messages between passes; SGLang's scheduler receives at the top of its loop). It is the default (\`--sim-instant-delivery\` restores the old behaviour); E1 and E2 were both re-run with it. It moved minimum_tokens against total_tokens from ${'${'}'-5–8 %'${'}'} to the numbers above, and did not change any verdict except the DP 8, 7.5/s one against total_tokens.
`;
writeBenchSection('e2', doc);
console.log(doc);
