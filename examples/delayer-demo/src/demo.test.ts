import { describe, expect, it } from 'vitest';
import { globalPrefillPasses, runDemo } from './main.js';

describe('delayer demo (4 worker-thread ranks, real shared-memory all-gather)', () => {
  it('the queue trigger turns many one-request prefills into few larger ones', async () => {
    const short = { passes: 400, passMs: 0 };
    const off = await runDemo({ enabled: false }, short);
    const on = await runDemo({ enabled: true, queueMinRatio: 0.25, maxDelayMs: 200 }, short);
    const meanBatch = (rs: typeof off) =>
      rs.reduce((s, r) => s + r.admitted, 0) / rs.reduce((s, r) => s + r.prefillPasses, 0);
    expect(globalPrefillPasses(on)).toBeLessThan(globalPrefillPasses(off) / 2);
    expect(meanBatch(on)).toBeGreaterThan(2 * meanBatch(off));
    // Every rank saw the same verdicts: identical outcome counts on every rank.
    for (const r of on) expect(r.outcomes).toEqual(on[0]?.outcomes);
    expect(on[0]?.outcomes['delay']).toBeGreaterThan(0);
  });
});
