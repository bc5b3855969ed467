import { type Clock, createRng } from '@tsinfer/core';
import { DEFAULT_SAMPLING, type ForwardBatch, type ModelRunner, type PrefillChunk } from '../contract.js';
import { COST_TERMS, type CostTerm, type StepFeatures, stepFeatures } from '../sim/cost.js';
import { SIM_PROFILE_FORMAT, type SimProfile } from '../sim/profile.js';
import { type CostSample, type FitQuality, fitCostModel, median } from './fit.js';

/** Progress of a calibration run, for a progress bar. */
export interface CalibrateProgress {
  /** Timed passes done and planned. */
  readonly done: number;
  readonly total: number;
  readonly phase: 'warmup' | 'empty' | 'prefill' | 'chunked-prefill' | 'decode' | 'mixed' | 'fit';
  /** The design point being measured. */
  readonly label: string;
}

export interface CalibrateOptions {
  /** Times each pass (systemClock for a real runner; the virtual clock a sim runner advances). */
  readonly clock: Clock;
  /** Timed passes per design point. Default 5. */
  readonly repeats?: number;
  /**
   * How a point's repeats become its time: 'median' (default) or 'min' (the
   * better estimate of the intrinsic cost on a machine whose other load only
   * ever adds time).
   */
  readonly summary?: 'median' | 'min';
  /** Untimed passes first (JIT, allocator, session warm-up). Default 3. */
  readonly warmup?: number;
  /** Prompt lengths of whole-prompt prefill passes. Default [16, 64, 256, 1024]. */
  readonly prefillLengths?: readonly number[];
  /** Prompts per prefill pass. Default [1, 4]. */
  readonly prefillBatchSizes?: readonly number[];
  /** Chunked prefill: cache lengths before the chunk. Default [256, 1024]. */
  readonly chunkStarts?: readonly number[];
  /** Chunked prefill: chunk lengths. Default [32, 256]. */
  readonly chunkLengths?: readonly number[];
  /** Decode batch sizes. Default [1, 2, 4, 8, 16, 32, 64]. */
  readonly decodeBatchSizes?: readonly number[];
  /** Decode context lengths (cache length before the timed passes). Default [16, 256, 1024]. */
  readonly decodeContexts?: readonly number[];
  /** Mixed passes (a decode batch plus one prefill chunk): [decode rows, context, prefill length]. */
  readonly mixed?: readonly (readonly [number, number, number])[];
  /** Most rows per pass the runner accepts (design points above it are skipped). */
  readonly maxBatch?: number;
  /** Longest prompt chunk per setup pass. Default 2048. */
  readonly maxSetupChunk?: number;
  /** Terms to fit (default: all that the design exercises). */
  readonly terms?: readonly CostTerm[];
  readonly weighting?: 'relative' | 'absolute';
  /** Seeds the prompt tokens. Default 0. */
  readonly seed?: number;
  /** Device name for the profile (e.g. 'cpu', 'cuda'). */
  readonly device?: string;
  /** The profile's `source`; default says what was calibrated where and when. */
  readonly source?: string;
  /** Timestamp for the profile (default now). */
  readonly date?: string;
  readonly onProgress?: (progress: CalibrateProgress) => void;
}

/** One design point's measurements. */
export interface CalibrationPoint extends CostSample {
  readonly label: string;
  readonly phase: CalibrateProgress['phase'];
  /** Every timed pass, in ms. */
  readonly timesMs: readonly number[];
}

export interface CalibrationResult {
  readonly profile: SimProfile;
  readonly quality: FitQuality;
  readonly points: readonly CalibrationPoint[];
}

const GREEDY = DEFAULT_SAMPLING;

const EMPTY: ForwardBatch = { free: [], add: [], prefill: [], decode: [] };

/**
 * Runs a designed set of forward passes against `runner`, times each with
 * `options.clock`, and fits the cost model by non-negative least squares.
 * Works with any ModelRunner; the runner should hold no requests when called
 * and holds none when this returns.
 */
