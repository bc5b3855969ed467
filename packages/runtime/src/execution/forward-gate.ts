/**
 * A runner executes one forward at a time and none after close; close waits
 * for the forward in flight. Shared by OnnxRunner and NativeRunner.
 */
import { InvalidBatchError } from '../sim/errors.js';

export class ForwardGate {
  #closed = false;
  #inFlight = false;
  #running: Promise<void> = Promise.resolve();

  get closed(): boolean {
    return this.#closed;
  }

  /** Runs `forward`, rejecting a call after close or while another is in flight. */
  async run<T>(forward: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new InvalidBatchError('forward after close');
    if (this.#inFlight) throw new InvalidBatchError('forward called while another forward is in flight');
    this.#inFlight = true;
    const run = forward();
    this.#running = run.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await run;
    } finally {
      this.#inFlight = false;
    }
  }

  /** Marks the gate closed and waits for the forward in flight; false if it was closed already. */
  async close(): Promise<boolean> {
    if (this.#closed) return false;
    this.#closed = true;
    await this.#running;
    return true;
  }
}
