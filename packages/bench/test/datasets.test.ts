import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRng, TsinferError } from '@tsinfer/core';
import type { Tokenizer } from '@tsinfer/runtime';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  baseVocabSize,
  computeRandomLens,
  DEFAULT_SHAREGPT_PATH,
  loadShareGpt,
  numSpecialTokensToAdd,
  randomIdsRows,
  sampleRandomIdsRequests,
  sampleRandomRequests,
  sampleShareGptRequests,
} from '../src/datasets.js';
import { generateShareGpt, SHIPPED_SHAREGPT, serializeShareGpt } from '../src/sharegpt-gen.js';
import { ByteTokenizer, builtinTokenizer, resolveTokenizer } from '../src/tokenizer.js';

let tk: Tokenizer;
beforeAll(async () => {
  tk = await builtinTokenizer(join(tmpdir(), 'tsinfer-bench-test-tokenizer'));
});

describe('computeRandomLens (SGLang compute_random_lens)', () => {
  const N = 20000;
  it('ratio 0 draws uniformly on [1, L] (mean ≈ (L+1)/2)', () => {
    const lens = computeRandomLens(10, 0, N, createRng(1));
    expect(Math.min(...lens)).toBe(1);
    expect(Math.max(...lens)).toBe(10);
    const counts = new Array(11).fill(0);
    for (const l of lens) counts[l]++;
    for (let v = 1; v <= 10; v++) expect(counts[v] / N).toBeGreaterThan(0.09); // each ≈ 0.1
    expect(lens.reduce((a, b) => a + b, 0) / N).toBeCloseTo(5.5, 1);
  });

  it('ratio 0.5 draws on [floor(L/2), L]', () => {
    const even = computeRandomLens(10, 0.5, N, createRng(2));
    expect(Math.min(...even)).toBe(5);
    expect(Math.max(...even)).toBe(10);
    // floor(7 · 0.5) = 3, not round(3.5) = 4.
    const odd = computeRandomLens(7, 0.5, N, createRng(3));
    expect(Math.min(...odd)).toBe(3);
    expect(Math.max(...odd)).toBe(7);
  });

  it('ratio 1 pins every length to L; L ≤ 0 gives zeros; the lower bound is at least 1', () => {
    expect(new Set(computeRandomLens(1024, 1, 500, createRng(4)))).toEqual(new Set([1024]));
    expect(computeRandomLens(0, 0.5, 3, createRng(5))).toEqual([0, 0, 0]);
    expect(new Set(computeRandomLens(1, 0, 100, createRng(6)))).toEqual(new Set([1]));
  });

  it('is reproducible for a seed', () => {
    expect(computeRandomLens(100, 0, 50, createRng(7))).toEqual(computeRandomLens(100, 0, 50, createRng(7)));
  });
});

describe('random-ids', () => {
  it('token j of request i is (offset_i + i + j) mod V', () => {
    const rows = randomIdsRows([5, 2040, 0], [3, 4, 0], [7, 8, 9], 2043, null);
    expect(rows.map((r) => r.prompt)).toEqual([[5, 6, 7], [2041, 2042, 0, 1], []]);
    expect(rows.map((r) => [r.promptLen, r.outputLen])).toEqual([
      [3, 7],
      [4, 8],
      [0, 9],
    ]);
  });

  it('uses the base vocabulary (no added special tokens) and ids mode keeps exact lengths', () => {
    const V = baseVocabSize(tk);
    expect(V).toBe(tk.vocabSize - tk.specialTokenIds.size);
    const rows = sampleRandomIdsRequests({
      inputLen: 64,
      outputLen: 16,
      numPrompts: 50,
      rangeRatio: 0.5,
      tokenizer: tk,
      rng: createRng(42),
      returnText: false,
    });
    for (const r of rows) {
      const ids = r.prompt as number[];
      expect(ids).toHaveLength(r.promptLen);
      expect(r.promptLen).toBeGreaterThanOrEqual(32);
      expect(r.outputLen).toBeGreaterThanOrEqual(8);
      for (let j = 1; j < ids.length; j++) expect(ids[j]).toBe((ids[j - 1]! + 1) % V);
      for (const id of ids) expect(id).toBeLessThan(V);
    }
  });
});

