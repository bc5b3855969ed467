/**
 * Waking a sleeping rank loop when work arrives: a generation counter that
 * `notify()` bumps, and `waitForChange(gen)` that resolves once the counter
 * differs from `gen` (at once if it already does, so a notify between
 * reading the generation and waiting is never lost).
 *
 * Under DP attention every rank of the group must wake together. The ranks
 * put the generation they read into their lockstep row; the group is idle
 * only if no rank has work and all read the same generation `g`, and then
 * every rank waits for a change from that same `g` — any request arriving at
 * any rank after the reads bumps it and wakes them all, and one arriving
 * before some rank's read makes the generations differ, so the group does
 * not go idle at all.
 */

export interface WakeSignal {
  generation(): number;
  /** Bumps the generation and wakes every waiter. */
  notify(): void;
  /** Resolves when the generation differs from `gen`. */
  waitForChange(gen: number): Promise<void>;
}

/** A wake signal for loops in one thread (the virtual-time driver). */
export class LocalWake implements WakeSignal {
  #gen = 0;
  #waiters: Array<() => void> = [];

  generation(): number {
    return this.#gen;
  }

  notify(): void {
    this.#gen = (this.#gen + 1) | 0;
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  waitForChange(gen: number): Promise<void> {
    if (this.#gen !== gen) return Promise.resolve();
    return new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
}

/** Everything a thread needs to join a {@link SharedWake}; plain data for `postMessage`. */
export interface SharedWakeInit {
  readonly kind: 'tsinfer.shared-wake';
  readonly buffer: SharedArrayBuffer;
}

export function createSharedWakeInit(): SharedWakeInit {
  return { kind: 'tsinfer.shared-wake', buffer: new SharedArrayBuffer(4) };
}

/** `Atomics.waitAsync` (Node >= 16; typed from lib es2024, which this project's lib setting does not include). */
type WaitAsync = (
  typedArray: Int32Array,
  index: number,
  value: number,
) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** A wake signal shared by threads (one SharedArrayBuffer word, `Atomics.waitAsync`). */
export class SharedWake implements WakeSignal {
  readonly #word: Int32Array;

  constructor(init: SharedWakeInit) {
    if (init.kind !== 'tsinfer.shared-wake' || !(init.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError('SharedWake: init must come from createSharedWakeInit');
    }
    this.#word = new Int32Array(init.buffer, 0, 1);
  }

  generation(): number {
    return Atomics.load(this.#word, 0);
  }

  notify(): void {
    Atomics.add(this.#word, 0, 1);
    Atomics.notify(this.#word, 0);
  }

  async waitForChange(gen: number): Promise<void> {
    for (;;) {
      const r = waitAsync(this.#word, 0, gen);
      if (!r.async) return; // 'not-equal': already changed
      await r.value;
      if (Atomics.load(this.#word, 0) !== gen) return;
    }
  }
}
