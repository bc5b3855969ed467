/**
 * `tsx --conditions=@tsinfer/source packages/runtime/src/calibrate/cli.ts
 *    --model-path <dir | sim:profile.json> [--device cpu|cuda] [--out profile.json]
 *    [--repeats 5] [--summary median|min] [--threads N] [--max-total-tokens N] [--max-batch N] [--max-context N]`
 *
 * A developer's entry point to `runCalibrateCommand` with the ONNX runner
 * wired in (the server's `tsinfer calibrate` has its own). Draws progress on
 * stderr, prints the fit as JSON on stdout.
 */
import { parseArgs } from 'node:util';
import { InvalidConfigError } from '@tsinfer/core';
import type { Device } from '../execution/device.js';
import { OnnxRunner } from '../execution/onnx-runner.js';
import { runCalibrateCommand } from './command.js';

function intFlag(values: Record<string, unknown>, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InvalidConfigError(`--${name}`, `must be an integer >= 1, got ${String(v)}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'model-path': { type: 'string' },
      device: { type: 'string', default: 'cpu' },
      out: { type: 'string' },
      repeats: { type: 'string' },
      threads: { type: 'string' },
      'max-total-tokens': { type: 'string' },
      'max-batch': { type: 'string' },
      'max-context': { type: 'string' },
      summary: { type: 'string', default: 'median' },
    },
  });
  const modelPath = values['model-path'];
  if (!modelPath)
    throw new InvalidConfigError('--model-path', 'required: a model directory or sim:<profile.json>');
  const device = values.device;
  if (device !== 'cpu' && device !== 'cuda')
    throw new InvalidConfigError('--device', `cpu or cuda, got ${device}`);
  const repeats = intFlag(values, 'repeats');
  const threads = intFlag(values, 'threads');
  const maxTotalTokens = intFlag(values, 'max-total-tokens');
  const maxBatch = intFlag(values, 'max-batch');
  const maxContext = intFlag(values, 'max-context');
  const summary = values.summary;
  if (summary !== 'median' && summary !== 'min')
    throw new InvalidConfigError('--summary', `median or min, got ${summary}`);
  const t0 = performance.now();
  const result = await runCalibrateCommand({
    modelPath,
    device,
    ...(values.out ? { out: values.out } : {}),
    ...(repeats ? { repeats } : {}),
    summary,
    ...(maxBatch ? { maxBatch } : {}),
    ...(maxContext
      ? {
          prefillLengths: [16, 64, 256, 1024].filter((n) => n <= maxContext),
          decodeContexts: [16, 256, 1024].filter((n) => n <= maxContext),
          chunkStarts: [256, 1024].filter((n) => n < maxContext),
        }
      : {}),
    openRunner: (dir, dev) =>
      OnnxRunner.create({
        modelDir: dir,
        device: dev as Device,
        ...(threads ? { intraOpThreads: threads } : {}),
        ...(maxTotalTokens ? { maxTotalTokens } : {}),
      }),
    onProgress: (p) => {
      process.stderr.write(`\r[${p.done}/${p.total}] ${p.phase}: ${p.label}`.padEnd(70));
      if (p.phase === 'fit') process.stderr.write('\n');
    },
  });
  const q = result.quality;
  const out = {
    seconds: Math.round((performance.now() - t0) / 100) / 10,
    cost: result.profile.cost,
    r2: q.r2,
    rmsResidualMs: q.rmsResidualMs,
    meanAbsRelativeError: q.meanAbsRelativeError,
    maxAbsRelativeError: q.maxAbsRelativeError,
    points: q.residuals.map((r) => ({
      label: r.label,
      measuredMs: Math.round(r.measuredMs * 1000) / 1000,
      predictedMs: Math.round(r.predictedMs * 1000) / 1000,
    })),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 1;
});