describe('special-token correction for text prompts', () => {
  it('subtracts num_special_tokens_to_add (BOS) from every input length', () => {
    expect(numSpecialTokensToAdd(tk)).toBe(1);
    const text = sampleRandomIdsRequests({
      inputLen: 100,
      outputLen: 10,
      numPrompts: 5,
      rangeRatio: 1,
      tokenizer: tk,
      rng: createRng(1),
      returnText: true,
    });
    for (const r of text) {
      expect(typeof r.prompt).toBe('string');
      expect(r.promptLen).toBe(99);
      expect(r.outputLen).toBe(10);
    }
  });
});

describe('random (ShareGPT prompts truncated or repeated)', () => {
  it('ids mode hits the drawn input length exactly, repeating short prompts', () => {
    const rows = sampleRandomRequests({
      inputLen: 700,
      outputLen: 32,
      numPrompts: 40,
      rangeRatio: 0,
      tokenizer: tk,
      rng: createRng(9),
      returnText: false,
    });
    expect(rows).toHaveLength(40);
    for (const r of rows) {
      expect((r.prompt as number[]).length).toBe(r.promptLen);
      expect(r.promptLen).toBeGreaterThanOrEqual(1);
      expect(r.promptLen).toBeLessThanOrEqual(700);
    }
  });

  it('text mode re-encodes close to target + BOS and cycles a small source', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-ds-'));
    const path = join(dir, 'two.json');
    writeFileSync(
      path,
      JSON.stringify([
        { conversations: [{ value: 'the quick brown fox' }, { value: 'x' }] },
        { conversations: [{ value: '' }, { value: 'empty prompt is skipped' }] },
        { conversations: [{ value: 'only one turn' }] },
      ]),
    );
    const rows = sampleRandomRequests({
      inputLen: 50,
      outputLen: 8,
      numPrompts: 6,
      rangeRatio: 1,
      tokenizer: tk,
      rng: createRng(3),
      returnText: true,
      datasetPath: path,
    });
    expect(rows).toHaveLength(6);
    for (const r of rows) {
      expect(r.promptLen).toBe(49);
      expect((r.prompt as string).startsWith('the quick brown fox')).toBe(true);
      const served = tk.encode(r.prompt as string).length; // what a server counts (BOS added)
      expect(Math.abs(served - 50)).toBeLessThanOrEqual(3);
    }
  });
});

