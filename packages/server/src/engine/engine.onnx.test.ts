/**
 * The real tiny ONNX model (built by the model builder with its tokenizer)
 * end to end through the engine on two rank workers: every greedy output
 * equals the runtime's own output for the same prompt run alone (the
 * OnnxRunner driven directly, no scheduler), and the streamed text is the
 * tokenizer's decode of those tokens.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel, DEFAULT_SAMPLING, loadNativeBackend, OnnxRunner, Tokenizer } from '@tsinfer/runtime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from './engine.js';
import { collect, request } from './test-helpers.js';

let root = '';
let modelDir = '';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tsinfer-engine-onnx-'));
  modelDir = join(root, 'model');
  await buildModel({ preset: 'tiny', outDir: modelDir, seed: 11, dtype: 'fp32', layout: 'genai' });
}, 180_000);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/** Greedy tokens of `prompt` from the runtime alone. */
async function runtimeAlone(runner: OnnxRunner, prompt: Int32Array, maxNew: number): Promise<number[]> {
  const eos = runner.info.eosTokenIds;
  const out: number[] = [];
  let r = await runner.forward({
    free: [],
    add: [{ id: 0, sampling: DEFAULT_SAMPLING }],
    prefill: [{ id: 0, tokens: prompt, start: 0, sample: true }],
    decode: [],
  });
  out.push(r.tokens[0]!);
  while (out.length < maxNew && !eos.includes(out[out.length - 1]!)) {
    r = await runner.forward({ free: [], add: [], prefill: [], decode: [0] });
    out.push(r.tokens[0]!);
  }
  await runner.forward({ free: [0], add: [], prefill: [], decode: [] });
  return out;
}

describe('createEngine on the tiny ONNX model (CPU)', () => {
  it('greedy outputs through two rank workers equal the runtime run alone', async () => {
    const prompts = [
      'Once upon a time',
      'The quick brown fox jumps over the lazy dog.',
      'A',
      'In the beginning there was nothing but a long, quiet road and a small house at its end.',
      'café, naïve, 日本語 — UTF-8 text',
      '1 2 3 4 5 6 7 8 9 10',
    ];
    const maxNew = 24;
    const tok = await Tokenizer.fromDir(modelDir);
    const runner = await OnnxRunner.create({ modelDir, maxTotalTokens: 2048, intraOpThreads: 1 });
    const want: number[][] = [];
    try {
      for (const p of prompts) want.push(await runtimeAlone(runner, tok.encode(p), maxNew));
    } finally {
      await runner.close();
    }

    const engine = await createEngine({
      modelPath: modelDir,
      dpSize: 2,
      scheduler: { maxTotalTokens: 2048 },
    });
    try {
      expect(engine.info.tokenizer).toBe('hf');
      expect(engine.info.device).toBe('cpu');
      expect(engine.info.kvCapacityTokens).toBe(2048);
      expect(engine.tokenize(prompts[0]!)).toEqual(Array.from(tok.encode(prompts[0]!)));
      const got = await Promise.all(
        prompts.map((p) =>
          collect(engine.generate(request({ text: p }, maxNew, { signal: new AbortController().signal }))),
        ),
      );
      const ranks = new Set<number>();
      for (let i = 0; i < prompts.length; i++) {
        const g = got[i]!;
        ranks.add(g.finish.dpRank);
        expect(g.tokens, prompts[i]).toEqual(want[i]);
        const last = want[i]![want[i]!.length - 1]!;
        const ended = tok.eosTokenIds.includes(last);
        expect(g.finish.reason).toBe(ended ? 'stop' : 'length');
        expect(g.finish.promptTokens).toBe(tok.encode(prompts[i]!).length);
        const textIds = ended ? want[i]!.slice(0, -1) : want[i]!;
        expect(g.text, prompts[i]).toBe(tok.decode(textIds, { skipSpecialTokens: true }));
      }
      expect(ranks.size).toBe(2);
      expect(engine.info.runtimeBackend).toBe('js');
      const stats = await engine.rankStats();
      for (const s of stats) expect(s.runnerKvUsedTokens).toBe(0);
    } finally {
      await engine.shutdown();
    }
  }, 240_000);

  const native = loadNativeBackend();
  it.skipIf(!native.ok)(
    `--runtime-backend native serves the same greedy tokens as js${native.ok ? '' : ` (skipped: ${native.reason})`}`,
    async () => {
      const prompts = ['Once upon a time', 'A', 'café, naïve, 日本語 — UTF-8 text', '1 2 3 4 5'];
      const outputs = new Map<string, number[][]>();
      for (const runtimeBackend of ['js', 'native'] as const) {
        const engine = await createEngine({
          modelPath: modelDir,
          dpSize: 1,
          runtimeBackend,
          scheduler: { maxTotalTokens: 4096, maxRunningRequests: 8 },
        });
        try {
          expect(engine.info.runtimeBackend).toBe(runtimeBackend);
          const got = await Promise.all(
            prompts.map((p) => collect(engine.generate(request({ text: p }, 16)))),
          );
          outputs.set(
            runtimeBackend,
            got.map((g) => g.tokens),
          );
          for (const s of await engine.rankStats()) expect(s.runnerKvUsedTokens).toBe(0);
        } finally {
          await engine.shutdown();
        }
      }
      expect(outputs.get('native')).toEqual(outputs.get('js'));
    },
    240_000,
  );
});
