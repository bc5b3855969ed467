/** Parsers of the bench's numeric flags (shared by `tsinfer bench` and `tsinfer sim`). */
import { InvalidConfigError } from '@tsinfer/core';

/** An integer >= `min`, else InvalidConfigError naming `flag`. */
export function int(flag: string, v: string, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new InvalidConfigError(flag, `must be an integer >= ${min}, got "${v}"`);
  return n;
}

/** A number; `inf` / `infinity` mean +Infinity (as bench_serving's `--request-rate inf`). */
export function float(flag: string, v: string): number {
  const t = v.trim().toLowerCase();
  const n = t === 'inf' || t === 'infinity' ? Number.POSITIVE_INFINITY : Number(v);
  if (Number.isNaN(n) || t === '') throw new InvalidConfigError(flag, `must be a number, got "${v}"`);
  return n;
}
