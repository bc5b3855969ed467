/**
 * Retry policy (spec §5.7): which outcomes are retried and how long to wait.
 * Unlike SGLang (F-18), `maxRetries` counts *retries*, so a request makes at
 * most `maxRetries + 1` attempts. Retries only ever happen before the first
 * byte of a response reached the client; the proxy enforces that.
 */
import type { Rng } from '@tsinfer/core';
import type { RetryConfig } from './config.js';

/** HTTP statuses a worker answers that are worth another attempt. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

export function isRetryableStatus(status: number): boolean {
  return RETRYABLE_STATUSES.has(status);
}

/**
 * Delay before retry number `retry` (0 for the first retry):
 * min(initial × multiplier^retry, max), then × (1 + uniform[-jitter, +jitter]),
 * rounded to whole ms and floored at 0.
 */
export function backoffMs(config: RetryConfig, retry: number, rng: Rng): number {
  const base = Math.min(config.initialBackoffMs * config.multiplier ** retry, config.maxBackoffMs);
  const j = Math.min(Math.max(config.jitter, 0), 1);
  const jittered = base + base * (rng.next() * 2 - 1) * j;
  return Math.max(0, Math.round(jittered));
}

/** Waits `ms`; rejects early with the signal's reason when it aborts. Injected in tests. */
export type SleepFn = (ms: number, signal?: AbortSignal) => Promise<void>;

export const realSleep: SleepFn = (ms, signal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
