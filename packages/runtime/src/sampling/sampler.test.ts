import { createRng, type Rng } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, type SamplingParams } from '../contract.js';
import { TokenHistory } from './history.js';
import { requestRng, Sampler, samplingNeed } from './sampler.js';

const BASE: SamplingParams = { ...DEFAULT_SAMPLING, temperature: 1 };
const P = (over: Partial<SamplingParams>): SamplingParams => ({ ...BASE, ...over });

/**
 * Straightforward reference implementation of the documented algorithm
 * (sorting everything, arrays everywhere). The optimized sampler must give
 * the same token for the same random draw.
 */
function reference(
  logits: Float32Array,
  p: SamplingParams,
  prompt: number[],
  gen: number[],
  rng: Rng,
): number {
  const l = Float32Array.from(logits);
  if (p.repetitionPenalty !== 1) {
    for (const id of new Set([...prompt, ...gen]))
      l[id] = l[id]! > 0 ? l[id]! / p.repetitionPenalty : l[id]! * p.repetitionPenalty;
  }
  const counts = new Map<number, number>();
  for (const id of gen) counts.set(id, (counts.get(id) ?? 0) + 1);
  for (const [id, c] of counts) l[id] = l[id]! - (c * p.frequencyPenalty + p.presencePenalty);
  const ids = Array.from(l.keys());
  const order = ids.slice().sort((a, b) => l[b]! - l[a]! || a - b);
  if (p.temperature <= 0) return order[0]!;
  const u = rng.next(); // one draw per sampled token whenever temperature > 0
  const m = l[order[0]!]!;
  const w = (id: number): number => Math.exp((l[id]! - m) * (1 / p.temperature));
  const topKActive = p.topK > 0 && p.topK < l.length;
  const sorted = topKActive || p.topP < 1;
  let kept = order;
  if (topKActive) {
    const kth = l[order[p.topK - 1]!]!;
    kept = order.filter((id) => l[id]! >= kth);
  }
  if (p.topP < 1) {
    const z = topKActive ? kept.reduce((s, id) => s + w(id), 0) : ids.reduce((s, id) => s + w(id), 0);
    const out: number[] = [];
    let cum = 0;
    for (const id of kept) {
      if (out.length > 0 && !(cum < p.topP * z)) break;
      out.push(id);
      cum += w(id);
    }
    kept = out;
  }
  if (p.minP > 0) kept = kept.filter((id, i) => i === 0 || w(id) >= p.minP);
  kept = kept.filter((id) => w(id) > 0);
  if (!sorted) kept = kept.slice().sort((a, b) => a - b);
  if (kept.length === 1) return kept[0]!;
  const total = kept.reduce((s, id) => s + w(id), 0);
  const target = u * total;
  let cum = 0;
  for (const id of kept) {
    cum += w(id);
    if (cum > target) return id;
  }
  return kept[kept.length - 1]!;
}

function randomLogits(rng: Rng, n: number): Float32Array {
  const l = new Float32Array(n);
  for (let i = 0; i < n; i++) l[i] = Math.round((rng.next() * 8 - 4) * 4) / 4; // quarter steps: many exact ties
  return l;
}

function counting(rng: Rng): Rng & { calls: number } {
  const r = {
    calls: 0,
    next: () => {
      r.calls++;
      return rng.next();
    },
    int: (lo: number, hi: number) => rng.int(lo, hi),
  };
  return r;
}

const ln = Math.log;

function frequencies(logits: number[], p: SamplingParams, draws: number, seed = 7): number[] {
  const s = new Sampler(logits.length);
  const rng = createRng(seed);
  const row = Float32Array.from(logits);
  const f = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) f[s.sampleFull(row, p, null, rng)]!++;
  return f.map((c) => c / draws);
}

/** Each observed frequency within 5 standard deviations of the expected probability. */
function expectDistribution(observed: number[], expected: number[], draws: number): void {
  expected.forEach((q, i) => {
    const sd = Math.sqrt((q * (1 - q)) / draws);
    if (q === 0) expect(observed[i], `token ${i}`).toBe(0);
    else
      expect(Math.abs(observed[i]! - q), `token ${i}: ${observed[i]} vs ${q}`).toBeLessThan(5 * sd + 1e-12);
  });
}

