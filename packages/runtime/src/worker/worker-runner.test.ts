import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY, makePrompts, runBatched } from '../../test/fixtures/schedules.js';
import { buildTiny, type TinyModel } from '../../test/fixtures/tiny-models.js';
import { OnnxRunner } from '../execution/onnx-runner.js';
import { WorkerRunner } from './worker-runner.js';

let model: TinyModel;
beforeAll(async () => {
  model = await buildTiny('genai');
}, 120_000);
afterAll(async () => {
  await model.cleanup();
});

const runnerOptions = () => ({ modelDir: model.dir, maxTotalTokens: 4096, intraOpThreads: 1 });
const crashEntry = { importMetaUrl: import.meta.url, relativeBase: '../../test/fixtures/crash-worker' };

describe('WorkerRunner', () => {
  it('gives the same tokens as the in-thread runner, and reports stats', async () => {
    const prompts = makePrompts(model.vocabSize, 5);
    const local = await OnnxRunner.create(runnerOptions());
    const remote = await WorkerRunner.start({ runner: runnerOptions() });
    try {
      expect(remote.info).toEqual(local.info);
      const a = await runBatched(local, prompts, null);
      const kvSeen: number[] = [];
      const b = await runBatched(remote, prompts, null, (out) => kvSeen.push(out.kvUsedTokens));
      expect(b.tokens).toEqual(a.tokens);
      expect(Math.max(...kvSeen)).toBeGreaterThan(0);
      const stats = await remote.stats();
      expect(stats.kvCapacityTokens).toBe(4096);
      expect(stats.heldRequests).toBe(0);
      expect(stats.lastTotalMs).toBeGreaterThan(0);
      // The caller's prompt arrays are not detached by the transfer.
      expect(prompts[0]?.length).toBeGreaterThan(0);
    } finally {
      await local.close();
      await remote.close();
    }
    await expect(remote.forward({ free: [], add: [], prefill: [], decode: [] })).rejects.toMatchObject({
      code: 'TSI_ERR_INVALID_BATCH',
    });
  });

  it('runs two workers with their own sessions at once', async () => {
    const [a, b] = await Promise.all([
      WorkerRunner.start({ runner: runnerOptions() }),
      WorkerRunner.start({ runner: runnerOptions() }),
    ]);
    try {
      const prompts = makePrompts(model.vocabSize, 9);
      const [ta, tb] = await Promise.all([runBatched(a, prompts, null), runBatched(b, prompts, null)]);
      expect(ta.tokens).toEqual(tb.tokens);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('passes runner errors through with their codes and keeps serving', async () => {
    const remote = await WorkerRunner.start({ runner: runnerOptions() });
    try {
      await expect(remote.forward({ free: [], add: [], prefill: [], decode: [42] })).rejects.toMatchObject({
        code: 'TSI_ERR_INVALID_BATCH',
      });
      const out = await remote.forward({
        free: [],
        add: [{ id: 1, sampling: GREEDY }],
        prefill: [{ id: 1, tokens: Int32Array.of(5, 6, 7), start: 0, sample: true }],
        decode: [],
      });
      expect(out.kvUsedTokens).toBe(3);
    } finally {
      await remote.close();
    }
  });

  it('rejects start with TSI_ERR_MODEL_LOAD when the model cannot load', async () => {
    await expect(WorkerRunner.start({ runner: { modelDir: '/nonexistent/model' } })).rejects.toMatchObject({
      code: 'TSI_ERR_MODEL_LOAD',
    });
  });

  it.each(['throw', 'exit'] as const)(
    'a worker that crashes mid-forward (%s) rejects the pending and every later call with TSI_ERR_WORKER_CRASHED',
    async (crash) => {
      const remote = await WorkerRunner.start({
        runner: runnerOptions(),
        entry: crashEntry,
        workerData: { crash },
      });
      const first = await remote.forward({
        free: [],
        add: [{ id: 1, sampling: GREEDY }],
        prefill: [{ id: 1, tokens: Int32Array.of(5, 6, 7), start: 0, sample: true }],
        decode: [],
      });
      expect(first.ids).toEqual(Int32Array.of(1));
      const pending = remote.forward({ free: [], add: [], prefill: [], decode: [1] });
      await expect(pending).rejects.toMatchObject({ code: 'TSI_ERR_WORKER_CRASHED' });
      await expect(remote.stats()).rejects.toMatchObject({ code: 'TSI_ERR_WORKER_CRASHED' });
      await expect(remote.forward({ free: [], add: [], prefill: [], decode: [1] })).rejects.toMatchObject({
        code: 'TSI_ERR_WORKER_CRASHED',
      });
      await remote.close();
    },
  );
});
