import { writeFile } from 'node:fs/promises';
import { type Clock, InvalidConfigError, ManualClock, systemClock } from '@tsinfer/core';
import type { ModelRunner } from '../contract.js';
import { loadSimProfile, parseModelPath, serializeSimProfile } from '../sim/profile.js';
import { SimRunner } from '../sim/runner.js';
import { type CalibrateOptions, type CalibrationResult, calibrate } from './calibrate.js';

/** Opens a runner for a model directory on a device (the ONNX loader, wired by the CLI). */
export type OpenRunner = (dir: string, device: string) => Promise<ModelRunner>;

export interface CalibrateCommandOptions extends Omit<CalibrateOptions, 'clock' | 'device'> {
  /** `--model-path`: a model directory, or `sim:<profile.json>` (calibrates the simulator in virtual time). */
  readonly modelPath: string;
  /** `--device`, e.g. 'cpu' or 'cuda'. Default 'cpu'. */
  readonly device?: string;
  /** `--out`: where to write the profile JSON; absent: not written. */
  readonly out?: string;
  /** Opens model directories; required for a directory `modelPath`. */
  readonly openRunner?: OpenRunner;
  /** Times real runners. Default systemClock. */
  readonly clock?: Clock;
}

/**
 * `tsinfer calibrate --model-path <dir> --device <d> --out profile.json`:
 * opens the model, runs `calibrate`, writes the profile, closes the runner.
 * A `sim:` model path calibrates a SimRunner of that profile in virtual time
 * (it recovers the profile's own cost model: a self-check of the pipeline).
 */
export async function runCalibrateCommand(options: CalibrateCommandOptions): Promise<CalibrationResult> {
  const { modelPath, out, openRunner } = options;
  const device = options.device ?? 'cpu';
  const parsed = parseModelPath(modelPath);
  let runner: ModelRunner;
  let clock: Clock;
  let maxBatch = options.maxBatch;
  if (parsed.kind === 'sim') {
    const profile = await loadSimProfile(parsed.profilePath);
    const virtual = new ManualClock(0);
    runner = new SimRunner({
      profile,
      wait: async (ms) => {
        virtual.advance(ms);
      },
    });
    clock = virtual;
    maxBatch ??= profile.model.maxBatch;
  } else {
    if (!openRunner) {
      throw new InvalidConfigError(
        '--model-path',
        `calibrating a model directory (${parsed.dir}) needs a runner opener; none was given (pass openRunner)`,
      );
    }
    runner = await openRunner(parsed.dir, device);
    clock = options.clock ?? systemClock;
  }
  try {
    const result = await calibrate(runner, {
      ...options,
      clock,
      device: parsed.kind === 'sim' ? `sim (virtual time, ${device})` : device,
      ...(maxBatch !== undefined ? { maxBatch } : {}),
    });
    if (out) await writeFile(out, serializeSimProfile(result.profile));
    return result;
  } finally {
    await runner.close();
  }
}
