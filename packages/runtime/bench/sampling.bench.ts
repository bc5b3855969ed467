/**
 * Per-token cost of the sampler and the streaming detokenizer.
 * Run: node --expose-gc --import tsx packages/runtime/bench/sampling.bench.ts
 * (from the repo root, with the @tsinfer/source condition:
 *  node --conditions=@tsinfer/source --expose-gc --import tsx packages/runtime/bench/sampling.bench.ts)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRng } from '@tsinfer/core';
import { DEFAULT_SAMPLING, type SamplingParams } from '../src/contract.js';
import { Sampler, TokenHistory } from '../src/sampling/index.js';
import { Tokenizer, writeTokenizerFiles } from '../src/tokenizer/index.js';

const BASE: SamplingParams = { ...DEFAULT_SAMPLING, temperature: 1 };

const gc = (globalThis as { gc?: () => void }).gc;

function bench(name: string, iters: number, fn: (i: number) => void): void {
  for (let i = 0; i < Math.min(200, iters); i++) fn(i); // warm up
  gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) fn(i);
  const ns = Number(process.hrtime.bigint() - t0) / iters;
  const heapDelta = (process.memoryUsage().heapUsed - heap0) / iters;
  console.log(
    `${name.padEnd(58)} ${(ns / 1000).toFixed(2).padStart(9)} µs/token  heap ${heapDelta.toFixed(1).padStart(7)} B/token`,
  );
}

for (const V of [2048, 32_000, 128_256]) {
  const rng = createRng(1);
  const rows = Array.from({ length: 8 }, () => {
    const r = new Float32Array(V);
    // Roughly LM-like: a few large logits over a normal-ish background.
    for (let i = 0; i < V; i++) r[i] = (rng.next() + rng.next() + rng.next() - 1.5) * 3;
    for (let j = 0; j < 20; j++) r[rng.int(0, V - 1)] = 8 + rng.next() * 4;
    return r;
  });
  const s = new Sampler(V);
  const h = new TokenHistory(V);
  const prompt = Int32Array.from({ length: 512 }, () => rng.int(0, V - 1));
  h.addPrompt(prompt);
  for (let i = 0; i < 256; i++) h.addGenerated(rng.int(0, V - 1));
  const r = createRng(2);
  const iters = V > 100_000 ? 300 : 2000;
  const cases: [string, SamplingParams][] = [
    ['greedy', { ...BASE, temperature: 0 }],
    ['temperature 0.8', { ...BASE, temperature: 0.8 }],
    ['top-k 50', { ...BASE, temperature: 0.8, topK: 50 }],
    ['top-p 0.9', { ...BASE, temperature: 0.8, topP: 0.9 }],
    ['top-k 50 + top-p 0.9 + min-p 0.05', { ...BASE, temperature: 0.8, topK: 50, topP: 0.9, minP: 0.05 }],
    [
      'penalties (rep 1.1, freq 0.5, pres 0.5) + top-p 0.9',
      {
        ...BASE,
        temperature: 0.8,
        topP: 0.9,
        repetitionPenalty: 1.1,
        frequencyPenalty: 0.5,
        presencePenalty: 0.5,
      },
    ],
  ];
  for (const [name, p] of cases)
    bench(`V=${V} sampleFull ${name}`, iters, (i) => s.sampleFull(rows[i & 7]!, p, h, r));
  const lp = { ...BASE, temperature: 0.8, logprobs: 5 };
  bench(`V=${V} sampleFull temperature 0.8 + lastLogprobs(5)`, iters, (i) => {
    s.sampleFull(rows[i & 7]!, lp, h, r);
    s.lastLogprobs(lp);
  });
  const K = 64;
  const vals = new Float32Array(K);
  const ids = new BigInt64Array(K);
  for (let j = 0; j < K; j++) {
    vals[j] = 10 - j * 0.1;
    ids[j] = BigInt(j * 7);
  }
  bench(`V=${V} sampleTopK K=64 top-k 40 top-p 0.9`, 20_000, () =>
    s.sampleTopK(vals, ids, { ...BASE, topK: 40, topP: 0.9 }, r),
  );
}

const dir = await mkdtemp(join(tmpdir(), 'tsinfer-bench-'));
const t0 = performance.now();
await writeTokenizerFiles(dir, {});
console.log(`writeTokenizerFiles (train 2048 + write): ${(performance.now() - t0).toFixed(1)} ms`);
const tok = await Tokenizer.fromDir(dir);
const text = 'Streaming text with café, 你好, emoji 😀🎉 and code: const x = 1;\n'.repeat(50);
const ids = tok.encode(text, { addSpecialTokens: false });
const d = tok.createDetokenizer();
let out = '';
bench(`ByteDetokenizer.push (${ids.length} ids cycled)`, 200_000, (i) => {
  out = d.push(ids[i % ids.length]!);
});
void out;
await rm(dir, { recursive: true, force: true });
