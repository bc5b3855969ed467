/**
 * Two `tsinfer serve` instances (the simulated tiny model, two DP ranks
 * each) and one gateway in front of them, all in this process: the same
 * start paths as `tsinfer serve --dp-size 2` and `tsinfer gateway
 * --worker-urls ... --policy power_of_two --dp-minimum-tokens-scheduler`.
 */
import { createGateway, type GatewayApp } from '@tsinfer/gateway';
import { type StartedServe, startServe } from '@tsinfer/server';

export interface Cluster {
  readonly servers: readonly StartedServe[];
  readonly gateway: GatewayApp;
  readonly url: string;
  close(): Promise<void>;
}

export async function startCluster(options: { port?: number; modelPath?: string } = {}): Promise<Cluster> {
  const servers = await Promise.all(
    [0, 1].map(() =>
      startServe(
        { 'model-path': options.modelPath ?? 'sim:tiny-cpu', port: '0', 'dp-size': '2', 'log-level': 'warn' },
        () => {},
      ),
    ),
  );
  const gateway = await createGateway({
    workerUrls: servers.map((s) => s.url),
    policy: 'power_of_two',
    dpMinimumTokensScheduler: true,
    load: { intervalMs: 250 },
    logLevel: 'warn',
  });
  const url = await gateway.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  await gateway.gateway.loadMonitor.pollOnce(); // know the ranks before the first request
  return {
    servers,
    gateway,
    url,
    async close() {
      await gateway.close();
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

/** Sends `n` concurrent completions through the gateway; returns how many ran on each server and DP rank. */
export async function sendBurst(cluster: Cluster, n: number): Promise<Record<string, number>> {
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const res = await fetch(`${cluster.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          prompt: `Request ${i}: ${'tell me more '.repeat(1 + (i % 9))}`,
          max_tokens: 64,
        }),
      });
      if (res.status !== 200) throw new Error(`request ${i}: ${res.status} ${await res.text()}`);
      await res.json();
    }),
  );
  const metrics = await (await fetch(`${cluster.url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of metrics.matchAll(
    /^tsinfer_gateway_requests_total\{[^}]*worker="([^"]+)",dp_rank="(\d*)"[^}]*\} (\d+)/gm,
  )) {
    const key = `${m[1]} rank ${m[2] === '' ? '-' : m[2]}`;
    out[key] = (out[key] ?? 0) + Number(m[3]);
  }
  return out;
}
