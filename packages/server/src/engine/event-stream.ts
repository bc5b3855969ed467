/**
 * A request's event stream on the main thread: the rank handler pushes, the
 * consumer pulls with `for await`. Token events that pile up while the
 * consumer is busy are merged into one (ids, text and logprobs concatenated),
 * so a slow consumer costs memory proportional to its tokens, not one object
 * per pass. Ending the iteration early (`break`, `return()`) calls `onCancel`
 * (the engine aborts the request).
 */
import type { TokenLogprobs } from '@tsinfer/runtime';
import type { GenerateEvent } from './types.js';

type TokensEvent = Extract<GenerateEvent, { type: 'tokens' }>;

interface MutableTokens {
  type: 'tokens';
  tokenIds: number[];
  text: string;
  logprobs: (TokenLogprobs | null)[] | null;
}

export class EventStream implements AsyncIterable<GenerateEvent>, AsyncIterator<GenerateEvent> {
  readonly #queue: GenerateEvent[] = [];
  #waiter: ((r: IteratorResult<GenerateEvent>) => void) | null = null;
  #done = false;
  #ended = false;
  #onCancel: (() => void) | null;

  constructor(onCancel: () => void) {
    this.#onCancel = onCancel;
  }

  /** True once the finish event was pushed. */
  get ended(): boolean {
    return this.#ended;
  }

  pushTokens(tokenIds: number[], text: string, logprobs: MutableTokens['logprobs']): void {
    if (this.#ended) return;
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      w({ value: { type: 'tokens', tokenIds, text, logprobs }, done: false });
      return;
    }
    const last = this.#queue[this.#queue.length - 1];
    if (last !== undefined && last.type === 'tokens') {
      const m = last as unknown as MutableTokens;
      const n0 = m.tokenIds.length;
      for (const t of tokenIds) m.tokenIds.push(t);
      m.text += text;
      if (m.logprobs !== null || logprobs !== null) {
        const merged = m.logprobs ?? new Array(n0).fill(null);
        for (let i = 0; i < tokenIds.length; i++) merged.push(logprobs?.[i] ?? null);
        m.logprobs = merged;
      }
      return;
    }
    this.#queue.push({ type: 'tokens', tokenIds, text, logprobs } as TokensEvent);
  }

  pushFinish(ev: Extract<GenerateEvent, { type: 'finish' }>): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#onCancel = null;
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      w({ value: ev, done: false });
      return;
    }
    this.#queue.push(ev);
  }

  [Symbol.asyncIterator](): AsyncIterator<GenerateEvent> {
    return this;
  }

  next(): Promise<IteratorResult<GenerateEvent>> {
    const ev = this.#queue.shift();
    if (ev !== undefined) return Promise.resolve({ value: ev, done: false });
    if (this.#ended || this.#done) {
      this.#done = true;
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve) => {
      this.#waiter = resolve;
    });
  }

  return(): Promise<IteratorResult<GenerateEvent>> {
    this.#done = true;
    this.#queue.length = 0;
    const cancel = this.#onCancel;
    this.#onCancel = null;
    if (!this.#ended) cancel?.();
    const w = this.#waiter;
    this.#waiter = null;
    w?.({ value: undefined, done: true });
    return Promise.resolve({ value: undefined, done: true });
  }
}
