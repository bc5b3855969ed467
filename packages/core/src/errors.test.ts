import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CollectiveTimeoutError, ERROR_CODES, InvalidConfigError, TsinferError } from './errors.js';

describe('TsinferError', () => {
  it('carries a stable code and the HTTP status of its code', () => {
    const err = new InvalidConfigError('--prefill-delayer-queue-min-ratio', 'must be in [0, 1], got 2');
    expect(err).toBeInstanceOf(TsinferError);
    expect(err).toBeInstanceOf(InvalidConfigError);
    expect(err.code).toBe('TSI_ERR_INVALID_CONFIG');
    expect(err.statusCode).toBe(400);
    expect(err.message).toContain('--prefill-delayer-queue-min-ratio');
    expect(err.flag).toBe('--prefill-delayer-queue-min-ratio');
  });

  it('is recognised after a structured clone drops its prototype only by code', () => {
    const err = new CollectiveTimeoutError('rank 2 missing');
    const cloned = structuredClone(err.toJSON());
    expect(cloned).toEqual({
      code: 'TSI_ERR_COLLECTIVE_TIMEOUT',
      message: 'rank 2 missing',
      statusCode: 503,
    });
  });

  it('recognises instances made by another copy of the class through the brand', () => {
    const foreign = Object.create(Error.prototype) as Record<symbol, unknown>;
    foreign[Symbol.for('tsinfer.error')] = true;
    expect(foreign instanceof TsinferError).toBe(true);
    expect(new Error('x') instanceof TsinferError).toBe(false);
  });

  it('has every code documented in docs/errors.md with its status', () => {
    const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
    for (const [code, { status }] of Object.entries(ERROR_CODES)) {
      const line = doc.split('\n').find((l) => l.includes(`\`${code}\``));
      expect(line, `${code} missing from docs/errors.md`).toBeDefined();
      expect(line).toContain(String(status));
    }
  });
});
