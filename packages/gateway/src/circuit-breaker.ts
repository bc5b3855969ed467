/**
 * A circuit breaker per worker (SGLang's states and counters, §5.6 of the
 * spec), with its flaws F-18 fixed:
 *
 * - the window is used: a failure more than `windowMs` after the previous
 *   one restarts the failure count, so rare failures spread over hours never
 *   open the breaker;
 * - half-open admits **one probe at a time**: `tryAcquire()` hands out a
 *   single probe permit, and nothing else is admitted until that probe's
 *   outcome is recorded (or it is released without one, e.g. when the
 *   client went away).
 *
 * Open becomes half-open lazily, when the state is read after `timeoutMs`.
 */
import type { Clock } from '@tsinfer/core';
import type { CircuitBreakerConfig } from './config.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

/** Prometheus gauge values (SGLang's codes). */
export const BREAKER_STATE_CODE: Readonly<Record<BreakerState, number>> = {
  closed: 0,
  open: 1,
  half_open: 2,
};

/** What `tryAcquire` hands out; pass it back to `record`/`release`. */
export interface BreakerPermit {
  readonly probe: boolean;
}

const NORMAL: BreakerPermit = Object.freeze({ probe: false });

export class CircuitBreaker {
  readonly #config: CircuitBreakerConfig;
  readonly #clock: Clock;
  #state: BreakerState = 'closed';
  #failures = 0;
  #successes = 0;
  #lastFailureMs = Number.NEGATIVE_INFINITY;
  #changedAtMs: number;
  #probeInFlight = false;
  #transitions = 0;
  /** Called on every state change. */
  onChange: ((from: BreakerState, to: BreakerState) => void) | null = null;

  constructor(config: CircuitBreakerConfig, clock: Clock) {
    this.#config = config;
    this.#clock = clock;
    this.#changedAtMs = clock.nowMs();
  }

  /** The current state (moves open → half-open when the timeout has passed). */
  get state(): BreakerState {
    if (
      this.#config.enabled &&
      this.#state === 'open' &&
      this.#clock.nowMs() - this.#changedAtMs >= this.#config.timeoutMs
    ) {
      this.#to('half_open');
    }
    return this.#state;
  }

  /** Number of state changes so far. */
  get transitions(): number {
    return this.#transitions;
  }

  /** Whether a request could be admitted now (no side effect besides open → half-open). */
  canExecute(): boolean {
    if (!this.#config.enabled) return true;
    const s = this.state;
    if (s === 'closed') return true;
    if (s === 'open') return false;
    return !this.#probeInFlight;
  }

  /** Admits a request: a normal permit when closed, the one probe permit when half-open, else null. */
  tryAcquire(): BreakerPermit | null {
    if (!this.#config.enabled) return NORMAL;
    const s = this.state;
    if (s === 'closed') return NORMAL;
    if (s === 'open' || this.#probeInFlight) return null;
    this.#probeInFlight = true;
    return { probe: true };
  }

  /** Gives a permit back without an outcome (the client went away before the worker answered). */
  release(permit: BreakerPermit): void {
    if (permit.probe) this.#probeInFlight = false;
  }

  /** Records an attempt's outcome and gives its permit back. */
  record(permit: BreakerPermit, success: boolean): void {
    if (permit.probe) this.#probeInFlight = false;
    if (!this.#config.enabled) return;
    if (success) this.recordSuccess();
    else this.recordFailure();
  }

  recordSuccess(): void {
    if (!this.#config.enabled) return;
    const s = this.state;
    this.#failures = 0;
    this.#successes++;
    if (s === 'half_open' && this.#successes >= this.#config.successThreshold) this.#to('closed');
  }

  recordFailure(): void {
    if (!this.#config.enabled) return;
    const now = this.#clock.nowMs();
    const s = this.state;
    if (now - this.#lastFailureMs > this.#config.windowMs) this.#failures = 0;
    this.#lastFailureMs = now;
    this.#successes = 0;
    this.#failures++;
    if (s === 'closed' && this.#failures >= this.#config.failureThreshold) this.#to('open');
    else if (s === 'half_open') this.#to('open');
  }

  /** Snapshot for /workers. */
  toJSON(): { state: BreakerState; failures: number; successes: number; probe_in_flight: boolean } {
    return {
      state: this.state,
      failures: this.#failures,
      successes: this.#successes,
      probe_in_flight: this.#probeInFlight,
    };
  }

  #to(next: BreakerState): void {
    const prev = this.#state;
    if (prev === next) return;
    this.#state = next;
    this.#changedAtMs = this.#clock.nowMs();
    this.#transitions++;
    if (next === 'closed') {
      this.#failures = 0;
      this.#successes = 0;
    } else if (next === 'open') {
      this.#successes = 0;
    } else {
      this.#failures = 0;
      this.#successes = 0;
    }
    this.onChange?.(prev, next);
  }
}