describe('sharegpt', () => {
  it('tokenizes with special tokens, drops rows under 2 tokens and over the context length', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-ds-'));
    const path = join(dir, 'sg.json');
    writeFileSync(
      path,
      JSON.stringify([
        {
          id: 'a',
          conversations: [
            { from: 'human', value: 'hello there friend' },
            { from: 'gpt', value: 'hi you' },
          ],
        },
        {
          id: 'b',
          conversations: [
            { from: 'human', value: '' },
            { from: 'gpt', value: 'prompt too short' },
          ],
        },
        {
          id: 'c',
          conversation: [
            { from: 'human', value: 'legacy key name' },
            { from: 'gpt', value: 'ok fine' },
          ],
        },
        { id: 'd', conversations: [{ from: 'human', value: 'one turn only' }] },
        {
          id: 'e',
          conversations: [
            { from: 'human', value: 'word '.repeat(300) },
            { from: 'gpt', value: 'long' },
          ],
        },
      ]),
    );
    const rows = sampleShareGptRequests({
      path,
      numRequests: 10,
      tokenizer: tk,
      rng: createRng(1),
      contextLen: 100,
    });
    expect(rows.map((r) => r.prompt).sort()).toEqual(['hello there friend', 'legacy key name']);
    for (const r of rows) expect(r.promptLen).toBe(tk.encode(r.prompt as string).length);
    const fixed = sampleShareGptRequests({
      path,
      numRequests: 1,
      tokenizer: tk,
      rng: createRng(1),
      fixedOutputLen: 77,
    });
    expect(fixed).toHaveLength(1);
    expect(fixed[0]!.outputLen).toBe(77);
    expect(() =>
      sampleShareGptRequests({ path, numRequests: 1, tokenizer: tk, rng: createRng(1), fixedOutputLen: 3 }),
    ).toThrow(/output_len too small/);
  });

  it('names the file when it is not a ShareGPT array', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-ds-'));
    const path = join(dir, 'bad.json');
    writeFileSync(path, '{"not": "an array"}');
    try {
      loadShareGpt(path);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(TsinferError);
      expect((err as TsinferError).code).toBe('TSI_ERR_BENCH_DATASET');
      expect((err as Error).message).toContain(path);
    }
  });

  it('the shipped sample regenerates byte-identically from the committed word list', () => {
    const words = readFileSync(new URL('../data/words.txt', import.meta.url), 'utf8')
      .split('\n')
      .filter((w) => w.trim() !== '');
    const again = serializeShareGpt(generateShareGpt({ ...SHIPPED_SHAREGPT, words }));
    expect(again === readFileSync(DEFAULT_SHAREGPT_PATH, 'utf8')).toBe(true);
  });

  it('the shipped sample has varied lengths that fit the tiny model’s 2048-token context', () => {
    const rows = sampleShareGptRequests({
      path: DEFAULT_SHAREGPT_PATH,
      numRequests: 10000,
      tokenizer: tk,
      rng: createRng(42),
    });
    expect(rows.length).toBeGreaterThan(400);
    const p = rows.map((r) => r.promptLen).sort((a, b) => a - b);
    const o = rows.map((r) => r.outputLen).sort((a, b) => a - b);
    expect(p[0]!).toBeLessThan(20);
    expect(p[p.length - 1]!).toBeGreaterThan(500);
    expect(o[o.length - 1]!).toBeGreaterThan(500);
    for (const r of rows) expect(r.promptLen + r.outputLen).toBeLessThan(2048);
    // Dropped rows exist (one-turn and empty conversations), so the filters are exercised.
    expect(rows.length).toBeLessThan(loadShareGpt(DEFAULT_SHAREGPT_PATH).length + 1);
    expect(loadShareGpt(DEFAULT_SHAREGPT_PATH).length).toBeLessThan(SHIPPED_SHAREGPT.count);
  });
});

describe('tokenizer choice', () => {
  it('a sim: server gets the byte tokenizer; random-ids text then re-encodes to the same ids', async () => {
    const r = await resolveTokenizer({ serverPath: 'sim:tiny-cpu', serverVocabSize: 2048 });
    expect(r.tokenizer).toBeInstanceOf(ByteTokenizer);
    expect(r.source).toContain('sim:tiny-cpu');
    const bt = r.tokenizer;
    expect(numSpecialTokensToAdd(bt)).toBe(0);
    expect(baseVocabSize(bt)).toBe(128);
    const rows = sampleRandomIdsRequests({
      inputLen: 300,
      outputLen: 4,
      numPrompts: 20,
      rangeRatio: 0,
      tokenizer: bt,
      rng: createRng(5),
      returnText: true,
    });
    for (const row of rows) expect(bt.encode(row.prompt as string)).toHaveLength(row.promptLen);
    expect(bt.decode([104, 105, 300])).toBe('hi t300');
    expect(bt.encode('é')).toEqual([0xc3, 0xa9]);
  });

  it('--tokenizer wins; a local model path from /model_info is used; else the built-in tiny tokenizer', async () => {
    const dir = join(tmpdir(), 'tsinfer-bench-test-tokenizer');
    expect((await resolveTokenizer({ tokenizerDir: dir, serverPath: 'sim:x' })).source).toBe(dir);
    expect((await resolveTokenizer({ serverPath: dir })).source).toContain('/model_info');
    const b = await resolveTokenizer({ serverPath: '/nonexistent/model', cacheDir: dir });
    expect(b.builtin).toBe(true);
    expect(b.tokenizer.vocabSize).toBe(tk.vocabSize);
  });
});
