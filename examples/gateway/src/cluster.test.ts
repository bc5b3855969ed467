import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, sendBurst, startCluster } from './cluster.js';

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);
afterAll(async () => {
  await cluster?.close();
});

describe('example: two servers behind a gateway', () => {
  it('serves a burst through the gateway on both servers and all four DP ranks', async () => {
    const where = await sendBurst(cluster, 64);
    const total = Object.values(where).reduce((a, b) => a + b, 0);
    expect(total).toBe(64);
    const keys = Object.keys(where);
    for (const s of cluster.servers) {
      for (const r of [0, 1]) expect(keys).toContain(`${s.url} rank ${r}`);
    }
  }, 60_000);
});
