import { InvalidConfigError } from '@tsinfer/core';
import { type CalibrationResult, type Device, OnnxRunner, runCalibrateCommand } from '@tsinfer/runtime';
import type { Command } from 'commander';
import { createProgress } from './progress.js';

export interface CalibrateFlags {
  modelPath: string;
  device: string;
  out?: string;
  repeats?: string;
  summary: string;
  threads?: string;
  maxTotalTokens?: string;
  maxBatch?: string;
  maxContext?: string;
}

function positiveInt(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InvalidConfigError(flag, `must be an integer >= 1; got "${value}"`);
  return n;
}

/** `tsinfer calibrate`: measures forwards of a model and fits the simulator's cost model. */
export async function calibrateModel(flags: CalibrateFlags): Promise<CalibrationResult> {
  if (flags.device !== 'cpu' && flags.device !== 'cuda') {
    throw new InvalidConfigError('--device', `must be cpu or cuda; got "${flags.device}"`);
  }
  if (flags.summary !== 'median' && flags.summary !== 'min') {
    throw new InvalidConfigError('--summary', `must be median or min; got "${flags.summary}"`);
  }
  const repeats = positiveInt('--repeats', flags.repeats);
  const threads = positiveInt('--threads', flags.threads);
  const maxTotalTokens = positiveInt('--max-total-tokens', flags.maxTotalTokens);
  const maxBatch = positiveInt('--max-batch', flags.maxBatch);
  const maxContext = positiveInt('--max-context', flags.maxContext);
  const progress = createProgress('calibrating');
  try {
    return await runCalibrateCommand({
      modelPath: flags.modelPath,
      device: flags.device,
      summary: flags.summary,
      ...(flags.out ? { out: flags.out } : {}),
      ...(repeats ? { repeats } : {}),
      ...(maxBatch ? { maxBatch } : {}),
      ...(maxContext
        ? {
            prefillLengths: [16, 64, 256, 1024].filter((n) => n <= maxContext),
            decodeContexts: [16, 256, 1024].filter((n) => n <= maxContext),
            chunkStarts: [256, 1024].filter((n) => n < maxContext),
          }
        : {}),
      openRunner: (dir, device) =>
        OnnxRunner.create({
          modelDir: dir,
          device: device as Device,
          ...(threads ? { intraOpThreads: threads } : {}),
          ...(maxTotalTokens ? { maxTotalTokens } : {}),
        }),
      onProgress: (p) => progress.update(p.done, p.total),
    });
  } finally {
    progress.stop();
  }
}

export function registerCalibrate(program: Command): void {
  program
    .command('calibrate')
    .description("Time a model's forwards and fit the simulated runner's cost model (a sim: profile)")
    .requiredOption(
      '--model-path <path>',
      'a model directory, or sim:<profile.json> (calibrates the simulator itself)',
    )
    .option('--device <device>', 'cpu or cuda', 'cpu')
    .option('--out <file>', 'write the fitted profile JSON here')
    .option('--repeats <n>', 'timed repetitions per design point')
    .option('--summary <how>', 'median or min of the repetitions', 'median')
    .option('--threads <n>', 'onnxruntime intra-op threads')
    .option('--max-total-tokens <n>', 'KV cache capacity in tokens for the calibration runner')
    .option('--max-batch <n>', 'largest decode batch to measure')
    .option('--max-context <n>', 'longest prompt / context to measure')
    .action(async (flags: CalibrateFlags) => {
      const result = await calibrateModel(flags);
      const q = result.quality;
      console.log(
        JSON.stringify(
          { cost: result.profile.cost, r2: q.r2, meanAbsRelativeError: q.meanAbsRelativeError },
          null,
          2,
        ),
      );
      if (flags.out) console.error(`wrote ${flags.out}`);
    });
}
