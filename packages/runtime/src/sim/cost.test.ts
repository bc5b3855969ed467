import { describe, expect, it } from 'vitest';
import type { ForwardBatch } from '../contract.js';
import { costOfFeatures, stepCostMs, stepFeatures, ZERO_COST } from './cost.js';
import { testProfile } from './test-util.js';

const toks = (n: number): Int32Array => new Int32Array(n).fill(5);

describe('stepFeatures / stepCostMs', () => {
  const batch: ForwardBatch = {
    free: [9],
    add: [],
    prefill: [
      { id: 1, start: 0, tokens: toks(10), sample: true },
      { id: 2, start: 100, tokens: toks(4), sample: false },
    ],
    decode: [3, 4],
  };
  const lens = new Map([
    [2, 100],
    [3, 50],
    [4, 7],
  ]);
  const f = stepFeatures(batch, (id) => lens.get(id) ?? 0);

  it('counts every term of a mixed pass', () => {
    expect(f).toEqual({
      fixedMs: 1,
      prefillFixedMs: 1,
      decodeFixedMs: 1,
      perPrefillRequestMs: 2,
      perPrefillTokenMs: 14,
      // 10 tokens from 0: 55 pairs; 4 tokens at 100: 400 + 10
      perPrefillAttentionPairMs: 55 + 410,
      perDecodeRequestMs: 2,
      // prefill rows 10 and 104; decode rows 51 and 8
      perKvTokenReadMs: 10 + 104 + 51 + 8,
    });
  });

  it('is the dot product of coefficients and counts', () => {
    const { cost } = testProfile();
    const expected = 0.4 + 1.5 + 2 + 0.3 * 2 + 0.01 * 14 + 2e-6 * 465 + 0.05 * 2 + 1e-4 * (10 + 104 + 51 + 8);
    expect(stepCostMs(cost, batch, (id) => lens.get(id) ?? 0)).toBeCloseTo(expected, 12);
    expect(costOfFeatures(ZERO_COST, f)).toBe(0);
  });

  it('charges only the fixed cost for an empty pass', () => {
    const { cost } = testProfile();
    expect(stepCostMs(cost, { free: [], add: [], prefill: [], decode: [] }, () => 0)).toBe(0.4);
  });
});
