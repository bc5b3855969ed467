/**
 * One request's output text on its rank: incremental detokenization plus
 * stop-string matching, fed token by token from the scheduler's sink, and
 * the `StopStringMatcher` the scheduler asks after each token (so a stop
 * string finishes the request in the pass that completes it).
 *
 * The text handed out (`take`) is final: it never ends inside a UTF-8
 * sequence (the detokenizer holds incomplete bytes back), never contains a
 * stop string, and holds back any suffix that could still grow into one.
 * `finish` releases what is left: the held-back suffix (unless a stop string
 * matched, which cuts the text where the stop string starts) and the
 * detokenizer's remainder.
 */
import type { IncrementalDetokenizer } from '@tsinfer/runtime';
import { StopStringMatcher as StopFinder } from '@tsinfer/runtime';
import type { StopStringMatcher } from '@tsinfer/scheduler';

export class RequestText implements StopStringMatcher {
  readonly #detok: IncrementalDetokenizer;
  readonly #finder: StopFinder | null;
  /** Generated text so far (only kept when there are stop strings). */
  #full = '';
  /** Length of `#full` already released. */
  #emitted = 0;
  /** Released text not yet taken. */
  #out = '';
  #pendingStop: string | null = null;
  #matched: string | null = null;

  constructor(detok: IncrementalDetokenizer, stops: readonly string[]) {
    this.#detok = detok;
    const finder = stops.length > 0 ? new StopFinder(stops) : null;
    this.#finder = finder !== null && finder.stops.length > 0 ? finder : null;
  }

  /** True when this request has stop strings (the scheduler needs the matcher). */
  get hasStops(): boolean {
    return this.#finder !== null;
  }

  /** The stop string that matched, or null. */
  get matched(): string | null {
    return this.#matched;
  }

  /**
   * A sampled token. `textless` = the token ends the request as a stop token
   * or EOS: its text is not part of the output (OpenAI / vLLM semantics).
   */
  onToken(token: number, textless: boolean): void {
    this.#pendingStop = null;
    if (this.#matched !== null || textless) return;
    const delta = this.#detok.push(token);
    if (delta.length === 0) return;
    const finder = this.#finder;
    if (finder === null) {
      this.#out += delta;
      return;
    }
    this.#full += delta;
    this.#release(finder);
  }

  #release(finder: StopFinder): void {
    const c = finder.check(this.#full, this.#emitted);
    if (c.stopIndex >= 0) {
      this.#out += this.#full.slice(this.#emitted, c.stopIndex);
      this.#emitted = c.stopIndex;
      this.#matched = c.stop;
      this.#pendingStop = c.stop;
      return;
    }
    if (c.safeEnd > this.#emitted) {
      this.#out += this.#full.slice(this.#emitted, c.safeEnd);
      this.#emitted = c.safeEnd;
    }
  }

  /** The scheduler's stop check for the token just given to `onToken`. */
  push(_token: number): string | null {
    const s = this.#pendingStop;
    this.#pendingStop = null;
    return s;
  }

  /** Released text since the last call. */
  take(): string {
    const o = this.#out;
    this.#out = '';
    return o;
  }

  /** The request ended: everything still held back, now final (cut at a stop string if one is found). */
  finish(): string {
    if (this.#matched === null) {
      const rest = this.#detok.flush();
      const finder = this.#finder;
      if (finder === null) this.#out += rest;
      else {
        this.#full += rest;
        this.#release(finder);
        if (this.#matched === null) {
          this.#out += this.#full.slice(this.#emitted);
          this.#emitted = this.#full.length;
        }
      }
    }
    return this.take();
  }
}
