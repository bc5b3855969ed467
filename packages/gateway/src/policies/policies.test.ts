import { createRng, ManualClock } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { DEFAULTS } from '../config.js';
import { Worker } from '../worker.js';
import { CacheAwarePolicy, PowerOfTwoPolicy, RandomPolicy, RoundRobinPolicy } from './index.js';
import { PrefixTree } from './prefix-tree.js';

const clock = new ManualClock(1000);
const mk = (n: number): Worker[] =>
  Array.from({ length: n }, (_, i) => new Worker(`http://w${i}`, DEFAULTS.circuitBreaker, clock));
const counts = (picks: Worker[]): Record<string, number> => {
  const c: Record<string, number> = {};
  for (const w of picks) c[w.url] = (c[w.url] ?? 0) + 1;
  return c;
};

describe('round_robin', () => {
  it('cycles through the candidates in order', () => {
    const ws = mk(3);
    const p = new RoundRobinPolicy();
    expect(Array.from({ length: 7 }, () => p.select(ws)!.url)).toEqual([
      'http://w0',
      'http://w1',
      'http://w2',
      'http://w0',
      'http://w1',
      'http://w2',
      'http://w0',
    ]);
    expect(p.select([])).toBeNull();
  });
});

describe('random', () => {
  it('is uniform over the candidates (seeded)', () => {
    const ws = mk(4);
    const p = new RandomPolicy(createRng(3));
    const c = counts(Array.from({ length: 8000 }, () => p.select(ws)!));
    for (const w of ws) expect(Math.abs(c[w.url]! - 2000)).toBeLessThan(200);
  });
});

describe('power_of_two', () => {
  it('sends everything to the less loaded worker of each pair', () => {
    const ws = mk(2);
    ws[0]!.setPolled({ ranks: null, total: 500 }, clock.nowMs());
    ws[1]!.setPolled({ ranks: null, total: 100 }, clock.nowMs());
    const p = new PowerOfTwoPolicy(createRng(1), clock, 5000);
    const c = counts(Array.from({ length: 100 }, () => p.select(ws)!));
    expect(c).toEqual({ 'http://w1': 100 });
  });

  it("adds the gateway's in-flight estimate to the polled load", () => {
    const ws = mk(2);
    ws[0]!.setPolled({ ranks: null, total: 100 }, clock.nowMs());
    ws[1]!.setPolled({ ranks: null, total: 100 }, clock.nowMs());
    const t = ws[1]!.begin(null, 50);
    const p = new PowerOfTwoPolicy(createRng(1), clock, 5000);
    expect(p.select(ws)!.url).toBe('http://w0');
    t.end();
    expect(ws[1]!.inflightTokens).toBe(0);
  });

  it('a worker whose load is unknown counts as busy, never as zero (F-14)', () => {
    const ws = mk(2);
    ws[0]!.setPolled({ ranks: null, total: 10_000 }, clock.nowMs());
    ws[1]!.pollFailed('ECONNREFUSED');
    const p = new PowerOfTwoPolicy(createRng(5), clock, 5000);
    expect(counts(Array.from({ length: 50 }, () => p.select(ws)!))).toEqual({ 'http://w0': 50 });
  });

  it("a stale load ages out: the worker's old low value stops attracting traffic", () => {
    const c2 = new ManualClock(0);
    const ws = [
      new Worker('http://a', DEFAULTS.circuitBreaker, c2),
      new Worker('http://b', DEFAULTS.circuitBreaker, c2),
    ];
    ws[0]!.setPolled({ ranks: null, total: 0 }, 0);
    ws[1]!.setPolled({ ranks: null, total: 900 }, 0);
    const p = new PowerOfTwoPolicy(createRng(2), c2, 5000);
    expect(p.select(ws)!.url).toBe('http://a');
    c2.advance(4000);
    ws[1]!.setPolled({ ranks: null, total: 900 }, c2.nowMs()); // b keeps reporting, a's polls fail
    ws[0]!.pollFailed('timeout');
    c2.advance(1001);
    expect(ws[0]!.knownLoad(c2.nowMs(), 5000)).toBeNull();
    expect(counts(Array.from({ length: 20 }, () => p.select(ws)!))).toEqual({ 'http://b': 20 });
  });

  it('both unknown: fewer in-flight requests wins', () => {
    const ws = mk(2);
    ws[0]!.begin(null, 1);
    ws[0]!.begin(null, 1);
    const p = new PowerOfTwoPolicy(createRng(9), clock, 5000);
    expect(counts(Array.from({ length: 20 }, () => p.select(ws)!))).toEqual({ 'http://w1': 20 });
  });
});