describe('Sampler', () => {
  it('matches the reference implementation exactly over random rows and parameters', () => {
    const gen = createRng(123);
    const V = 64;
    const sampler = new Sampler(V);
    let checked = 0;
    for (let trial = 0; trial < 300; trial++) {
      const logits = randomLogits(gen, V);
      const p = P({
        temperature: [0, 0.5, 1, 1.7][gen.int(0, 3)]!,
        topK: [0, 1, 5, 20, 64, 100][gen.int(0, 5)]!,
        topP: [1, 0.9, 0.5, 0.1][gen.int(0, 3)]!,
        minP: [0, 0.05, 0.3][gen.int(0, 2)]!,
        repetitionPenalty: [1, 1.3][gen.int(0, 1)]!,
        frequencyPenalty: [0, 0.5][gen.int(0, 1)]!,
        presencePenalty: [0, 0.4, -0.3][gen.int(0, 2)]!,
      });
      const prompt = [gen.int(0, V - 1), gen.int(0, V - 1), gen.int(0, V - 1)];
      const hist = new TokenHistory(V);
      hist.addPrompt(prompt);
      const generated: number[] = [];
      const seed = gen.int(0, 1e9);
      const rngA = createRng(seed);
      const rngB = createRng(seed);
      const before = Float32Array.from(logits);
      for (let step = 0; step < 20; step++) {
        const a = sampler.sampleFull(logits, p, hist, rngA);
        const b = reference(logits, p, prompt, generated, rngB);
        expect(a, `trial ${trial} step ${step} ${JSON.stringify(p)}`).toBe(b);
        hist.addGenerated(a);
        generated.push(a);
        checked++;
      }
      expect(logits).toEqual(before); // input row never modified
    }
    expect(checked).toBe(6000);
  });

  it('gives fixed token sequences for fixed logits and seeds', () => {
    const logits = Float32Array.from([1.0, 2.0, 0.5, 2.0, -1.0, 0.0, 1.5, 0.25]);
    const seq = (p: SamplingParams, seed: number): number[] => {
      const s = new Sampler(8);
      const rng = createRng(seed);
      return Array.from({ length: 12 }, () => s.sampleFull(logits, p, null, rng));
    };
    expect(seq(P({ temperature: 0 }), 1)).toEqual(new Array(12).fill(1)); // ties → lowest id
    const a = seq(P({ temperature: 1, seed: 42 }), 42);
    expect(seq(P({ temperature: 1 }), 42)).toEqual(a); // reproducible
    expect(seq(P({ temperature: 1 }), 43)).not.toEqual(a);
    expect(a).toMatchInlineSnapshot(`
      [
        3,
        1,
        1,
        6,
        0,
        0,
        0,
        1,
        6,
        1,
        1,
        3,
      ]
    `);
    expect(seq(P({ temperature: 0.8, topK: 3 }), 5)).toMatchInlineSnapshot(`
      [
        6,
        6,
        3,
        1,
        3,
        3,
        6,
        1,
        6,
        1,
        3,
        3,
      ]
    `);
    expect(seq(P({ temperature: 1, topK: 2 }), 9).every((t) => t === 1 || t === 3)).toBe(true);
  });

  it('samples temperature / top-k / top-p / min-p distributions with the expected probabilities', () => {
    const N = 40_000;
    const base = [ln(0.5), ln(0.3), ln(0.2)];
    expectDistribution(frequencies(base, P({}), N), [0.5, 0.3, 0.2], N);
    const t2 = [0.5, 0.3, 0.2].map((q) => Math.sqrt(q));
    const z = t2.reduce((s, x) => s + x, 0);
    expectDistribution(
      frequencies(base, P({ temperature: 2 }), N),
      t2.map((x) => x / z),
      N,
    );
    expectDistribution(frequencies(base, P({ topK: 2 }), N), [0.625, 0.375, 0], N);
    // top-p 0.6: 0.5 < 0.6 so the 0.3 token is needed too.
    expectDistribution(frequencies(base, P({ topP: 0.6 }), N), [0.625, 0.375, 0], N);
    expectDistribution(frequencies(base, P({ topP: 0.8001 }), N), [0.5, 0.3, 0.2], N);
    // min-p 0.5: keep p >= 0.25.
    expectDistribution(frequencies(base, P({ minP: 0.5 }), N), [0.625, 0.375, 0], N);
    expectDistribution(frequencies(base, P({ minP: 0.39 }), N), [0.5, 0.3, 0.2], N);
    // Shuffled ids: the masks follow probabilities, not ids.
    const shuffled = [ln(0.2), ln(0.5), ln(0.1), ln(0.2)];
    expectDistribution(frequencies(shuffled, P({ topK: 1, temperature: 1 }), 1000), [0, 1, 0, 0], 1000);
    // top-k keeps ties with the k-th value (HF semantics): 0.2 and 0.2 both stay.
    expectDistribution(frequencies(shuffled, P({ topK: 2 }), N), [2 / 9, 5 / 9, 0, 2 / 9], N);
  });

  it('applies masks exactly at their boundaries', () => {
    const row = Float32Array.from([ln(0.5), ln(0.25), ln(0.125), ln(0.125)]);
    const s = new Sampler(4);
    const kept = (p: SamplingParams): number[] => {
      const seen = new Set<number>();
      const rng = createRng(1);
      for (let i = 0; i < 3000; i++) seen.add(s.sampleFull(row, p, null, rng));
      return [...seen].sort();
    };
    // Weights are exp of float32 differences, so boundaries are probed just inside and outside.
    expect(kept(P({ topP: 0.4999 }))).toEqual([0]);
    expect(kept(P({ topP: 0.5001 }))).toEqual([0, 1]); // mass before token 1 (0.5) < 0.5001
    expect(kept(P({ topP: 0.7499 }))).toEqual([0, 1]);
    expect(kept(P({ topP: 0.7501 }))).toEqual([0, 1, 2]); // ties: lower id first
    expect(kept(P({ topP: 0 }))).toEqual([0]); // at least one token
    expect(kept(P({ minP: 0.2499 }))).toEqual([0, 1, 2, 3]); // 0.125 >= 0.2499 * 0.5
    expect(kept(P({ minP: 0.2501 }))).toEqual([0, 1]);
    expect(kept(P({ minP: 1 }))).toEqual([0]);
    expect(kept(P({ topK: 3 }))).toEqual([0, 1, 2, 3]); // tie at the 3rd value keeps both
    expect(kept(P({ topK: 2, topP: 0.9 }))).toEqual([0, 1]);
    expect(kept(P({ topK: 4, topP: 0.6, minP: 0.1 }))).toEqual([0, 1]);
  });

  it('treats temperature 0 as greedy (ignoring top-k/p/min-p, no draw) and draws exactly once per sampled token otherwise', () => {
    const s = new Sampler(4);
    const row = Float32Array.from([0.1, 3, 3, -2]);
    const rng = counting(createRng(1));
    expect(s.sampleFull(row, P({ temperature: 0, topK: 3, topP: 0.1, minP: 0.9 }), null, rng)).toBe(1);
    expect(rng.calls).toBe(0);
    // Underflowed weights do not count as candidates; the draw happens anyway (one per sampled token).
    expect(s.sampleFull(Float32Array.from([0, 900, 1, 2]), P({ topP: 0.99 }), null, rng)).toBe(1);
    expect(s.sampleFull(Float32Array.from([0, 900, 1, 2]), P({ topK: 3 }), null, rng)).toBe(1);
    expect(s.sampleFull(Float32Array.from([0, 900, 1, 2]), P({}), null, rng)).toBe(1);
    expect(rng.calls).toBe(3);
    // A single surviving token still consumes its draw, so the stream depends only on the token count.
    expect(s.sampleFull(Float32Array.from([0, 5, 1, 2]), P({ topK: 1 }), null, rng)).toBe(1);
    expect(rng.calls).toBe(4);
    expect(s.sampleFull(Float32Array.from([0, 5, 1, 2]), P({}), null, rng)).toBeGreaterThanOrEqual(0);
    expect(rng.calls).toBe(5);
    expect(s.sampleTopK(Float32Array.from([5, 1]), Int32Array.from([1, 3]), P({ topK: 1 }), rng)).toBe(1);
    expect(rng.calls).toBe(6);
  });

  it('rejects a row longer than its vocabulary', () => {
    expect(() => new Sampler(4).sampleFull(new Float32Array(5), P({}), null, createRng(1))).toThrow(
      expect.objectContaining({ code: 'TSI_ERR_INVALID_BATCH' }),
    );
  });

  it('handles masked (-Infinity) logits', () => {
    const s = new Sampler(4);
    const row = Float32Array.from([-Infinity, 1, -Infinity, 1]);
    const rng = createRng(3);
    for (let i = 0; i < 200; i++) {
      for (const p of [P({}), P({ topP: 0.9 }), P({ topK: 3 }), P({ minP: 0.1 })]) {
        const t = s.sampleFull(row, p, null, rng);
        expect(t === 1 || t === 3).toBe(true);
      }
    }
  });
});

