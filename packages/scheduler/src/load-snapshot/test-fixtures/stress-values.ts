/**
 * The value of field k in write n of the seqlock stress test. Every field of
 * one write differs from the same field of any other write, and the low bits
 * and the high word of the float64 both change with n, so a record mixing
 * two writes (or the two Int32 halves of one field from two writes) is
 * detected. Field 0 (timestamp) is n itself.
 */
export function stressValue(n: number, k: number): number {
  if (k === 0) return n;
  return n * 1024 + k + (k % 3 === 0 ? 0.5 : 0) + (k % 2 === 0 ? n * 2 ** 20 : 0);
}