export async function calibrate(runner: ModelRunner, options: CalibrateOptions): Promise<CalibrationResult> {
  const info = runner.info;
  const repeats = options.repeats ?? 5;
  if (!(Number.isSafeInteger(repeats) && repeats >= 1))
    throw new RangeError(`calibrate: repeats must be >= 1, got ${repeats}`);
  const cap = info.kvCapacityTokens;
  const ctxMax = info.contextLength;
  const maxBatch = options.maxBatch ?? Number.POSITIVE_INFINITY;
  const maxSetupChunk = options.maxSetupChunk ?? 2048;
  const rng = createRng(options.seed ?? 0);
  const clock = options.clock;

  const seqLens = new Map<number, number>();
  let nextId = 0;
  const tokens = (n: number): Int32Array => {
    const t = new Int32Array(n);
    for (let i = 0; i < n; i++) t[i] = rng.int(0, info.vocabSize - 1);
    return t;
  };
  const run = async (batch: ForwardBatch): Promise<void> => {
    for (const id of batch.free) seqLens.delete(id);
    for (const r of batch.add) seqLens.set(r.id, 0);
    await runner.forward(batch);
    for (const c of batch.prefill) seqLens.set(c.id, c.start + c.tokens.length);
    for (const id of batch.decode) seqLens.set(id, (seqLens.get(id) ?? 0) + 1);
  };
  const timed = async (batch: ForwardBatch): Promise<{ ms: number; features: StepFeatures }> => {
    const freed = new Set(batch.free);
    const features = stepFeatures(batch, (id) => (freed.has(id) ? 0 : (seqLens.get(id) ?? 0)));
    const t0 = clock.nowMs();
    await run(batch);
    return { ms: clock.nowMs() - t0, features };
  };
  /** Adds `count` requests and fills each to `len` tokens with a sampled token (untimed). */
  const setup = async (count: number, len: number): Promise<number[]> => {
    const ids = Array.from({ length: count }, () => nextId++);
    const rowsPerPass = Math.max(1, Math.min(count, maxBatch));
    for (let at = 0; at < count; at += rowsPerPass) {
      const group = ids.slice(at, at + rowsPerPass);
      let first = true;
      for (let start = 0; start < len; start += maxSetupChunk) {
        const n = Math.min(maxSetupChunk, len - start);
        await run({
          free: [],
          add: first ? group.map((id) => ({ id, sampling: GREEDY })) : [],
          prefill: group.map((id) => ({ id, start, tokens: tokens(n), sample: start + n === len })),
          decode: [],
        });
        first = false;
      }
    }
    return ids;
  };
  const release = async (ids: readonly number[]): Promise<void> => {
    if (ids.length > 0) await run({ ...EMPTY, free: [...ids] });
  };

  // The design, filtered by what the runner can hold.
  type Point = {
    phase: CalibrationPoint['phase'];
    label: string;
    measure: () => Promise<{ ms: number; features: StepFeatures }[]>;
  };
  const points: Point[] = [];
  points.push({
    phase: 'empty',
    label: 'empty pass',
    measure: async () => {
      const out = [];
      for (let k = 0; k < repeats; k++) out.push(await timed(EMPTY));
      return out;
    },
  });
  for (const len of options.prefillLengths ?? [16, 64, 256, 1024]) {
    for (const b of options.prefillBatchSizes ?? [1, 4]) {
      if (len > ctxMax || b * len > cap || b > maxBatch) continue;
      points.push({
        phase: 'prefill',
        label: `prefill ${b}x${len}`,
        measure: async () => {
          const out = [];
          for (let k = 0; k < repeats; k++) {
            const ids = Array.from({ length: b }, () => nextId++);
            out.push(
              await timed({
                free: [],
                add: ids.map((id) => ({ id, sampling: GREEDY })),
                prefill: ids.map((id) => ({ id, start: 0, tokens: tokens(len), sample: true })),
                decode: [],
              }),
            );
            await release(ids);
          }
          return out;
        },
      });
    }
  }
  for (const start of options.chunkStarts ?? [256, 1024]) {
    for (const n of options.chunkLengths ?? [32, 256]) {
      if (start + n > ctxMax || start + n > cap) continue;
      points.push({
        phase: 'chunked-prefill',
        label: `chunk ${n} at ${start}`,
        measure: async () => {
          const out = [];
          for (let k = 0; k < repeats; k++) {
            const [id] = await setup(1, start);
            const chunk: PrefillChunk = { id: id!, start, tokens: tokens(n), sample: true };
            out.push(await timed({ ...EMPTY, prefill: [chunk] }));
            await release([id!]);
          }
          return out;
        },
      });
    }
  }
  for (const ctx of options.decodeContexts ?? [16, 256, 1024]) {
    for (const b of options.decodeBatchSizes ?? [1, 2, 4, 8, 16, 32, 64]) {
      if (ctx + repeats > ctxMax || b * (ctx + repeats) > cap || b > maxBatch) continue;
      points.push({
        phase: 'decode',
        label: `decode ${b} at ${ctx}`,
        measure: async () => {
          const ids = await setup(b, ctx);
          const out = [];
          for (let k = 0; k < repeats; k++) out.push(await timed({ ...EMPTY, decode: ids }));
          await release(ids);
          return out;
        },
      });
    }
  }
  const mixed = options.mixed ?? [
    [4, 256, 64],
    [4, 256, 256],
    [32, 256, 64],
    [32, 256, 256],
  ];
  for (const [b, ctx, len] of mixed) {
    if (
      ctx + repeats > ctxMax ||
      len > ctxMax ||
      b * (ctx + repeats) + len * repeats > cap ||
      b + 1 > maxBatch
    )
      continue;
    points.push({
      phase: 'mixed',
      label: `mixed decode ${b} at ${ctx} + prefill ${len}`,
      measure: async () => {
        const ids = await setup(b, ctx);
        const out = [];
        for (let k = 0; k < repeats; k++) {
          const id = nextId++;
          out.push(
            await timed({
              free: [],
              add: [{ id, sampling: GREEDY }],
              prefill: [{ id, start: 0, tokens: tokens(len), sample: true }],
              decode: ids,
            }),
          );
          await release([id]);
        }
        await release(ids);
        return out;
      },
    });
  }

  const total = points.length * repeats;
  let done = 0;
  const report = (phase: CalibrateProgress['phase'], label: string): void =>
    options.onProgress?.({ done, total, phase, label });

  const warmup = options.warmup ?? 3;
  for (let k = 0; k < warmup; k++) {
    report('warmup', `warmup ${k + 1}/${warmup}`);
    const len = Math.min(64, ctxMax - 1, cap - 1);
    if (len < 1) break;
    const ids = await setup(1, len);
    await run({ ...EMPTY, decode: ids });
    await release(ids);
  }

  const measured: CalibrationPoint[] = [];
  for (const p of points) {
    report(p.phase, p.label);
    const runs = await p.measure();
    done += runs.length;
    const features = Object.fromEntries(
      COST_TERMS.map((t) => [t, runs.reduce((s, r) => s + r.features[t], 0) / runs.length]),
    ) as StepFeatures;
    const timesMs = runs.map((r) => r.ms);
    const measuredMs = options.summary === 'min' ? Math.min(...timesMs) : median(timesMs);
    measured.push({ phase: p.phase, label: p.label, features, timesMs, measuredMs });
  }
  report('fit', 'fitting');
  const fit = fitCostModel(measured, {
    ...(options.terms ? { terms: options.terms } : {}),
    ...(options.weighting ? { weighting: options.weighting } : {}),
  });
  const date = options.date ?? new Date().toISOString();
  const device = options.device ?? 'unknown';
  const q = fit.quality;
  const profile: SimProfile = {
    format: SIM_PROFILE_FORMAT,
    source:
      options.source ??
      `calibrated by tsinfer calibrate against ${info.name} on device ${device} at ${date} (${q.samples} design points x ${repeats} passes, R² ${q.r2.toFixed(4)})`,
    model: {
      name: info.name,
      vocabSize: info.vocabSize,
      contextLength: info.contextLength,
      eosTokenIds: [...info.eosTokenIds],
      kvCapacityTokens: info.kvCapacityTokens,
      ...(Number.isFinite(maxBatch) ? { maxBatch } : {}),
    },
    cost: fit.cost,
    generation: { eosProbability: 0 },
    calibration: {
      device,
      date,
      repeats,
      summary: options.summary ?? 'median',
      designPoints: q.samples,
      terms: [...fit.terms],
      r2: q.r2,
      rmsResidualMs: q.rmsResidualMs,
      maxAbsResidualMs: q.maxAbsResidualMs,
      meanAbsRelativeError: q.meanAbsRelativeError,
      maxAbsRelativeError: q.maxAbsRelativeError,
    },
  };
  options.onProgress?.({ done, total, phase: 'fit', label: 'done' });
  return { profile, quality: q, points: measured };
}