describe('NaN logits', () => {
  it('never chooses a NaN entry while finite ones exist', () => {
    const s = new Sampler(6);
    const rng = createRng(5);
    for (const row of [
      [Number.NaN, 1, 2, Number.NaN, 0.5, 2],
      [1, 2, Number.NaN, 0, Number.NaN, Number.NaN],
    ]) {
      const r = Float32Array.from(row);
      for (const p of [
        P({ temperature: 0 }),
        P({}),
        P({ topK: 2 }),
        P({ topK: 3, topP: 0.9 }),
        P({ topP: 0.5 }),
        P({ minP: 0.2 }),
      ]) {
        for (let i = 0; i < 50; i++) expect(Number.isNaN(row[s.sampleFull(r, p, null, rng)]!)).toBe(false);
      }
    }
  });
});

describe('penalties', () => {
  const greedy = P({ temperature: 0 });
  it('repetition penalty (HF): divides positive and multiplies negative logits of prompt and output tokens', () => {
    const s = new Sampler(3);
    const h = new TokenHistory(3);
    const rng = createRng(1);
    const row = Float32Array.from([2.0, 1.9, -5]);
    expect(s.sampleFull(row, P({ ...greedy, repetitionPenalty: 1.2 }), h, rng)).toBe(0);
    h.addPrompt([0]); // seen in the prompt: 2.0 / 1.2 = 1.67 < 1.9
    expect(s.sampleFull(row, P({ ...greedy, repetitionPenalty: 1.2 }), h, rng)).toBe(1);
    expect(s.sampleFull(row, P({ ...greedy, repetitionPenalty: 1.04 }), h, rng)).toBe(0); // 1.923 > 1.9
    const neg = Float32Array.from([-1.0, -1.1, -5]);
    const h2 = new TokenHistory(3);
    h2.addGenerated(0); // -1.0 * 1.2 = -1.2 < -1.1
    expect(s.sampleFull(neg, P({ ...greedy, repetitionPenalty: 1.2 }), h2, rng)).toBe(1);
    // Counts do not matter for the repetition penalty.
    h2.addGenerated(0);
    h2.addGenerated(0);
    expect(
      s.sampleFull(Float32Array.from([-1.0, -1.25, -5]), P({ ...greedy, repetitionPenalty: 1.2 }), h2, rng),
    ).toBe(0);
  });

  it('frequency and presence penalties (OpenAI): generated tokens only, frequency scales with count', () => {
    const s = new Sampler(2);
    const rng = createRng(1);
    const row = Float32Array.from([2.0, 1.5]);
    const h = new TokenHistory(2);
    h.addPrompt([0, 0, 0]); // prompt tokens are not penalized
    expect(s.sampleFull(row, P({ ...greedy, frequencyPenalty: 10, presencePenalty: 10 }), h, rng)).toBe(0);
    h.addGenerated(0); // 2.0 - 0.3 = 1.7 > 1.5
    expect(s.sampleFull(row, P({ ...greedy, frequencyPenalty: 0.3 }), h, rng)).toBe(0);
    h.addGenerated(0); // 2.0 - 0.6 = 1.4 < 1.5
    expect(s.sampleFull(row, P({ ...greedy, frequencyPenalty: 0.3 }), h, rng)).toBe(1);
    // Presence: flat, whatever the count.
    expect(s.sampleFull(row, P({ ...greedy, presencePenalty: 0.45 }), h, rng)).toBe(0);
    expect(s.sampleFull(row, P({ ...greedy, presencePenalty: 0.55 }), h, rng)).toBe(1);
    // Negative penalties encourage repetition.
    const h2 = new TokenHistory(2);
    h2.addGenerated(1);
    expect(s.sampleFull(row, P({ ...greedy, presencePenalty: -0.6 }), h2, rng)).toBe(1);
    // Sampled distribution: penalty shifts the logit by exactly count * f + presence.
    const N = 40_000;
    const h3 = new TokenHistory(2);
    h3.addGenerated(0);
    h3.addGenerated(0);
    const f = [0, 0];
    const r = createRng(11);
    const flat = Float32Array.from([0, 0]);
    for (let i = 0; i < N; i++)
      f[s.sampleFull(flat, P({ frequencyPenalty: 0.25, presencePenalty: 0.5 }), h3, r)]!++;
    const q0 = Math.exp(-1) / (Math.exp(-1) + 1);
    expectDistribution([f[0]! / N, f[1]! / N], [q0, 1 - q0], N);
  });

  it('TokenHistory resets and validates ids', () => {
    const s = new Sampler(3);
    const h = new TokenHistory(3);
    for (let i = 0; i < 100; i++) h.addGenerated(i % 3);
    h.reset();
    expect(
      s.sampleFull(Float32Array.from([1, 0, 0]), P({ temperature: 0, frequencyPenalty: 2 }), h, createRng(1)),
    ).toBe(0);
    expect(() => h.addGenerated(3)).toThrow(expect.objectContaining({ code: 'TSI_ERR_INVALID_TOKEN_ID' }));
    expect(() => h.addPrompt([0, -1])).toThrow(expect.objectContaining({ code: 'TSI_ERR_INVALID_TOKEN_ID' }));
  });
});

