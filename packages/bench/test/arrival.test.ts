import { createRng } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { nextArrivalDelayMs, shuffle } from '../src/random.js';
import { Semaphore } from '../src/run.js';

describe('Poisson arrivals (--request-rate)', () => {
  const rate = 5; // requests/s
  const N = 50_000;
  const rng = createRng(42);
  const gaps = Array.from({ length: N }, () => nextArrivalDelayMs(rng, rate) / 1000);

  it('inter-arrival gaps are exponential with mean 1/rate and coefficient of variation 1', () => {
    const mean = gaps.reduce((a, b) => a + b, 0) / N;
    const sd = Math.sqrt(gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / N);
    expect(mean).toBeGreaterThan(0.2 * 0.98);
    expect(mean).toBeLessThan(0.2 * 1.02);
    expect(sd / mean).toBeGreaterThan(0.97);
    expect(sd / mean).toBeLessThan(1.03);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(0);
  });

  it('the gap CDF matches 1 - exp(-rate·t) (Kolmogorov–Smirnov distance < 1%)', () => {
    const s = [...gaps].sort((a, b) => a - b);
    let d = 0;
    s.forEach((g, i) => {
      const F = 1 - Math.exp(-rate * g);
      d = Math.max(d, Math.abs(F - (i + 1) / N), Math.abs(F - i / N));
    });
    // The 1% critical value for N = 50 000 is 1.63/√N ≈ 0.0073.
    expect(d).toBeLessThan(0.0073);
  });

  it('arrival counts per 1 s window are Poisson (variance ≈ mean ≈ rate)', () => {
    let t = 0;
    const counts = new Map<number, number>();
    for (const g of gaps) {
      t += g;
      const w = Math.floor(t);
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
    const windows = Math.floor(t);
    const c = Array.from({ length: windows }, (_, w) => counts.get(w) ?? 0);
    const m = c.reduce((a, b) => a + b, 0) / windows;
    const v = c.reduce((a, x) => a + (x - m) ** 2, 0) / windows;
    expect(m).toBeGreaterThan(4.85);
    expect(m).toBeLessThan(5.15);
    expect(v / m).toBeGreaterThan(0.9);
    expect(v / m).toBeLessThan(1.1);
  });

  it('an infinite rate sends everything at once; a seed reproduces the schedule', () => {
    expect(nextArrivalDelayMs(createRng(1), Number.POSITIVE_INFINITY)).toBe(0);
    const a = createRng(7);
    const b = createRng(7);
    for (let i = 0; i < 10; i++) expect(nextArrivalDelayMs(a, 2)).toBe(nextArrivalDelayMs(b, 2));
  });

  it('shuffle is a seeded permutation', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i);
    const s1 = shuffle(createRng(3), [...xs]);
    expect([...s1].sort((a, b) => a - b)).toEqual(xs);
    expect(s1).toEqual(shuffle(createRng(3), [...xs]));
    expect(s1).not.toEqual(xs);
  });
});

describe('Semaphore (--max-concurrency)', () => {
  it('never lets more than n holders in, and serves waiters in order', async () => {
    const sem = new Semaphore(2);
    let inside = 0;
    let peak = 0;
    const order: number[] = [];
    const gates: Array<() => void> = [];
    const tasks = Array.from({ length: 6 }, (_, i) =>
      (async () => {
        await sem.acquire();
        inside++;
        peak = Math.max(peak, inside);
        order.push(i);
        await new Promise<void>((r) => gates.push(r));
        inside--;
        sem.release();
      })(),
    );
    for (let k = 0; k < 6; k++) {
      await new Promise((r) => setImmediate(r));
      gates.shift()?.();
    }
    await Promise.all(tasks);
    expect(peak).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
  });
});
