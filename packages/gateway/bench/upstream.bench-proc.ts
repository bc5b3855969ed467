/**
 * Benchmark upstreams: N fake workers (test/fake-worker.ts) in one child
 * process, each with 2 DP ranks and tsinfer-named metrics. Answers at once
 * (a JSON completion, or an SSE stream of `streamChunks` events). Prints
 * one line of JSON with the URLs, then serves until killed.
 */
import { FakeWorker } from '../test/fake-worker.js';

const n = Number(process.argv[2] ?? '2');
const workers = await Promise.all(
  Array.from({ length: n }, () => FakeWorker.start({ dpSize: 2, streamChunks: 16 })),
);
// Keep no request log: the benchmark sends hundreds of thousands of requests.
for (const w of workers) {
  const reqs = w.requests;
  reqs.push = () => 0;
}
process.stdout.write(`${JSON.stringify({ urls: workers.map((w) => w.url) })}\n`);