describe('sampleTopK', () => {
  it('equals sampleFull for what samplingNeed routes to it', () => {
    const gen = createRng(99);
    const V = 500;
    const K = 32;
    const s = new Sampler(V);
    for (let trial = 0; trial < 200; trial++) {
      const row = randomLogits(gen, V);
      for (let i = 0; i < V; i++) row[i] = row[i]! + gen.next() * 1e-3; // no ties at the K-th candidate
      const p = P({
        temperature: [0.3, 1, 2][gen.int(0, 2)]!,
        topK: gen.int(1, K),
        topP: [1, 0.9, 0.5][gen.int(0, 2)]!,
        minP: [0, 0.1][gen.int(0, 1)]!,
      });
      expect(samplingNeed(p, K)).toEqual({ need: 'topk', k: p.topK });
      // Graph TopK: K largest, descending.
      const order = Array.from(row.keys())
        .sort((a, b) => row[b]! - row[a]! || a - b)
        .slice(0, K);
      const vals = Float32Array.from(order, (id) => row[id]!);
      const ids = BigInt64Array.from(order, (id) => BigInt(id));
      const seed = gen.int(0, 1e9);
      const ra = createRng(seed);
      const rb = createRng(seed);
      for (let step = 0; step < 10; step++) {
        expect(s.sampleTopK(vals, ids, p, ra)).toBe(s.sampleFull(row, p, null, rb));
      }
      expect(s.sampleTopK(vals, Int32Array.from(order), P({ ...p, temperature: 0 }), ra)).toBe(order[0]);
    }
  });

  it('restores the lowest-id-first tie order of graph candidates', () => {
    const s = new Sampler(10);
    const ids = Int32Array.from([7, 3, 5]);
    expect(s.sampleTopK(Float32Array.from([2, 2, 1]), ids, P({ temperature: 0 }), createRng(1))).toBe(3);
  });
});

