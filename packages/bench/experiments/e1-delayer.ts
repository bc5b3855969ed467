/**
 * E1: the prefill delayer's queue trigger (SGLang PR #23189) in `tsinfer sim`.
 *
 * DP 8 with DP attention (lockstep) on the medium-h100 profile, random
 * dataset 1024 in / 1024 out with range ratio 1.0 (fixed lengths) and 0.8
 * (lengths vary), request rate inf behind a client concurrency cap of 16 to
 * 128. Delayer off against the delayer on with the queue trigger
 * (--prefill-delayer-queue-min-ratio 0.5 and 0.25; --prefill-delayer-max-delay-ms
 * unset = 5000). Every run is `runSim`, i.e. the same thing as
 *   tsinfer sim --model-path sim:medium-h100 --dp-size 8 --enable-dp-attention \
 *     --dataset-name random --random-input-len 1024 --random-output-len 1024 \
 *     --random-range-ratio <r> --max-concurrency <c> --num-prompts <max(512, 8c)> \
 *     [--enable-prefill-delayer --prefill-delayer-queue-min-ratio <q>]
 *
 * Run: npx tsx --conditions=@tsinfer/source packages/bench/experiments/e1-delayer.ts
 * Writes results/e1-delayer.jsonl, results/e1-delayer.html (+ .svg), the bench
 * report results/e1-report/index.html, and the e1 section of docs/benchmarks.md.
 */

import { describeMachine, loadAverage, writeBenchSection } from '@tsinfer/core/bench-doc';
import { DEFAULT_SIM_OPTIONS, runSim, type SimRunResult } from '../src/sim/index.js';
import { benchReport, freshFile, fx, mdTable, type NamedChart, rel, writeCharts } from './lib.js';

const CONCURRENCY = [16, 32, 64, 128];
const RATIOS = [1.0, 0.8];
const CONFIGS = [
  { name: 'off', delayer: null },
  { name: 'on, no queue trigger', delayer: { enabled: true } },
  { name: 'queue 0.5', delayer: { enabled: true, queueMinRatio: 0.5 } },
  { name: 'queue 0.25', delayer: { enabled: true, queueMinRatio: 0.25 } },
] as const;
const DP = 8;
/**
 * medium-h100: the brief's H100 profile (estimated by hand, not calibrated).
 * tiny-cpu: the one profile tsinfer calibrate fitted (tiny model, this CPU),
 * where a prefill pass costs several decode passes; a second data point, not
 * an H100 claim. Input 1000 there so that prompt + output fit its 2048 context.
 */
const PROFILES = [
  { name: 'medium-h100', inputLen: 1024, outputLen: 1024 },
  { name: 'tiny-cpu', inputLen: 1000, outputLen: 1024 },
] as const;
const MAX_DELAY_MS = 5000;

interface Row {
  profile: string;
  config: string;
  ratio: number;
  conc: number;
  r: SimRunResult;
}

const jsonl = await freshFile('e1-delayer.jsonl');
const rows: Row[] = [];
const wall0 = performance.now();
for (const prof of PROFILES) {
  for (const conc of CONCURRENCY) {
    for (const ratio of RATIOS) {
      for (const c of CONFIGS) {
        const r = await runSim(
          {
            ...DEFAULT_SIM_OPTIONS,
            modelPath: `sim:${prof.name}`,
            datasetName: 'random',
            randomInputLen: prof.inputLen,
            randomOutputLen: prof.outputLen,
            randomRangeRatio: ratio,
            numPrompts: Math.max(512, 8 * conc),
            requestRate: Number.POSITIVE_INFINITY,
            maxConcurrency: conc,
            seed: 1,
            tag: `${prof.name} ${c.name} r=${ratio.toFixed(1)}`,
            outputFile: jsonl,
            scheduler: { dpSize: DP, enableDpAttention: true, ...(c.delayer ? { delayer: c.delayer } : {}) },
          },
          { log: () => {} },
        );
        rows.push({ profile: prof.name, config: c.name, ratio, conc, r });
        console.log(
          `${prof.name} c=${conc} r=${ratio} ${c.name}: out ${fx(r.metrics.outputThroughput, 0)} tok/s, TTFT p99 ${fx(r.metrics.ttft.p99, 0)} ms, gap p99 ${fx(r.sim.decodeGapMs.p99)} ms, group prefill passes ${r.sim.groupPrefillPasses}, wall ${fx(r.sim.wallS)} s for ${fx(r.sim.virtualS)} virtual s`,
        );
      }
    }
  }
}
const wallS = (performance.now() - wall0) / 1000;
const virtualS = rows.reduce((a, x) => a + x.r.sim.virtualS, 0);

