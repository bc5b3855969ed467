/**
 * When a rank publishes its LoadSnapshot (SGLang's `publish_load_snapshot`,
 * spec §2.2), plus a heartbeat:
 *  - after every prefill (extend) pass: always (forced);
 *  - after a decode pass: every `--load-snapshot-publish-interval` passes
 *    (default 15; values < 1 act as 1, as in SGLang);
 *  - on going idle: once (forced), so readers see the drained state;
 *  - at start: once (forced); a rank with no snapshot is not dispatchable;
 *  - heartbeat (tsinfer): whenever the last publish is at least
 *    `heartbeatMs` old, on any pass or idle tick. The DP controller takes a
 *    rank whose snapshot is older than `--load-snapshot-stale-ms` out of
 *    dispatch, so an idle rank (or one whose decode passes are slow) must
 *    keep its timestamp fresh. The rank loop calls `onIdleTick` from a timer
 *    while idle.
 *
 * Every method returns true when the caller should build and publish a
 * snapshot now; the counter is then reset, as SGLang does for every publish.
 * Before anything has been published, any call returns true.
 */
import { InvalidConfigError } from '@tsinfer/core';

export const DEFAULT_LOAD_SNAPSHOT_PUBLISH_INTERVAL = 15;
export const DEFAULT_LOAD_SNAPSHOT_HEARTBEAT_MS = 1000;

export interface PublishCadenceOptions {
  /** `--load-snapshot-publish-interval` (decode passes between publishes); max(1, v) applies. Default 15. */
  publishInterval?: number;
  /** `--load-snapshot-heartbeat-ms`: longest time between publishes; Infinity disables. Default 1000. */
  heartbeatMs?: number;
}

export class PublishCadence {
  readonly publishInterval: number;
  readonly heartbeatMs: number;
  #counter = 0;
  #lastPublishMs = Number.NEGATIVE_INFINITY;
  #idle = false;

  constructor(options: PublishCadenceOptions = {}) {
    const interval = options.publishInterval ?? DEFAULT_LOAD_SNAPSHOT_PUBLISH_INTERVAL;
    if (!Number.isInteger(interval)) {
      throw new InvalidConfigError('--load-snapshot-publish-interval', `must be an integer, got ${interval}`);
    }
    const hb = options.heartbeatMs ?? DEFAULT_LOAD_SNAPSHOT_HEARTBEAT_MS;
    if (!(hb > 0)) throw new InvalidConfigError('--load-snapshot-heartbeat-ms', `must be > 0, got ${hb}`);
    this.publishInterval = Math.max(1, interval);
    this.heartbeatMs = hb;
  }

  #publish(nowMs: number): true {
    this.#counter = 0;
    this.#lastPublishMs = nowMs;
    return true;
  }

  /** The rank is up: publish its first snapshot. */
  onStart(nowMs: number): boolean {
    this.#idle = false;
    return this.#publish(nowMs);
  }

  /** After a pass's results are processed. `prefill` = the pass was an extend/prefill (or mixed) pass. */
  afterPass(prefill: boolean, nowMs: number): boolean {
    this.#idle = false;
    if (prefill) return this.#publish(nowMs);
    this.#counter++;
    if (this.#counter >= this.publishInterval || nowMs - this.#lastPublishMs >= this.heartbeatMs) {
      return this.#publish(nowMs);
    }
    return false;
  }

  /**
   * The scheduler found nothing to run. True on the transition to idle
   * (forced, once), then only when the heartbeat is due.
   */
  onIdleTick(nowMs: number): boolean {
    if (!this.#idle) {
      this.#idle = true;
      return this.#publish(nowMs);
    }
    if (nowMs - this.#lastPublishMs >= this.heartbeatMs) return this.#publish(nowMs);
    return false;
  }

  /** Decode passes since the last publish. */
  get counter(): number {
    return this.#counter;
  }
}
