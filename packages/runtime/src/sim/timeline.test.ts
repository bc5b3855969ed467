import { createRng, ManualClock } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { SimRunner } from './runner.js';
import { sampling, testProfile } from './test-util.js';
import { VirtualTimeline } from './timeline.js';

describe('VirtualTimeline', () => {
  it('resolves sleeps in deadline order, ties in creation order, with the clock at each deadline', async () => {
    const tl = new VirtualTimeline(new ManualClock(100));
    const log: string[] = [];
    const track = (name: string, ms: number) => tl.sleep(ms).then(() => log.push(`${name}@${tl.nowMs()}`));
    void track('c', 30);
    void track('a', 10);
    void track('b1', 20);
    void track('b2', 20);
    void track('z', 0);
    expect(tl.pending).toBe(5);
    expect(tl.nextDeadline()).toBe(100);
    expect(log).toEqual([]);
    await tl.runUntilIdle();
    expect(log).toEqual(['z@100', 'a@110', 'b1@120', 'b2@120', 'c@130']);
    expect(tl.pending).toBe(0);
    expect(tl.nextDeadline()).toBeNull();
  });

  it('runs sleeps made by woken code, interleaving concurrent loops by virtual time', async () => {
    const tl = new VirtualTimeline();
    const log: string[] = [];
    const loop = async (name: string, period: number, n: number) => {
      for (let i = 0; i < n; i++) {
        await tl.sleep(period);
        log.push(`${name}${tl.nowMs()}`);
      }
    };
    const p = Promise.all([loop('a', 3, 4), loop('b', 5, 2)]);
    await tl.runUntilIdle();
    await p;
    expect(log).toEqual(['a3', 'b5', 'a6', 'a9', 'b10', 'a12']);
  });

  it('advanceTo stops at the target and leaves later sleeps pending', async () => {
    const tl = new VirtualTimeline();
    let fired = 0;
    void tl.sleep(5).then(() => fired++);
    void tl.sleep(15).then(() => fired++);
    await tl.advanceTo(10);
    expect(fired).toBe(1);
    expect(tl.nowMs()).toBe(10);
    expect(tl.pending).toBe(1);
    await tl.advanceBy(5);
    expect(fired).toBe(2);
    expect(tl.nowMs()).toBe(15);
    await expect(tl.advanceTo(3)).rejects.toThrow(RangeError);
  });

  it('cancels a sleep through an AbortSignal', async () => {
    const tl = new VirtualTimeline();
    const ac = new AbortController();
    const cancelled = tl.sleep(10, ac.signal);
    let other = false;
    void tl.sleep(20).then(() => {
      other = true;
    });
    ac.abort(new Error('stop'));
    await expect(cancelled).rejects.toThrow('stop');
    expect(tl.pending).toBe(1);
    expect(tl.nextDeadline()).toBe(20);
    await tl.runUntilIdle();
    expect(other).toBe(true);
    await expect(tl.sleep(1, ac.signal)).rejects.toThrow('stop');
  });

  it('rejects bad durations and a runaway loop', async () => {
    const tl = new VirtualTimeline();
    await expect(tl.sleep(-1)).rejects.toThrow(RangeError);
    await expect(tl.sleep(Number.NaN)).rejects.toThrow(RangeError);
    let stop = false;
    const spin = (async () => {
      while (!stop) await tl.sleep(1);
    })();
    await expect(tl.runUntilIdle({ maxEvents: 50 })).rejects.toThrow(/more than 50 events/);
    stop = true;
    await tl.runUntilIdle();
    await spin;
  });
});

describe('VirtualTimeline + SimRunner', () => {
  /** Two concurrent actors: a runner loop admitting requests that a client "sends" at seeded random times. */
  async function simulate(seed: number): Promise<string[]> {
    const tl = new VirtualTimeline();
    const runner = new SimRunner({ profile: testProfile(), wait: tl.sleep, seed });
    const rng = createRng(seed);
    const queue: { id: number; len: number }[] = [];
    const log: string[] = [];
    const client = (async () => {
      for (let id = 0; id < 20; id++) {
        await tl.sleep(rng.int(0, 30));
        queue.push({ id, len: rng.int(4, 200) });
      }
    })();
    const loop = (async () => {
      const running = new Map<number, number>(); // id -> tokens left
      let idle = 0;
      while (idle < 5) {
        const admit = queue.splice(0);
        const finished = [...running].filter(([, left]) => left === 0).map(([id]) => id);
        for (const id of finished) running.delete(id);
        const decode = [...running.keys()];
        if (admit.length === 0 && decode.length === 0) {
          idle++;
          await tl.sleep(10);
          continue;
        }
        idle = 0;
        const out = await runner.forward({
          free: finished,
          add: admit.map((r) => ({ id: r.id, sampling: sampling({ temperature: 1 }) })),
          prefill: admit.map((r) => ({
            id: r.id,
            start: 0,
            tokens: new Int32Array(r.len).fill(r.id),
            sample: true,
          })),
          decode,
        });
        for (const r of admit) running.set(r.id, 8);
        out.ids.forEach((id, i) => {
          running.set(id, running.get(id)! - 1);
          log.push(`${tl.nowMs().toFixed(6)} ${id}:${out.tokens[i]}`);
        });
      }
    })();
    await tl.runUntilIdle();
    await Promise.all([client, loop]);
    return log;
  }

  it('is deterministic: the same seed gives the same tokens at the same virtual times', async () => {
    const a = await simulate(1);
    expect(a.length).toBe(20 * 8);
    expect(await simulate(1)).toEqual(a);
    expect(await simulate(2)).not.toEqual(a);
  });
});
