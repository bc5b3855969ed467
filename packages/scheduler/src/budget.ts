/**
 * The KV budget's estimate of future decode: SGLang's `new_token_ratio`.
 *
 * Admission reserves, for every running request, `ratio × min(remaining
 * max_new_tokens, clip)` KV tokens for the tokens it will still generate.
 * The ratio starts at `init`, decays by `decayPerPass` on every decode pass
 * that needs no retraction, down to `min`; a retraction raises it to what the
 * surviving batch is observed to need; going idle resets it to `init`.
 */
import type { NewTokenRatioParams } from './config.js';
import type { Request } from './request.js';

export class NewTokenRatio {
  readonly params: NewTokenRatioParams;
  #value: number;

  constructor(params: NewTokenRatioParams) {
    this.params = params;
    this.#value = params.init;
  }

  get value(): number {
    return this.#value;
  }

  /** A decode pass that did not retract: one decay step, floored at `min`. */
  decay(): void {
    const next = this.#value - this.params.decayPerPass;
    this.#value = Math.max(next, this.params.min);
  }

  /** The rank went idle (nothing running, nothing admitted): back to `init` (SGLang `self_check_during_idle`). */
  reset(): void {
    this.#value = this.params.init;
  }

  /** After a retraction: the estimate computed from the surviving batch (see {@link ratioAfterRetraction}). */
  set(value: number): void {
    this.#value = value;
  }
}

/**
 * SGLang's estimate after a retraction, from the requests still running:
 * `min(1, (Σ generated + retractDecodeSteps × n) / Σ max_new_tokens)`.
 * With nothing left running it is 1 (the most conservative value).
 */
export function ratioAfterRetraction(
  running: readonly Request[],
  count: number,
  retractDecodeSteps: number,
): number {
  let decoded = 0;
  let maxNew = 0;
  for (let i = 0; i < count; i++) {
    const r = running[i]!;
    decoded += r.outputLen;
    maxNew += r.maxNewTokens;
  }
  if (maxNew <= 0) return 1;
  const v = (decoded + retractDecodeSteps * count) / maxNew;
  return Math.min(v, 1);
}

/** KV tokens reserved for the future decode of the running batch: Σ min(remaining, clip) × ratio. */
export function runningReservation(
  running: readonly Request[],
  count: number,
  ratio: number,
  clip: number,
): number {
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const rem = running[i]!.remainingNewTokens;
    sum += Math.min(rem, clip);
  }
  return sum * ratio;
}
