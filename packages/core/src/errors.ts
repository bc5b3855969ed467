/**
 * Every error tsinfer raises on purpose is a `TsinferError` with a stable
 * string `code` (`TSI_ERR_*`) and the HTTP status a server should answer
 * with. Codes are API: never renamed, never reused. The full list with
 * meanings is `ERROR_CODES` below and docs/errors.md (a test keeps the two
 * in step).
 */

/** Every code, its HTTP status and what it means. */
export const ERROR_CODES = {
  TSI_ERR_INVALID_CONFIG: {
    status: 400,
    meaning: 'A flag or option has an invalid value; the message names the flag and the accepted range.',
  },
  TSI_ERR_COLLECTIVE_TIMEOUT: {
    status: 503,
    meaning:
      'A cross-rank collective (all-gather) did not complete in time: some rank stopped or is stuck. Every waiting rank gets this error instead of hanging.',
  },
  TSI_ERR_COLLECTIVE_CLOSED: {
    status: 503,
    meaning: 'A collective was used after it was closed or after an earlier round failed on some rank.',
  },
} as const satisfies Record<string, { status: number; meaning: string }>;

export type TsinferErrorCode = keyof typeof ERROR_CODES;

const BRAND = Symbol.for('tsinfer.error');

/** Base class of every tsinfer error. `instanceof` works across copies of the package. */
export class TsinferError extends Error {
  readonly code: TsinferErrorCode;
  readonly statusCode: number;

  constructor(code: TsinferErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TsinferError';
    this.code = code;
    this.statusCode = ERROR_CODES[code].status;
    Object.defineProperty(this, BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== TsinferError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }

  toJSON(): { code: TsinferErrorCode; message: string; statusCode: number } {
    return { code: this.code, message: this.message, statusCode: this.statusCode };
  }
}

/** A flag or option value is out of range. `flag` is the CLI spelling, e.g. `--prefill-delayer-queue-min-ratio`. */
export class InvalidConfigError extends TsinferError {
  readonly flag: string;
  constructor(flag: string, message: string) {
    super('TSI_ERR_INVALID_CONFIG', `${flag}: ${message}`);
    this.name = 'InvalidConfigError';
    this.flag = flag;
  }
}

/** A collective round did not complete within its timeout. */
export class CollectiveTimeoutError extends TsinferError {
  constructor(message: string) {
    super('TSI_ERR_COLLECTIVE_TIMEOUT', message);
    this.name = 'CollectiveTimeoutError';
  }
}

/** A collective was used after close or after a failed round. */
export class CollectiveClosedError extends TsinferError {
  constructor(message: string) {
    super('TSI_ERR_COLLECTIVE_CLOSED', message);
    this.name = 'CollectiveClosedError';
  }
}
