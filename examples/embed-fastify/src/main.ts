/**
 * Starts the example app on http://127.0.0.1:3000 with the simulated tiny
 * model (`--model-path sim:tiny-cpu`; pass a model directory as the first
 * argument to serve a real one):
 *
 *   pnpm --filter @tsinfer/example-embed-fastify build && node examples/embed-fastify/dist/main.js
 *   curl localhost:3000/todos
 *   curl localhost:3000/llm/v1/completions -H 'content-type: application/json' -d '{"prompt":"Hi","max_tokens":8}'
 */
import { createEngine } from '@tsinfer/server';
import { buildApp } from './app.js';

const engine = await createEngine({ modelPath: process.argv[2] ?? 'sim:tiny-cpu' });
const { app } = await buildApp({ engine, logger: true });
await app.listen({ host: '127.0.0.1', port: Number(process.env['PORT'] ?? 3000) });
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
