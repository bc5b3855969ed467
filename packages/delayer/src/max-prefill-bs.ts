/**
 * The scheduler's `max_prefill_bs`: how many requests a prefill batch
 * typically admits, gathered as column 3 and used by both the slot condition
 * (`free slots < max_prefill_bs`) and the queue threshold cap.
 *
 * Baseline (window 0, SGLang): a lifetime high-water mark,
 * `max(max_prefill_bs, admitted)` after each built batch; it never decreases,
 * so one burst raises the slot bar for the life of the process.
 *
 * Opt-in fix (window N > 0, `--prefill-delayer-max-prefill-bs-window`): the
 * largest admission among the last N non-empty admissions. Passes that admit
 * nothing — delayed passes included — are not recorded, so a delay episode
 * can never age the window and collapse the queue threshold to the current
 * queue length (the failure reported in SGLang's closed PR #34806).
 */
import { InvalidConfigError } from '@tsinfer/core';

export class MaxPrefillBsTracker {
  readonly windowSize: number;
  readonly #ring: Float64Array;
  #next = 0;
  #filled = 0;
  #value = 0;

  /** `windowSize` 0 = lifetime high-water mark (SGLang); N > 0 = max over the last N non-empty admissions. */
  constructor(windowSize = 0) {
    if (!Number.isInteger(windowSize) || windowSize < 0) {
      throw new InvalidConfigError(
        '--prefill-delayer-max-prefill-bs-window',
        `must be an integer >= 0; got ${String(windowSize)}`,
      );
    }
    this.windowSize = windowSize;
    this.#ring = new Float64Array(windowSize);
  }

  /** The value to pass as `maxPrefillBs` to the delayer (0 until the first non-empty admission). */
  get value(): number {
    return this.#value;
  }

  /**
   * Records one pass's admission: the number of requests in the prefill batch
   * built this pass (0, or simply no call, when nothing was admitted).
   */
  record(admitted: number): void {
    if (!(admitted > 0)) return; // empty (or delayed) attempts are not admissions
    const n = this.windowSize;
    if (n === 0) {
      if (admitted > this.#value) this.#value = admitted;
      return;
    }
    this.#ring[this.#next] = admitted;
    this.#next = this.#next + 1 === n ? 0 : this.#next + 1;
    if (this.#filled < n) this.#filled++;
    let max = 0;
    for (let i = 0; i < this.#filled; i++) {
      const v = this.#ring[i]!;
      if (v > max) max = v;
    }
    this.#value = max;
  }
}
