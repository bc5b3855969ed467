import { describe, expect, it } from 'vitest';
import { ForwardGate } from './forward-gate.js';

describe('ForwardGate', () => {
  it('runs one forward at a time, and close waits for the one in flight', async () => {
    const gate = new ForwardGate();
    let release!: (v: number) => void;
    const first = gate.run(() => new Promise<number>((r) => (release = r)));
    await expect(gate.run(async () => 2)).rejects.toMatchObject({ code: 'TSI_ERR_INVALID_BATCH' });
    let closed = false;
    const closing = gate.close().then((v) => {
      closed = v;
    });
    await Promise.resolve();
    expect(closed).toBe(false); // still waiting for the forward in flight
    release(1);
    await expect(first).resolves.toBe(1);
    await closing;
    expect(closed).toBe(true);
    expect(gate.closed).toBe(true);
    await expect(gate.run(async () => 3)).rejects.toThrow(/after close/);
    await expect(gate.close()).resolves.toBe(false);
  });

  it('a failed forward frees the gate for the next one', async () => {
    const gate = new ForwardGate();
    await expect(gate.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(gate.run(async () => 'ok')).resolves.toBe('ok');
  });
});
