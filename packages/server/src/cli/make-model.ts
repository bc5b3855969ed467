import { InvalidConfigError } from '@tsinfer/core';
import { type BuiltModel, buildModel, isPresetName, PRESETS } from '@tsinfer/runtime';
import type { Command } from 'commander';
import { createProgress } from './progress.js';

export interface MakeModelFlags {
  preset: string;
  out: string;
  seed: string;
  dtype: string;
  layout: string;
}

/** Validates the flags of `tsinfer make-model` and builds the model. */
export async function makeModel(flags: MakeModelFlags): Promise<BuiltModel> {
  if (!isPresetName(flags.preset)) {
    throw new InvalidConfigError(
      '--preset',
      `unknown preset "${flags.preset}"; one of ${Object.keys(PRESETS).join(', ')}`,
    );
  }
  const seed = Number(flags.seed);
  if (!Number.isInteger(seed))
    throw new InvalidConfigError('--seed', `must be an integer; got "${flags.seed}"`);
  if (flags.dtype !== 'fp32' && flags.dtype !== 'fp16') {
    throw new InvalidConfigError('--dtype', `must be fp32 or fp16; got "${flags.dtype}"`);
  }
  if (flags.layout !== 'genai' && flags.layout !== 'optimum') {
    throw new InvalidConfigError('--layout', `must be genai or optimum; got "${flags.layout}"`);
  }
  const progress = createProgress(`building ${flags.preset}`);
  try {
    return await buildModel({
      preset: flags.preset,
      outDir: flags.out,
      seed,
      dtype: flags.dtype,
      layout: flags.layout,
      onProgress: (done, total) => progress.update(done, total),
    });
  } finally {
    progress.stop();
  }
}

export function registerMakeModel(program: Command): void {
  program
    .command('make-model')
    .description(
      'Build a Llama-architecture decoder ONNX model with seeded random weights, a tokenizer and its config',
    )
    .requiredOption('--preset <name>', `model size: ${Object.keys(PRESETS).join(' | ')}`)
    .requiredOption('--out <dir>', 'directory to write the model into')
    .option('--seed <n>', 'weight seed; the same seed writes byte-identical files', '0')
    .option(
      '--dtype <dtype>',
      'fp32 (CPU) or fp16 (CUDA: GroupQueryAttention has no fp32 CUDA kernel)',
      'fp32',
    )
    .option(
      '--layout <layout>',
      'genai (GroupQueryAttention, genai_config.json) or optimum (config.json)',
      'genai',
    )
    .action(async (flags: MakeModelFlags) => {
      const built = await makeModel(flags);
      const mb = (built.weightBytes / 2 ** 20).toFixed(1);
      console.log(
        `wrote ${built.dir}: ${built.layout} layout, ${built.dtype}, ${(built.parameters / 1e6).toFixed(1)}M parameters ` +
          `(${mb} MiB of weights), vocab ${built.vocabSize}, in ${(built.ms / 1000).toFixed(1)} s`,
      );
    });
}
