/**
 * Time is a service. Scheduler, delayer, controller and simulator read time
 * from an injected Clock so that tests drive it and a virtual-time driver
 * can run the real code faster than real time.
 */
export interface Clock {
  /**
   * Milliseconds on a monotonic timeline shared by every thread of the
   * process (so a timestamp taken on one worker thread can be compared with
   * one taken on another).
   */
  nowMs(): number;
}

/**
 * The real clock: `performance.timeOrigin + performance.now()`. Each worker
 * thread has its own `performance.now()` origin; adding `timeOrigin` puts
 * every thread on one timeline.
 */
export const systemClock: Clock = {
  nowMs: () => performance.timeOrigin + performance.now(),
};

/** A clock that only moves when told to. For tests and virtual time. */
export class ManualClock implements Clock {
  #now: number;
  constructor(startMs = 0) {
    this.#now = startMs;
  }
  nowMs(): number {
    return this.#now;
  }
  /** Moves time forward by `ms` (must be ≥ 0). */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`ManualClock.advance: ms must be >= 0, got ${ms}`);
    this.#now += ms;
  }
  /** Sets the time; it may not go backwards. */
  set(ms: number): void {
    if (!(ms >= this.#now))
      throw new RangeError(`ManualClock.set: time may not go backwards (${ms} < ${this.#now})`);
    this.#now = ms;
  }
}
