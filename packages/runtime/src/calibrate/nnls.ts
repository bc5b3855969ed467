/**
 * Non-negative least squares: minimise ||A x - b||₂ subject to x >= 0
 * (Lawson & Hanson, "Solving Least Squares Problems", 1974, ch. 23).
 * Columns are scaled to unit norm first (a design matrix mixes a column of
 * ones with token counts in the hundreds of thousands), and each
 * unconstrained sub-problem is solved by Householder QR, not the normal
 * equations, so ill-conditioned designs lose as little as they can.
 */

/** The result of `nnls`. */
export interface NnlsResult {
  readonly x: Float64Array;
  /** ||A x - b||₂. */
  readonly residualNorm: number;
  /** Outer iterations taken. */
  readonly iterations: number;
}

/** `a` is row-major: `a[i]` is row i (all rows the same length). */
export function nnls(
  a: readonly (readonly number[])[],
  b: readonly number[],
  options: { maxIterations?: number } = {},
): NnlsResult {
  const m = a.length;
  if (m !== b.length) throw new RangeError(`nnls: ${m} rows but ${b.length} targets`);
  const n = a[0]?.length ?? 0;
  for (const row of a) if (row.length !== n) throw new RangeError('nnls: rows of different lengths');
  for (const row of a)
    for (const v of row) if (!Number.isFinite(v)) throw new RangeError('nnls: non-finite matrix entry');
  for (const v of b) if (!Number.isFinite(v)) throw new RangeError('nnls: non-finite target');

  // Column scaling.
  const scale = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < m; i++) s += a[i]![j]! ** 2;
    scale[j] = s > 0 ? Math.sqrt(s) : 0;
  }
  const col = (j: number, i: number): number => (scale[j]! > 0 ? a[i]![j]! / scale[j]! : 0);

  const x = new Float64Array(n);
  const passive = new Array<boolean>(n).fill(false);
  const usable = Array.from({ length: n }, (_, j) => scale[j]! > 0);
  const r = new Float64Array(m);
  const w = new Float64Array(n);
  const residual = (): void => {
    for (let i = 0; i < m; i++) {
      let s = b[i]!;
      for (let j = 0; j < n; j++) if (x[j] !== 0) s -= col(j, i) * x[j]!;
      r[i] = s;
    }
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < m; i++) s += col(j, i) * r[i]!;
      w[j] = s;
    }
  };
  let bNorm = 0;
  for (const v of b) bNorm += v * v;
  const tol = 1e-12 * Math.max(1, Math.sqrt(bNorm)) * Math.max(m, n);
  const maxIterations = options.maxIterations ?? 3 * n + 10;

  let iterations = 0;
  residual();
  for (;;) {
    let t = -1;
    let best = tol;
    for (let j = 0; j < n; j++) {
      if (!passive[j] && usable[j] && w[j]! > best) {
        best = w[j]!;
        t = j;
      }
    }
    if (t < 0) break;
    if (++iterations > maxIterations) break;
    passive[t] = true;
    for (;;) {
      const idx = passive.flatMap((p, j) => (p ? [j] : []));
      const z = leastSquares(m, idx.length, (i, k) => col(idx[k]!, i), b);
      const s = new Float64Array(n);
      idx.forEach((j, k) => {
        s[j] = z[k]!;
      });
      if (idx.every((j) => s[j]! > 0)) {
        x.set(s);
        break;
      }
      // Step from x towards s as far as feasibility allows, then drop the variables that hit 0.
      let alpha = Number.POSITIVE_INFINITY;
      let hit = -1;
      for (const j of idx) {
        if (s[j]! <= 0) {
          const a = x[j]! / (x[j]! - s[j]!);
          if (a < alpha) {
            alpha = a;
            hit = j;
          }
        }
      }
      for (let j = 0; j < n; j++) x[j] = x[j]! + alpha * (s[j]! - x[j]!);
      x[hit] = 0;
      for (const j of idx) {
        if (x[j]! <= 0 || j === hit) {
          x[j] = 0;
          passive[j] = false;
        }
      }
      if (!passive.some(Boolean)) break;
    }
    residual();
  }
  residual();
  let rn = 0;
  for (const v of r) rn += v * v;
  const out = new Float64Array(n);
  for (let j = 0; j < n; j++) out[j] = scale[j]! > 0 ? x[j]! / scale[j]! : 0;
  return { x: out, residualNorm: Math.sqrt(rn), iterations };
}

/**
 * Unconstrained least squares of an m×n matrix given by `get(i, j)` against
 * `b`, by Householder QR with a rank guard (a column whose remaining norm is
 * negligible gets 0).
 */
export function leastSquares(
  m: number,
  n: number,
  get: (i: number, j: number) => number,
  b: readonly number[],
): Float64Array {
  const q = Array.from({ length: m }, (_, i) => Float64Array.from({ length: n }, (_, j) => get(i, j)));
  const y = Float64Array.from(b);
  const rdiag = new Float64Array(n);
  const k = Math.min(m, n);
  for (let j = 0; j < k; j++) {
    let norm = 0;
    for (let i = j; i < m; i++) norm += q[i]![j]! ** 2;
    norm = Math.sqrt(norm);
    if (norm === 0) {
      rdiag[j] = 0;
      continue;
    }
    const alpha = q[j]![j]! > 0 ? -norm : norm;
    // v = x - alpha e1, stored in column j below the diagonal.
    q[j]![j] = q[j]![j]! - alpha;
    let vnorm2 = 0;
    for (let i = j; i < m; i++) vnorm2 += q[i]![j]! ** 2;
    if (vnorm2 > 0) {
      for (let c = j + 1; c < n; c++) {
        let d = 0;
        for (let i = j; i < m; i++) d += q[i]![j]! * q[i]![c]!;
        const f = (2 * d) / vnorm2;
        for (let i = j; i < m; i++) q[i]![c] = q[i]![c]! - f * q[i]![j]!;
      }
      let d = 0;
      for (let i = j; i < m; i++) d += q[i]![j]! * y[i]!;
      const f = (2 * d) / vnorm2;
      for (let i = j; i < m; i++) y[i] = y[i]! - f * q[i]![j]!;
    }
    rdiag[j] = alpha;
  }
  // Back-substitution on R (diagonal in rdiag, above it in q).
  const x = new Float64Array(n);
  let maxDiag = 0;
  for (let j = 0; j < k; j++) maxDiag = Math.max(maxDiag, Math.abs(rdiag[j]!));
  for (let j = k - 1; j >= 0; j--) {
    if (Math.abs(rdiag[j]!) <= 1e-10 * maxDiag) {
      x[j] = 0;
      continue;
    }
    let s = y[j]!;
    for (let c = j + 1; c < n; c++) s -= q[j]![c]! * x[c]!;
    x[j] = s / rdiag[j]!;
  }
  return x;
}
