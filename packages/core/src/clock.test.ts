import { describe, expect, it } from 'vitest';
import { ManualClock, systemClock } from './clock.js';
import { createRng } from './rng.js';

describe('ManualClock', () => {
  it('moves only when told to and never backwards', () => {
    const clock = new ManualClock(100);
    expect(clock.nowMs()).toBe(100);
    clock.advance(25);
    expect(clock.nowMs()).toBe(125);
    clock.set(200);
    expect(clock.nowMs()).toBe(200);
    expect(() => clock.set(199)).toThrow(RangeError);
    expect(() => clock.advance(-1)).toThrow(RangeError);
  });

  it('systemClock is on the epoch timeline shared by threads', () => {
    expect(Math.abs(systemClock.nowMs() - Date.now())).toBeLessThan(1000);
  });
});

describe('createRng', () => {
  it('is deterministic per seed and uniform-ish', () => {
    const a = createRng(42);
    const b = createRng(42);
    const c = createRng(43);
    const xs = Array.from({ length: 1000 }, () => a.next());
    expect(Array.from({ length: 1000 }, () => b.next())).toEqual(xs);
    expect(c.next()).not.toBe(xs[0]);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.45);
    expect(mean).toBeLessThan(0.55);
  });

  it('int covers its inclusive range', () => {
    const rng = createRng(7);
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) seen.add(rng.int(3, 6));
    expect([...seen].sort()).toEqual([3, 4, 5, 6]);
  });
});
