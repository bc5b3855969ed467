import { ManualClock } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from './circuit-breaker.js';
import { DEFAULTS } from './config.js';

const cfg = {
  ...DEFAULTS.circuitBreaker,
  failureThreshold: 3,
  successThreshold: 2,
  timeoutMs: 1000,
  windowMs: 500,
};

describe('CircuitBreaker', () => {
  it('opens after failureThreshold failures within the window and refuses while open', () => {
    const clock = new ManualClock();
    const b = new CircuitBreaker(cfg, clock);
    for (let i = 0; i < 2; i++) b.record(b.tryAcquire()!, false);
    expect(b.state).toBe('closed');
    b.record(b.tryAcquire()!, false);
    expect(b.state).toBe('open');
    expect(b.canExecute()).toBe(false);
    expect(b.tryAcquire()).toBeNull();
  });

  it('uses the window: a failure more than windowMs after the previous one restarts the count (F-18)', () => {
    const clock = new ManualClock();
    const b = new CircuitBreaker(cfg, clock);
    for (let i = 0; i < 10; i++) {
      b.recordFailure();
      b.recordFailure();
      clock.advance(501);
    }
    expect(b.state).toBe('closed');
    b.recordFailure();
    clock.advance(499);
    b.recordFailure();
    clock.advance(499);
    b.recordFailure();
    expect(b.state).toBe('open');
  });

  it('a success resets the failure count', () => {
    const b = new CircuitBreaker(cfg, new ManualClock());
    b.recordFailure();
    b.recordFailure();
    b.recordSuccess();
    b.recordFailure();
    b.recordFailure();
    expect(b.state).toBe('closed');
  });

  it('half-open admits exactly one probe at a time; successThreshold probe successes close it', () => {
    const clock = new ManualClock();
    const b = new CircuitBreaker(cfg, clock);
    for (let i = 0; i < 3; i++) b.recordFailure();
    clock.advance(999);
    expect(b.state).toBe('open');
    clock.advance(1);
    expect(b.state).toBe('half_open');
    const probe = b.tryAcquire();
    expect(probe).toEqual({ probe: true });
    // Everything else is refused while the probe is in flight (SGLang admits all, F-18).
    for (let i = 0; i < 5; i++) expect(b.tryAcquire()).toBeNull();
    expect(b.canExecute()).toBe(false);
    b.record(probe!, true);
    expect(b.state).toBe('half_open');
    const probe2 = b.tryAcquire();
    expect(probe2?.probe).toBe(true);
    b.record(probe2!, true);
    expect(b.state).toBe('closed');
    expect(b.tryAcquire()).toEqual({ probe: false });
    expect(b.transitions).toBe(3);
  });

  it('a failed probe reopens; the timeout starts again', () => {
    const clock = new ManualClock();
    const b = new CircuitBreaker(cfg, clock);
    for (let i = 0; i < 3; i++) b.recordFailure();
    clock.advance(1000);
    const probe = b.tryAcquire()!;
    b.record(probe, false);
    expect(b.state).toBe('open');
    clock.advance(999);
    expect(b.tryAcquire()).toBeNull();
    clock.advance(1);
    expect(b.tryAcquire()?.probe).toBe(true);
  });

  it('release gives the probe permit back without an outcome', () => {
    const clock = new ManualClock();
    const b = new CircuitBreaker(cfg, clock);
    for (let i = 0; i < 3; i++) b.recordFailure();
    clock.advance(1000);
    const p = b.tryAcquire()!;
    expect(b.tryAcquire()).toBeNull();
    b.release(p);
    expect(b.state).toBe('half_open');
    expect(b.tryAcquire()?.probe).toBe(true);
  });

  it('disabled: always admits, never opens', () => {
    const b = new CircuitBreaker({ ...cfg, enabled: false }, new ManualClock());
    for (let i = 0; i < 100; i++) b.record(b.tryAcquire()!, false);
    expect(b.state).toBe('closed');
    expect(b.canExecute()).toBe(true);
  });
});
