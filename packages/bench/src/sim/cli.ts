/**
 * `tsinfer sim`: bench_serving's client flags (as `tsinfer bench`) plus the
 * server flags of `tsinfer serve` that shape serving (`--model-path sim:…`,
 * the scheduler's, the DP controller's and the prefill delayer's flag
 * tables, composed from their packages, never redefined), run in virtual
 * time. Prints the bench's "Serving Benchmark Result" table, then the
 * simulator's stats; `--output-file` appends the JSONL line.
 */
import { InvalidConfigError } from '@tsinfer/core';
import { PREFILL_DELAYER_FLAGS } from '@tsinfer/delayer';
import {
  LOAD_BALANCE_FLAGS,
  type LoadBalanceMethod,
  parseLoadBalanceMethod,
  parseSchedulerFlags,
  SCHEDULER_FLAGS,
} from '@tsinfer/scheduler';
import type { Command } from 'commander';
import { DATASET_NAMES, type DatasetName } from '../datasets.js';
import { float, int } from '../flag-parsers.js';
import { DEFAULT_SIM_OPTIONS, runSim, type SimOptions } from './run.js';

const camel = (name: string): string => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Raw commander values of `tsinfer sim`, keyed camelCase. */
export type SimFlags = Record<string, string | boolean | undefined>;

/** Turns commander's values into {@link SimOptions}. */
export function parseSimFlags(f: SimFlags): SimOptions {
  const s = (k: string): string | undefined => (typeof f[k] === 'string' ? (f[k] as string) : undefined);
  const d = DEFAULT_SIM_OPTIONS;
  const dataset = s('datasetName') ?? d.datasetName;
  if (!(DATASET_NAMES as readonly string[]).includes(dataset)) {
    throw new InvalidConfigError(
      '--dataset-name',
      `unsupported dataset "${dataset}"; one of ${DATASET_NAMES.join(', ')}`,
    );
  }
  // The scheduler's and the delayer's tables, keyed by flag name without dashes.
  const values: Record<string, unknown> = {};
  for (const def of [...SCHEDULER_FLAGS, ...PREFILL_DELAYER_FLAGS]) {
    const v = f[camel(def.name)];
    if (v !== undefined) values[def.name] = v;
  }
  const scheduler = parseSchedulerFlags(values);
  const lb = (name: string): string | undefined => s(camel(name));
  const opt = <T>(v: string | undefined, fn: (x: string) => T, dflt: T): T =>
    v === undefined ? dflt : fn(v);
  return {
    datasetName: dataset as DatasetName,
    datasetPath: s('datasetPath') ?? '',
    numPrompts: opt(s('numPrompts'), (v) => int('--num-prompts', v, 1), d.numPrompts),
    sharegptOutputLen: opt(s('sharegptOutputLen'), (v) => int('--sharegpt-output-len', v, 0), undefined),
    sharegptContextLen: opt(s('sharegptContextLen'), (v) => int('--sharegpt-context-len', v, 0), undefined),
    randomInputLen: opt(s('randomInputLen'), (v) => int('--random-input-len', v, 0), d.randomInputLen),
    randomOutputLen: opt(s('randomOutputLen'), (v) => int('--random-output-len', v, 0), d.randomOutputLen),
    randomRangeRatio: opt(s('randomRangeRatio'), (v) => float('--random-range-ratio', v), d.randomRangeRatio),
    requestRate: opt(s('requestRate'), (v) => float('--request-rate', v), d.requestRate),
    burstiness: opt(s('burstiness'), (v) => float('--burstiness', v), d.burstiness),
    maxConcurrency: opt(s('maxConcurrency'), (v) => int('--max-concurrency', v, 1), undefined),
    seed: opt(s('seed'), (v) => int('--seed', v, Number.MIN_SAFE_INTEGER), d.seed),
    outputFile: s('outputFile') ?? null,
    outputDetails: f['outputDetails'] === true,
    tag: s('tag'),
    loadsInterval: opt(s('loadsInterval'), (v) => float('--loads-interval', v), undefined),
    tokenizer: s('tokenizer'),
    disableIgnoreEos: f['disableIgnoreEos'] === true,
    modelPath: s('modelPath') ?? d.modelPath,
    scheduler,
    loadBalanceMethod: opt(
      lb('load-balance-method'),
      (v) => parseLoadBalanceMethod(v),
      d.loadBalanceMethod as LoadBalanceMethod,
    ),
    incrementTokens: f['disableTokenIncrement'] !== true,
    loadSnapshotPublishInterval: opt(
      lb('load-snapshot-publish-interval'),
      (v) => int('--load-snapshot-publish-interval', v, Number.MIN_SAFE_INTEGER),
      d.loadSnapshotPublishInterval,
    ),
    loadSnapshotHeartbeatMs: opt(
      lb('load-snapshot-heartbeat-ms'),
      (v) => float('--load-snapshot-heartbeat-ms', v),
      d.loadSnapshotHeartbeatMs,
    ),
    dpRefreshIntervalMs: opt(
      s('dpRefreshIntervalMs'),
      (v) => float('--dp-refresh-interval-ms', v),
      d.dpRefreshIntervalMs,
    ),
    simSampleMs: opt(s('simSampleMs'), (v) => float('--sim-sample-ms', v), d.simSampleMs),
    deliverAtPassEnd: f['simInstantDelivery'] !== true,
  };
}

