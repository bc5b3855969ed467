/**
 * Decode step time, native backend vs JS backend, on CPU.
 *
 *   npx tsx --conditions=@tsinfer/source packages/runtime/native/bench.mts [tiny|small ...]
 *
 * Per model and batch size: B requests are prefilled with `past` tokens each,
 * then `steps` greedy decode steps over all B are timed (median forward ms).
 * Both backends hold the same requests; their decode steps alternate (never
 * concurrent) with the same intra-op threads, so a noisy host's drift hits
 * both alike; the greedy tokens of the two are compared as a check.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ModelRunner } from '../src/contract.js';
import { OnnxRunner } from '../src/execution/onnx-runner.js';
import { buildModel } from '../src/model-builder/index.js';
import { NativeRunner } from '../src/native/runner.js';
import { GREEDY } from '../test/fixtures/schedules.js';

const CASES = {
  tiny: { batches: [1, 8, 32, 64], past: 256, steps: 30 },
  small: { batches: [1, 8, 16], past: 128, steps: 20 },
} as const;

const threads = Number(process.env.THREADS ?? cpus().length);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/** Prefills B requests of about `past` tokens on each runner (same prompts). */
async function prefill(runners: ModelRunner[], B: number, past: number): Promise<number[]> {
  const V = (runners[0] as ModelRunner).info.vocabSize;
  let x = 12345;
  const rnd = () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return 3 + (x % (V - 3));
  };
  const ids = Array.from({ length: B }, (_, i) => i);
  for (const id of ids) {
    const tokens = Int32Array.from({ length: past - (id % 7) }, rnd);
    for (const r of runners) {
      await r.forward({
        free: [],
        add: [{ id, sampling: GREEDY }],
        prefill: [{ id, tokens, start: 0, sample: true }],
        decode: [],
      });
    }
  }
  return ids;
}

type Timed = ModelRunner & { lastStep: { sessionMs: number } };

/** Decode steps alternating between the runners (so drift on a noisy host hits both alike); medians. */
async function measure(runners: Timed[], ids: number[], steps: number) {
  const total = runners.map(() => [] as number[]);
  const session = runners.map(() => [] as number[]);
  const tokens = runners.map(() => [] as number[]);
  for (let s = 0; s < steps + 2; s++) {
    for (let r = 0; r < runners.length; r++) {
      const runner = runners[r] as Timed;
      const t0 = performance.now();
      const out = await runner.forward({ free: [], add: [], prefill: [], decode: ids });
      const ms = performance.now() - t0;
      if (s >= 2) {
        total[r]?.push(ms);
        session[r]?.push(runner.lastStep.sessionMs);
      }
      tokens[r]?.push(...out.tokens);
    }
  }
  for (const r of runners) await r.forward({ free: ids, add: [], prefill: [], decode: [] });
  return runners.map((_, r) => ({
    ms: median(total[r] ?? []),
    sessionMs: median(session[r] ?? []),
    tokens: tokens[r] ?? [],
  }));
}

const which = process.argv.slice(2).filter((a): a is keyof typeof CASES => a in CASES);
for (const name of which.length > 0 ? which : (['tiny', 'small'] as const)) {
  const c = CASES[name];
  const root = await mkdtemp(join(tmpdir(), `tsinfer-bench-${name}-`));
  try {
    const dir = join(root, 'model');
    await buildModel({ preset: name, outDir: dir, seed: 1, dtype: 'fp32', layout: 'genai' });
    const maxB = Math.max(...c.batches);
    const maxSeqLen = Number(process.env.MAX_SEQ ?? c.past + 64);
    const js = await OnnxRunner.create({
      modelDir: dir,
      maxTotalTokens: maxB * maxSeqLen,
      intraOpThreads: threads,
    });
    const nat = await NativeRunner.create({
      modelDir: dir,
      maxTotalTokens: maxB * maxSeqLen,
      intraOpThreads: threads,
      maxSlots: maxB,
      maxSeqLen,
    });
    try {
      for (const B of c.batches) {
        const ids = await prefill([js, nat], B, c.past);
        const [a, b] = (await measure([js, nat], ids, c.steps)) as [
          Awaited<ReturnType<typeof measure>>[0],
          Awaited<ReturnType<typeof measure>>[0],
        ];
        const same = a.tokens.every((t, i) => t === b.tokens[i]);
        console.log(
          `${name} B=${B} past~${c.past}: js ${a.ms.toFixed(2)} ms (run ${a.sessionMs.toFixed(2)}) | native ${b.ms.toFixed(2)} ms (run ${b.sessionMs.toFixed(2)}) | speedup ${(a.ms / b.ms).toFixed(2)}x | tokens ${same ? 'identical' : 'DIFFER'}`,
        );
      }
    } finally {
      await js.close();
      await nat.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