describe('logprobs', () => {
  const logSoftmax = (row: number[]): number[] => {
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    return row.map((v) => v - lse);
  };

  it('returns raw log-softmax of the model row, unaffected by penalties and temperature', () => {
    const raw = [1.5, -0.5, 3.0, 3.0, 0.25, -100];
    const row = Float32Array.from(raw);
    const s = new Sampler(6);
    const h = new TokenHistory(6);
    h.addGenerated(2);
    const p = P({ temperature: 0, logprobs: 3, repetitionPenalty: 2, presencePenalty: 1 });
    const tok = s.sampleFull(row, p, h, createRng(1));
    expect(tok).toBe(3); // penalties moved the choice off token 2
    const lp = s.lastLogprobs(p)!;
    const ref = logSoftmax(raw);
    expect(lp.logprob).toBeCloseTo(ref[3]!, 6);
    expect(Array.from(lp.topIds)).toEqual([2, 3, 0]); // ties: lower id first
    for (let i = 0; i < lp.topIds.length; i++) expect(lp.topLogprobs[i]!).toBeCloseTo(ref[lp.topIds[i]!]!, 6);
    // Large logits do not overflow.
    const big = Float32Array.from([1000, 999, -1000]);
    s.sampleFull(big, P({ temperature: 0, logprobs: 2 }), null, createRng(1));
    const lb = s.lastLogprobs(P({ logprobs: 2 }))!;
    expect(lb.logprob).toBeCloseTo(-Math.log1p(Math.exp(-1)), 6);
    expect(Number.isFinite(lb.topLogprobs[1]!)).toBe(true);
  });

  it('handles 0, -1 and caps top-n', () => {
    const s = new Sampler(50, { maxTopLogprobs: 5 });
    const row = randomLogits(createRng(4), 50);
    s.sampleFull(row, P({ logprobs: 0 }), null, createRng(1));
    expect(s.lastLogprobs(P({ logprobs: 0 }))).toBeNull();
    s.sampleFull(row, P({ logprobs: -1 }), null, createRng(1));
    const only = s.lastLogprobs(P({ logprobs: -1 }))!;
    expect(only.topIds.length).toBe(0);
    expect(only.logprob).toBeLessThan(0);
    s.sampleFull(row, P({ logprobs: 20 }), null, createRng(1));
    const capped = s.lastLogprobs(P({ logprobs: 20 }))!;
    expect(capped.topIds.length).toBe(5);
    for (let i = 1; i < 5; i++)
      expect(capped.topLogprobs[i]!).toBeLessThanOrEqual(capped.topLogprobs[i - 1]!);
    // Not available after sampleTopK.
    s.sampleTopK(Float32Array.from([1, 0]), Int32Array.from([0, 1]), P({ topK: 2 }), createRng(1));
    expect(s.lastLogprobs(P({ logprobs: 2 }))).toBeNull();
  });
});