/** Adds `sim` to a commander program. */
export function registerSim(program: Command): Command {
  const d = DEFAULT_SIM_OPTIONS;
  const cmd = program
    .command('sim')
    .description(
      'Benchmark a simulated server in virtual time: the real scheduler, DP controller and prefill delayer on the sim runner, driven by the bench\'s datasets and arrivals; prints the bench\'s "Serving Benchmark Result" table',
    )
    .option(
      '--model-path <sim:profile>',
      'simulated model: sim:<committed profile> or sim:<file.json>',
      d.modelPath,
    )
    .option('--dataset-name <name>', `workload: ${DATASET_NAMES.join(' | ')}`, d.datasetName)
    .option('--dataset-path <file>', 'ShareGPT-format JSON (default: the shipped data/sharegpt-small.json)')
    .option(
      '--tokenizer <dir>',
      'model directory with tokenizer.json (default: the byte tokenizer of sim: models)',
    )
    .option('--num-prompts <n>', 'number of requests', String(d.numPrompts))
    .option('--sharegpt-output-len <n>', 'override every ShareGPT output length')
    .option('--sharegpt-context-len <n>', 'drop ShareGPT rows whose prompt + output exceed this')
    .option('--random-input-len <n>', 'target input tokens (random datasets)', String(d.randomInputLen))
    .option('--random-output-len <n>', 'target output tokens (random datasets)', String(d.randomOutputLen))
    .option('--random-range-ratio <r>', 'lengths uniform on [max(floor(len*r),1), len]', '0.0')
    .option('--request-rate <r>', 'mean requests per virtual second; inf sends all at once', 'inf')
    .option('--burstiness <b>', "bench_serving's burstiness: 1 = Poisson, < 1 burstier (gamma gaps)", '1.0')
    .option('--max-concurrency <n>', 'client-side cap on in-flight requests')
    .option('--seed <n>', 'random seed (dataset, arrivals, simulated runners)', String(d.seed))
    .option('--output-file <file>', 'JSONL file; one line is appended per run')
    .option('--output-details', 'add per-request arrays to the JSONL line')
    .option('--disable-ignore-eos', 'let EOS end generation (profiles with eosProbability > 0)')
    .option('--tag <tag>', 'tag written to the JSONL line')
    .option(
      '--loads-interval <s>',
      "keep every rank's load snapshot every s virtual seconds in the JSONL line",
    )
    .option(
      '--disable-token-increment',
      'total_tokens without the dispatch-time token increment (SGLang before PR #22614)',
    )
    .option(
      '--dp-refresh-interval-ms <ms>',
      "DP controller's load-budget refresh throttle",
      String(d.dpRefreshIntervalMs),
    )
    .option(
      '--sim-instant-delivery',
      "queue a request on its rank at the dispatch instant (default: when the rank's pass in flight ends, as the real rank worker takes messages between passes)",
    )
    .option(
      '--sim-sample-ms <ms>',
      'virtual ms between exact per-rank load samples (sim stats)',
      String(d.simSampleMs),
    );
  for (const def of [...SCHEDULER_FLAGS, ...LOAD_BALANCE_FLAGS, ...PREFILL_DELAYER_FLAGS]) {
    const help = `${def.help} (${def.range})`;
    if (def.type === 'boolean') cmd.option(def.flag, help);
    else cmd.option(`${def.flag} <v>`, help);
  }
  cmd.action(async (flags: SimFlags) => {
    await runSim(parseSimFlags(flags));
  });
  return cmd;
}