const get = (profile: string, config: string, ratio: number, conc: number): SimRunResult =>
  rows.find((x) => x.profile === profile && x.config === config && x.ratio === ratio && x.conc === conc)!.r;

// ---- charts ------------------------------------------------------------------
const points = rows.map((x) => ({
  profile: x.profile,
  config: x.config,
  ratio: `range ratio ${x.ratio.toFixed(1)}`,
  concurrency: x.conc,
  output_tok_s: x.r.metrics.outputThroughput,
  decode_gap_p99_ms: x.r.sim.decodeGapMs.p99,
  ttft_p99_ms: x.r.metrics.ttft.p99,
  prefill_passes: x.r.sim.groupPrefillPasses ?? 0,
}));
const line = (y: string, title: string, log = false): NamedChart['spec'] => ({
  width: 380,
  height: 280,
  data: { values: points },
  mark: { type: 'line', point: true },
  encoding: {
    column: { field: 'profile', type: 'nominal', title: '' },
    x: {
      field: 'concurrency',
      type: 'quantitative',
      scale: { type: 'log', base: 2 },
      title: 'max concurrency',
    },
    y: { field: y, type: 'quantitative', title, ...(log ? { scale: { type: 'log' } } : {}) },
    color: { field: 'config', type: 'nominal', title: 'delayer' },
    strokeDash: { field: 'ratio', type: 'nominal', title: '' },
  },
});
const charts: NamedChart[] = [
  {
    title: 'Output throughput',
    note: 'tok/s (virtual time), DP 8 lockstep, medium-h100 profile (estimated, not calibrated).',
    spec: line('output_tok_s', 'output tokens/s'),
  },
  {
    title: 'p99 decode gap',
    note: 'Per rank, time between the ends of consecutive decode passes while it holds running requests; p99 over all ranks.',
    spec: line('decode_gap_p99_ms', 'p99 decode gap (ms)', true),
  },
  {
    title: 'Prefill passes (lockstep passes in which any rank prefilled)',
    note: 'Each of these passes stops decoding on all 8 ranks.',
    spec: line('prefill_passes', 'prefill passes', true),
  },
  {
    title: 'TTFT p99',
    note: 'ms; the queue trigger waits at most --prefill-delayer-max-delay-ms (5000).',
    spec: line('ttft_p99_ms', 'p99 TTFT (ms)'),
  },
];
const chartFiles = await writeCharts(
  'e1-delayer',
  'E1: prefill delayer queue trigger (tsinfer sim, DP 8)',
  charts,
  'Simulated in virtual time; the profile medium-h100 is estimated from H100 measurements, not calibrated by tsinfer.',
);
const report = await benchReport(jsonl, 'e1-report', 'E1 runs (bench report)');

