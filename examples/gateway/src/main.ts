/**
 * Starts two tsinfer servers and a gateway on http://127.0.0.1:30080, sends
 * a burst of 64 requests through it, prints where they ran, and keeps
 * serving until Ctrl-C:
 *
 *   pnpm --filter @tsinfer/example-gateway build && node examples/gateway/dist/main.js
 *   curl localhost:30080/workers
 *   curl localhost:30080/v1/completions -H 'content-type: application/json' -d '{"prompt":"Hi","max_tokens":8}'
 *
 * The same with the command line, one process each:
 *
 *   tsinfer serve --model-path sim:tiny-cpu --dp-size 2 --port 30001 &
 *   tsinfer serve --model-path sim:tiny-cpu --dp-size 2 --port 30002 &
 *   tsinfer gateway --worker-urls http://127.0.0.1:30001 http://127.0.0.1:30002 \
 *     --port 30080 --policy power_of_two --dp-minimum-tokens-scheduler
 */
import { sendBurst, startCluster } from './cluster.js';

const cluster = await startCluster({ port: Number(process.env['PORT'] ?? 30080) });
console.log(`gateway on ${cluster.url} in front of ${cluster.servers.map((s) => s.url).join(', ')}`);
console.log('64 requests ran on:', await sendBurst(cluster, 64));
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    cluster.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
