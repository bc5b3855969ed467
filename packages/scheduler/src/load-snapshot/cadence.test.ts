import { TsinferError } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { PublishCadence } from './cadence.js';

/** Runs a pass script ('P' prefill, 'D' decode, 'I' idle tick), 1 ms apart; returns the indices that published. */
function run(c: PublishCadence, script: string, stepMs = 1): number[] {
  const out: number[] = [];
  let now = 0;
  for (let i = 0; i < script.length; i++) {
    now += stepMs;
    const ch = script[i];
    const pub =
      ch === 'P' ? c.afterPass(true, now) : ch === 'D' ? c.afterPass(false, now) : c.onIdleTick(now);
    if (pub) out.push(i);
  }
  return out;
}

describe('PublishCadence', () => {
  it('publishes every prefill pass and every 15th decode pass by default (SGLang)', () => {
    const c = new PublishCadence({ heartbeatMs: Number.POSITIVE_INFINITY });
    expect(c.publishInterval).toBe(15);
    const script = `P${'D'.repeat(40)}`;
    // prefill at 0; decode passes 1..40: the 15th and 30th decode after it publish (indices 15, 30)
    expect(run(c, script)).toEqual([0, 15, 30]);
  });

  it('a forced publish (prefill) resets the decode counter', () => {
    const c = new PublishCadence({ publishInterval: 3, heartbeatMs: Number.POSITIVE_INFINITY });
    // the very first pass publishes (nothing published yet), then the counter runs
    expect(run(c, 'DDPDDDPD')).toEqual([0, 2, 5, 6]);
    expect(c.counter).toBe(1);
  });

  it('publishes once on going idle, then only when the heartbeat is due', () => {
    const c = new PublishCadence({ publishInterval: 15, heartbeatMs: 5 });
    // D at t=1 (first publish), I at t=2 (transition: yes), I at 3..6 (no),
    // I at t=7 (5 ms since 2: yes), D at t=8 (no), I at t=9 (idle again: yes)
    expect(run(c, 'DIIIIIIDI')).toEqual([0, 1, 6, 8]);
  });

  it('the heartbeat also forces a decode publish when decode passes are slow', () => {
    const c = new PublishCadence({ publishInterval: 15, heartbeatMs: 100 });
    expect(c.onStart(0)).toBe(true);
    expect(c.afterPass(false, 60)).toBe(false);
    expect(c.afterPass(false, 100)).toBe(true);
    expect(c.counter).toBe(0);
  });

  it('interval values below 1 act as 1 (SGLang max(1, v)); non-integers and bad heartbeats are config errors', () => {
    expect(new PublishCadence({ publishInterval: 0 }).publishInterval).toBe(1);
    expect(run(new PublishCadence({ publishInterval: -3, heartbeatMs: 1e9 }), 'DDD')).toEqual([0, 1, 2]);
    expect(() => new PublishCadence({ publishInterval: 1.5 })).toThrow(TsinferError);
    expect(() => new PublishCadence({ heartbeatMs: 0 })).toThrow(/--load-snapshot-heartbeat-ms/);
  });
});