// ---- targets -----------------------------------------------------------------
const targetRows: Array<Array<string | number>> = [];
const verdicts: string[] = [];
for (const prof of PROFILES) {
  for (const c of CONFIGS.filter((x) => x.delayer && 'queueMinRatio' in x.delayer)) {
    let allTp = true;
    let allGap = true;
    let allTtft = true;
    for (const conc of CONCURRENCY) {
      const a = get(prof.name, c.name, 1.0, conc);
      const b = get(prof.name, c.name, 0.8, conc);
      const tp = b.metrics.outputThroughput / a.metrics.outputThroughput;
      const gap = b.sim.decodeGapMs.p99 / a.sim.decodeGapMs.p99;
      const ttft = b.metrics.ttft.p99;
      allTp &&= tp >= 0.95;
      allGap &&= gap <= 1.5;
      allTtft &&= ttft <= MAX_DELAY_MS && a.metrics.ttft.p99 <= MAX_DELAY_MS;
      const off = get(prof.name, 'off', 0.8, conc);
      targetRows.push([
        prof.name,
        c.name,
        conc,
        `${fx(tp * 100)} %`,
        tp >= 0.95 ? 'met' : 'NOT met',
        `${fx(gap, 2)}×`,
        gap <= 1.5 ? 'met' : 'NOT met',
        `${fx(ttft, 0)} ms`,
        ttft <= MAX_DELAY_MS ? 'met' : 'NOT met',
        `${fx(b.metrics.outputThroughput / off.metrics.outputThroughput, 2)}×`,
      ]);
    }
    verdicts.push(
      `- **${prof.name}, ${c.name}**: ratio 0.8 keeps ≥ 95 % of ratio 1.0's output throughput at every concurrency: **${allTp ? 'met' : 'not met'}**; p99 decode gap within 1.5× of ratio 1.0's: **${allGap ? 'met' : 'not met'}**; TTFT p99 bounded by the 5000 ms timeout: **${allTtft ? 'met' : 'not met'}**.`,
    );
  }
}

const mainTable = (profile: string): string =>
  mdTable(
    [
      'conc',
      'range ratio',
      'delayer',
      'out tok/s',
      'TTFT mean / p99 (ms)',
      'ITL p99 (ms)',
      'p99 decode gap (ms)',
      'prefill passes (lockstep / sum over ranks)',
      'admitted per prefill',
    ],
    rows
      .filter((x) => x.profile === profile)
      .map((x) => [
        x.conc,
        x.ratio.toFixed(1),
        x.config,
        fx(x.r.metrics.outputThroughput, 0),
        `${fx(x.r.metrics.ttft.mean, 0)} / ${fx(x.r.metrics.ttft.p99, 0)}`,
        fx(x.r.metrics.itl.p99, 2),
        fx(x.r.sim.decodeGapMs.p99, 2),
        `${x.r.sim.groupPrefillPasses} / ${x.r.sim.prefillPasses}`,
        fx(x.r.sim.meanAdmittedPerPrefill, 1),
      ]),
  );

const collapse = (profile: string): string =>
  CONCURRENCY.map((conc) => {
    const a = get(profile, 'off', 1.0, conc);
    const b = get(profile, 'off', 0.8, conc);
    return `c=${conc}: ${fx(a.metrics.outputThroughput, 0)} → ${fx(b.metrics.outputThroughput, 0)} tok/s (${fx((b.metrics.outputThroughput / a.metrics.outputThroughput) * 100)} %), ${fx((b.sim.groupPrefillPasses ?? 0) / Math.max(1, a.sim.groupPrefillPasses ?? 1), 1)}× the prefill passes, p99 decode gap ${fx(a.sim.decodeGapMs.p99)} → ${fx(b.sim.decodeGapMs.p99)} ms`;
  }).join('; ');
const recovery = (profile: string): string =>
  CONFIGS.filter((x) => x.delayer !== null)
    .map(
      (c) =>
        `${c.name}: ${CONCURRENCY.map((conc) => `c=${conc} ${fx(get(profile, c.name, 0.8, conc).metrics.outputThroughput / get(profile, 'off', 0.8, conc).metrics.outputThroughput, 2)}×`).join(', ')}`,
    )
    .join('; ');