describe('samplingNeed and request RNGs', () => {
  it('routes requests to argmax, topk or full', () => {
    expect(samplingNeed(P({ temperature: 0 }), 64)).toEqual({ need: 'argmax', k: 1 });
    expect(samplingNeed(P({ temperature: 0, topK: 5, topP: 0.5 }), 64)).toEqual({ need: 'argmax', k: 1 });
    expect(samplingNeed(P({ temperature: 0, repetitionPenalty: 1.1 }), 64)).toEqual({ need: 'full', k: 0 });
    expect(samplingNeed(P({ temperature: 0, logprobs: 1 }), 64)).toEqual({ need: 'full', k: 0 });
    expect(samplingNeed(P({ topK: 40, topP: 0.9, minP: 0.1 }), 64)).toEqual({ need: 'topk', k: 40 });
    expect(samplingNeed(P({ topK: 64 }), 64)).toEqual({ need: 'topk', k: 64 });
    expect(samplingNeed(P({ topK: 65 }), 64)).toEqual({ need: 'full', k: 0 });
    expect(samplingNeed(P({ topP: 0.9 }), 64)).toEqual({ need: 'full', k: 0 });
    expect(samplingNeed(P({ topK: 10, frequencyPenalty: 0.5 }), 64)).toEqual({ need: 'full', k: 0 });
    expect(samplingNeed(P({ topK: 10, logprobs: 2 }), 64)).toEqual({ need: 'full', k: 0 });
  });

  it('seeds each request from its seed, else from the runner RNG', () => {
    const a = requestRng(5, createRng(1));
    const b = requestRng(5, createRng(2));
    expect(a.next()).toBe(b.next());
    const runner1 = createRng(77);
    const runner2 = createRng(77);
    const c = [requestRng(null, runner1), requestRng(null, runner1)];
    const d = [requestRng(null, runner2), requestRng(null, runner2)];
    expect(c[0]!.next()).toBe(d[0]!.next());
    expect(c[1]!.next()).toBe(d[1]!.next());
    expect(requestRng(null, createRng(78)).next()).not.toBe(requestRng(null, createRng(77)).next());
  });
});
