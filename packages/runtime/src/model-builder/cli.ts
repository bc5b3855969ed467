/**
 * `tsx --conditions=@tsinfer/source packages/runtime/src/model-builder/cli.ts
 *    --preset tiny --out models/tiny [--dtype fp32|fp16] [--layout genai|optimum] [--seed 0] [--inline]
 *    [--threads N] [--no-tokenizer]`
 *
 * A developer's entry point to `buildModel` (the server's `tsinfer` CLI has
 * its own); draws a progress bar on stderr and prints the result as JSON.
 */
import { parseArgs } from 'node:util';
import { InvalidConfigError } from '@tsinfer/core';
import { buildModel, type Layout, type WeightDtype } from './build.js';
import type { PresetName } from './presets.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      preset: { type: 'string', default: 'tiny' },
      out: { type: 'string' },
      dtype: { type: 'string', default: 'fp32' },
      layout: { type: 'string', default: 'genai' },
      seed: { type: 'string', default: '0' },
      inline: { type: 'boolean', default: false },
      threads: { type: 'string' },
      'no-tokenizer': { type: 'boolean', default: false },
    },
  });
  if (!values.out) throw new InvalidConfigError('--out', 'required: the directory to write the model into');
  const seed = Number(values.seed);
  let last = -1;
  const tty = process.stderr.isTTY;
  const result = await buildModel({
    preset: values.preset as PresetName,
    outDir: values.out,
    seed,
    dtype: values.dtype as WeightDtype,
    layout: values.layout as Layout,
    externalData: !values.inline,
    tokenizer: !values['no-tokenizer'],
    ...(values.threads === undefined ? {} : { threads: Number(values.threads) }),
    onProgress: (done, total) => {
      const pct = total === 0 ? 100 : Math.floor((done / total) * 100);
      if (pct === last) return;
      last = pct;
      const width = 30;
      const fill = Math.round((pct / 100) * width);
      const line = `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${pct}% ${(done / 2 ** 20).toFixed(0)}/${(total / 2 ** 20).toFixed(0)} MiB`;
      if (tty) process.stderr.write(`\r${line}`);
      else if (pct % 10 === 0) process.stderr.write(`${line}\n`);
    },
  });
  if (tty) process.stderr.write('\n');
  const { shape, ...rest } = result;
  process.stdout.write(`${JSON.stringify({ ...rest, shape, ms: Math.round(result.ms) }, null, 2)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