const passRise = (): string => {
  const xs = PROFILES.flatMap((p) =>
    CONCURRENCY.map(
      (c) =>
        (get(p.name, 'off', 0.8, c).sim.groupPrefillPasses ?? 0) /
        Math.max(1, get(p.name, 'off', 1.0, c).sim.groupPrefillPasses ?? 1),
    ),
  );
  return `${fx(Math.min(...xs))}–${fx(Math.max(...xs))}×`;
};
const gapMet = targetRows.filter((r) => r[6] === 'met').map((r) => `${r[0]} ${r[1]} c=${r[2]}`);
const releases = (profile: string): string =>
  CONCURRENCY.map((conc) => {
    const o = get(profile, 'queue 0.5', 0.8, conc).sim.delayerOutcomes ?? {};
    return `c=${conc}: ${o['wait_timeout'] ?? 0} wait_timeout / ${o['wait_success'] ?? 0} wait_success / ${o['no_wait'] ?? 0} no_wait (${o['delay'] ?? 0} delayed passes)`;
  }).join('; ');

const doc = `
## E1 — prefill delayer queue trigger (simulated, DP 8 lockstep)

**Command:** \`npx tsx --conditions=@tsinfer/source packages/bench/experiments/e1-delayer.ts\`
(each run is \`tsinfer sim --model-path sim:<profile> --dp-size 8 --enable-dp-attention --dataset-name random --random-input-len <1024, or 1000 on tiny-cpu> --random-output-len 1024 --random-range-ratio <1.0|0.8> --max-concurrency <16|32|64|128> --num-prompts <max(512, 8c)> --seed 1 [--enable-prefill-delayer [--prefill-delayer-queue-min-ratio <0.5|0.25>]]\`).
**Machine:** ${describeMachine(loadAverage())}; ${rows.length} runs, ${fx(virtualS, 0)} s of virtual time in ${fx(wallS, 1)} s of wall time.
**Raw:** \`${rel(jsonl)}\`; **charts:** \`${rel(chartFiles[0]!)}\` (+ \`.svg\`), bench report \`${rel(report)}\`.

What this is: the real Scheduler, PrefillDelayer (SGLang PR #23189 queue trigger; \`--prefill-delayer-max-delay-ms\` unset = 5000; \`--prefill-delayer-max-delay-passes\` 30) and DP-attention lockstep on 8 SimRunners in virtual time, driven by the bench's random dataset (token ids) and concurrency gate (request rate inf), dispatched by the real DP controller (minimum_tokens over the load-snapshot board); a request dispatched while its rank's pass is in flight reaches the rank when that pass ends, as in the real engine (this delivery point was introduced during E2, see there; these E1 numbers are with it). Four delayer settings: off; on without the queue trigger; on with \`--prefill-delayer-queue-min-ratio\` 0.5 and 0.25 (the PR's typical range is 0.1–0.5).
**Timing models.** \`sim:medium-h100\` (the H100 profile of the issue) is **estimated by hand from H100 measurements of an 852M fp16 model, not calibrated by \`tsinfer calibrate\`**: there a one-request 1024-token prefill pass costs about 6.5 ms against a 3.4–4.3 ms decode pass. \`sim:tiny-cpu\` is the one profile \`tsinfer calibrate\` fitted (tiny model on this CPU), where a 1000-token prefill costs ~16 ms against a ~3.5 ms decode pass at batch 16; it is a second data point for a model whose prefill is relatively dearer, not an H100 claim. SGLang's numbers come from a much larger model on real GPUs: compare shapes and ratios, not tok/s. Lengths 1024/1024 are our choice (the seed does not state SGLang's).
**p99 decode gap** here: per rank, the virtual time between the ends of two consecutive decode passes while the rank holds running requests (prefill and forced-idle passes in between count in full), pooled over the 8 ranks, p99 — the stall a running request sees between two tokens, which is what SGLang's "p99 decode gap" describes.

SGLang (seed, PR #23189): range ratio 1.0 → 0.8 with the delayer off: 7830 → 3846 tok/s (49 %), 62× more prefill passes, p99 decode gap 27.6 → 396.9 ms; the queue trigger recovered 1.16–1.85× (concurrency 16–128).

**tsinfer sim, medium-h100.** Delayer off, ratio 1.0 → 0.8: ${collapse('medium-h100')}.
Delayer on, against off at ratio 0.8 (output throughput): ${recovery('medium-h100')}.

${mainTable('medium-h100')}

**tsinfer sim, tiny-cpu (calibrated).** Delayer off, ratio 1.0 → 0.8: ${collapse('tiny-cpu')}.
Delayer on, against off at ratio 0.8: ${recovery('tiny-cpu')}.

${mainTable('tiny-cpu')}

Targets (ratio 0.8 with the trigger against ratio 1.0 with the same delayer setting; last column: against the delayer off at ratio 0.8):

${mdTable(['profile', 'trigger', 'conc', 'tok/s vs r=1.0', '≥ 95 %', 'gap p99 vs r=1.0', '≤ 1.5×', 'TTFT p99', '≤ 5000 ms', 'vs off'], targetRows)}

${verdicts.join('\n')}

Why, from the runs (not tuned to the target; the code is unchanged by these results):
- The collapse is real but milder than SGLang's: lengths that vary make requests finish one at a time, and each refill is a small prefill pass that stops all 8 lockstep ranks (with the delayer off the lockstep prefill passes rise ${passRise()} from ratio 1.0 to 0.8). How much throughput that costs depends on the prefill-to-decode cost ratio of the model: little on medium-h100, more on tiny-cpu; SGLang's model evidently paid far more per prefill pass.
- With the delayer on, the queue trigger barely decides anything: the releases at ratio 0.8 (queue 0.5, medium-h100) are ${releases('medium-h100')}. Completions, and so new arrivals, land on one or two ranks at a time, so the gathered rows are "mixed" (some ranks want to prefill, some do not) and the base delayer's 30-pass budget (\`--prefill-delayer-max-delay-passes\`) is what merges the prefills; the queue trigger only acts when every rank wants to prefill. That is why "on, no queue trigger", "queue 0.5" and "queue 0.25" give nearly the same numbers.
- The throughput target is missed because the merging is partial and the delay costs running slots: with the delayer on, the lockstep group still runs ${fx((get('medium-h100', 'queue 0.5', 0.8, 128).sim.groupPrefillPasses ?? 0) / Math.max(1, get('medium-h100', 'queue 0.5', 1.0, 128).sim.groupPrefillPasses ?? 1), 1)}× (medium-h100) and ${fx((get('tiny-cpu', 'queue 0.5', 0.8, 128).sim.groupPrefillPasses ?? 0) / Math.max(1, get('tiny-cpu', 'queue 0.5', 1.0, 128).sim.groupPrefillPasses ?? 1), 1)}× (tiny-cpu) as many prefill passes at ratio 0.8 as at ratio 1.0 (c=128), each stopping every rank's decode for the longest rank's prefill, and while a freed slot waits (up to 30 passes) for its refill the batch runs short. At ratio 1.0 the requests of a wave start and finish together, so every rank refills in the same pass and nothing waits. Prefill cost is per request and per token in both profiles, so merging saves only the cross-rank stalls.
- The decode-gap target is met only in ${gapMet.length > 0 ? gapMet.join(', ') : 'no setting'}; elsewhere it is missed because at ratio 1.0 prefill passes are so rare (once per ~1000 decode passes) that fewer than 1 % of gaps contain one, so its p99 is a plain decode pass; at ratio 0.8 even the merged, rarer prefills hit more than 1 % of gaps, and each merged pass prefills several prompts, so the p99 gap is one batched prefill pass long. TTFT p99 stays far below the 5000 ms timeout everywhere.
`;
writeBenchSection('e1', doc);
console.log(doc);
