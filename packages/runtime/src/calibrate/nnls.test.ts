import { createRng } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { leastSquares, nnls } from './nnls.js';

function gauss(rng: { next(): number }): number {
  return Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
}

/** Checks the KKT conditions of NNLS: x >= 0, gradient w = Aᵀ(b - Ax) <= 0 where x = 0 and = 0 where x > 0. */
function expectKkt(a: number[][], b: number[], x: Float64Array): void {
  const n = x.length;
  const r = b.map((bi, i) => bi - a[i]!.reduce((s, aij, j) => s + aij * x[j]!, 0));
  for (let j = 0; j < n; j++) {
    expect(x[j]).toBeGreaterThanOrEqual(0);
    const colNorm = Math.sqrt(a.reduce((s, row) => s + row[j]! ** 2, 0));
    const bNorm = Math.sqrt(b.reduce((s, v) => s + v * v, 0)) || 1;
    const w = a.reduce((s, row, i) => s + row[j]! * r[i]!, 0) / (colNorm * bNorm || 1);
    if (x[j]! > 0) expect(Math.abs(w)).toBeLessThan(1e-8);
    else expect(w).toBeLessThan(1e-8);
  }
}

describe('leastSquares', () => {
  it('solves an exact overdetermined system', () => {
    const a = [
      [1, 2],
      [3, 4],
      [5, 7],
    ];
    const x = leastSquares(3, 2, (i, j) => a[i]![j]!, [1 * 2 + 2 * -1, 3 * 2 + 4 * -1, 5 * 2 + 7 * -1]);
    expect(x[0]).toBeCloseTo(2, 12);
    expect(x[1]).toBeCloseTo(-1, 12);
  });
});

describe('nnls', () => {
  it('recovers known coefficients of a badly scaled design from noisy data', () => {
    const rng = createRng(7);
    const truth = [3.1, 0.004, 0.05, 1.2e-5, 0];
    const a: number[][] = [];
    const b: number[] = [];
    for (let i = 0; i < 200; i++) {
      const row = [1, rng.int(0, 4000), rng.int(0, 64), rng.int(0, 200_000), rng.int(0, 100)];
      const y = row.reduce((s, v, j) => s + v * truth[j]!, 0);
      a.push(row);
      b.push(y * (1 + 0.01 * gauss(rng)));
    }
    const { x } = nnls(a, b);
    for (let j = 0; j < 4; j++) expect(Math.abs(x[j]! - truth[j]!) / truth[j]!).toBeLessThan(0.05);
    expect(x[4]).toBeLessThan(0.01);
    expectKkt(a, b, x);
  });

  it('is exact on noise-free data', () => {
    const truth = [0.4, 1.5, 0.01, 2e-6];
    const a: number[][] = [];
    const b: number[] = [];
    for (let i = 1; i <= 30; i++) {
      const row = [1, i % 2, i * 17, i * i * 900];
      a.push(row);
      b.push(row.reduce((s, v, j) => s + v * truth[j]!, 0));
    }
    const { x, residualNorm } = nnls(a, b);
    for (let j = 0; j < truth.length; j++) expect(x[j]).toBeCloseTo(truth[j]!, 10);
    expect(residualNorm).toBeLessThan(1e-9);
  });

  it('clamps a coefficient that unconstrained least squares makes negative, and satisfies KKT', () => {
    // y = 2 + 1·u - 0.5·v: the best non-negative fit sets v's coefficient to 0.
    const rng = createRng(3);
    const a: number[][] = [];
    const b: number[] = [];
    for (let i = 0; i < 50; i++) {
      const u = rng.next() * 10;
      const v = rng.next() * 10;
      a.push([1, u, v]);
      b.push(2 + u - 0.5 * v);
    }
    const free = leastSquares(50, 3, (i, j) => a[i]![j]!, b);
    expect(free[2]).toBeLessThan(0);
    const { x } = nnls(a, b);
    expect(x[2]).toBe(0);
    expectKkt(a, b, x);
  });

  it('satisfies KKT on random problems and matches brute force over active sets', () => {
    const rng = createRng(11);
    for (let trial = 0; trial < 60; trial++) {
      const m = rng.int(4, 12);
      const n = rng.int(1, 4);
      const a = Array.from({ length: m }, () => Array.from({ length: n }, () => gauss(rng)));
      const b = Array.from({ length: m }, () => gauss(rng));
      const { x, residualNorm } = nnls(a, b);
      expectKkt(a, b, x);
      // brute force: best feasible unconstrained solution over every subset of columns
      let best = Math.sqrt(b.reduce((s, v) => s + v * v, 0));
      for (let mask = 1; mask < 1 << n; mask++) {
        const idx = [...Array(n).keys()].filter((j) => mask & (1 << j));
        const z = leastSquares(m, idx.length, (i, k) => a[i]![idx[k]!]!, b);
        if ([...z].some((v) => v < 0)) continue;
        const r = b.map((bi, i) => bi - idx.reduce((s, j, k) => s + a[i]![j]! * z[k]!, 0));
        best = Math.min(best, Math.sqrt(r.reduce((s, v) => s + v * v, 0)));
      }
      expect(residualNorm).toBeLessThanOrEqual(best + 1e-9);
    }
  });

  it('gives 0 to an all-zero column and rejects bad input', () => {
    const { x } = nnls(
      [
        [1, 0],
        [2, 0],
      ],
      [2, 4],
    );
    expect(x[0]).toBeCloseTo(2, 12);
    expect(x[1]).toBe(0);
    expect(() => nnls([[1]], [1, 2])).toThrow(RangeError);
    expect(() => nnls([[Number.NaN]], [1])).toThrow(RangeError);
  });
});