describe('cache_aware', () => {
  const cfg = {
    ...DEFAULTS.cacheAware,
    balanceAbsThreshold: 4,
    balanceRelThreshold: 1.5,
    cacheThreshold: 0.5,
  };

  it('keeps a shared prefix on the worker that saw it', () => {
    const ws = mk(3);
    const p = new CacheAwarePolicy(cfg, clock);
    const a = p.select(ws, { text: 'You are a helpful assistant. Question one' })!;
    for (let i = 0; i < 10; i++) {
      expect(p.select(ws, { text: `You are a helpful assistant. Question ${i + 2}` })!.url).toBe(a.url);
    }
  });

  it('a text with no good match goes to the least-loaded worker', () => {
    const ws = mk(3);
    ws[0]!.begin(null, 1);
    ws[2]!.begin(null, 1);
    const p = new CacheAwarePolicy(cfg, clock);
    expect(p.select(ws, { text: 'completely new text' })!.url).toBe('http://w1');
  });

  it('imbalance beyond both thresholds overrides affinity', () => {
    const ws = mk(2);
    const p = new CacheAwarePolicy(cfg, clock);
    const first = p.select(ws, { text: 'shared prefix AAAA' })!;
    const other = ws.find((w) => w !== first)!;
    for (let i = 0; i < 5; i++) first.begin(null, 1); // 5 - 0 > 4 and 5 > 0 × 1.5
    expect(p.select(ws, { text: 'shared prefix AAAA again' })!.url).toBe(other.url);
  });

  it('within the thresholds affinity wins even when loads differ', () => {
    const ws = mk(2);
    const p = new CacheAwarePolicy(cfg, clock);
    const first = p.select(ws, { text: 'shared prefix BBBB' })!;
    for (let i = 0; i < 4; i++) first.begin(null, 1); // 4 - 0 is not > 4
    expect(p.select(ws, { text: 'shared prefix BBBB again' })!.url).toBe(first.url);
  });

  it('a removed worker leaves the tree', () => {
    const ws = mk(2);
    const p = new CacheAwarePolicy(cfg, clock);
    const first = p.select(ws, { text: 'hello world prefix' })!;
    p.removeWorker(first.url);
    expect(p.tree.size(first.url)).toBe(0);
    expect(p.tree.match('hello world prefix', null).tenant).not.toBe(first.url);
  });
});

describe('PrefixTree', () => {
  it('matches the longest prefix held by an allowed tenant', () => {
    const t = new PrefixTree();
    t.insert('abcdef', 'A', 1);
    t.insert('abcxyz', 'B', 2);
    expect(t.match('abcdeQ', null)).toEqual({ matchedChars: 5, tenant: 'A' });
    expect(t.match('abcxy', null)).toEqual({ matchedChars: 5, tenant: 'B' });
    expect(t.match('abcdef', new Set(['B']))).toEqual({ matchedChars: 3, tenant: 'B' });
    expect(t.match('zzz', null)).toEqual({ matchedChars: 0, tenant: null });
    expect(t.size('A')).toBe(6);
    expect(t.size('B')).toBe(6);
  });

  it('evicts least recently used leaves down to the size limit', () => {
    const t = new PrefixTree();
    t.insert('aaaa1111', 'A', 1);
    t.insert('bbbb2222', 'A', 2);
    t.insert('cccc3333', 'A', 3);
    expect(t.size('A')).toBe(24);
    t.evict(16);
    expect(t.size('A')).toBe(16);
    expect(t.match('aaaa1111', null).tenant).toBeNull();
    expect(t.match('cccc3333', null)).toEqual({ matchedChars: 8, tenant: 'A' });
  });
});
