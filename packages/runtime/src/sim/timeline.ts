import { ManualClock } from '@tsinfer/core';

interface Timer {
  readonly at: number;
  readonly seq: number;
  readonly resolve: () => void;
  cancelled: boolean;
}

/** Lets every pending promise continuation run (a macrotask turn: all microtasks before it drain). */
export const flushMicrotasks = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Virtual time for running the real scheduler against the simulated runner
 * faster than real time. Code under simulation awaits `sleep(ms)` (the
 * runner's `wait`, the scheduler's idle waits); the driver calls
 * `runUntilIdle()` or `advanceTo(t)`, which resolve those sleeps one at a
 * time in deadline order (ties in the order they were made), moving `clock`
 * to each deadline first and letting the woken code run (and make new
 * sleeps) before the next one. Deterministic: no real time passes between
 * virtual instants; only the event loop turns.
 */
export class VirtualTimeline {
  readonly clock: ManualClock;
  readonly #heap: Timer[] = [];
  #seq = 0;
  #live = 0;
  #running = false;

  constructor(clock: ManualClock = new ManualClock(0)) {
    this.clock = clock;
  }

  /** Virtual now, in ms. */
  nowMs(): number {
    return this.clock.nowMs();
  }

  /** Sleeps still waiting. */
  get pending(): number {
    return this.#live;
  }

  /** Deadline of the earliest waiting sleep, or null. */
  nextDeadline(): number | null {
    this.#dropCancelled();
    return this.#heap[0]?.at ?? null;
  }

  /**
   * A promise that resolves when the driver moves virtual time to now + ms.
   * With `signal`, aborting removes the sleep and rejects with the signal's reason.
   */
  sleep = (ms: number, signal?: AbortSignal): Promise<void> => {
    if (!(ms >= 0) || !Number.isFinite(ms)) {
      return Promise.reject(
        new RangeError(`VirtualTimeline.sleep: ms must be a finite number >= 0, got ${ms}`),
      );
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const timer: Timer = {
        at: this.clock.nowMs() + ms,
        seq: this.#seq++,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        cancelled: false,
      };
      const onAbort = (): void => {
        if (timer.cancelled) return;
        timer.cancelled = true;
        this.#live--;
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#push(timer);
      this.#live++;
    });
  };

  /** Resolves every sleep, in deadline order, until none is left (sleeps made meanwhile included). */
  async runUntilIdle(options: { maxEvents?: number } = {}): Promise<void> {
    await this.#run(Number.POSITIVE_INFINITY, options.maxEvents ?? 10_000_000);
  }

  /** Resolves every sleep due at or before `t`, then sets the clock to `t` (which may not be in the past). */
  async advanceTo(t: number, options: { maxEvents?: number } = {}): Promise<void> {
    if (!(t >= this.clock.nowMs())) {
      throw new RangeError(
        `VirtualTimeline.advanceTo: time may not go backwards (${t} < ${this.clock.nowMs()})`,
      );
    }
    await this.#run(t, options.maxEvents ?? 10_000_000);
    this.clock.set(t);
    await flushMicrotasks();
  }

  /** `advanceTo(now + ms)`. */
  advanceBy(ms: number, options: { maxEvents?: number } = {}): Promise<void> {
    return this.advanceTo(this.clock.nowMs() + ms, options);
  }

  async #run(until: number, maxEvents: number): Promise<void> {
    if (this.#running) throw new Error('VirtualTimeline: runUntilIdle/advanceTo is already running');
    this.#running = true;
    try {
      let events = 0;
      await flushMicrotasks();
      for (;;) {
        this.#dropCancelled();
        const top = this.#heap[0];
        if (!top || top.at > until) return;
        if (++events > maxEvents) {
          throw new Error(`VirtualTimeline: more than ${maxEvents} events; a loop that never idles?`);
        }
        this.#pop();
        this.#live--;
        if (top.at > this.clock.nowMs()) this.clock.set(top.at);
        top.resolve();
        await flushMicrotasks();
      }
    } finally {
      this.#running = false;
    }
  }

  #dropCancelled(): void {
    while (this.#heap[0]?.cancelled) this.#pop();
  }

  #less(a: Timer, b: Timer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #push(t: Timer): void {
    const h = this.#heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  #pop(): Timer | undefined {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.#less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.#less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
