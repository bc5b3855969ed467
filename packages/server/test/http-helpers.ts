/**
 * Shared fixtures of the HTTP tests: a real engine (simulated runner or the
 * tiny ONNX model) behind a fastify app, torn down after each file.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel } from '@tsinfer/runtime';
import { createEngine, type EngineOptions } from '../src/engine/index.js';
import type { Engine } from '../src/engine/types.js';
import { createServer, type ServerOptions, type TsinferServer } from '../src/http/server.js';

export interface Harness {
  engine: Engine;
  server: TsinferServer;
  close(): Promise<void>;
}

export async function startHarness(
  engineOptions: Partial<EngineOptions> = {},
  serverOptions: Partial<ServerOptions> = {},
): Promise<Harness> {
  const engine = await createEngine({ modelPath: 'sim:tiny-cpu', ...engineOptions });
  const server = await createServer({ engine, logLevel: 'silent', ...serverOptions });
  await server.app.ready();
  return {
    engine,
    server,
    close: () => server.shutdown({ timeoutMs: 0 }),
  };
}

/** Parses an SSE body into its `data:` payloads (JSON, or the literal `[DONE]`). */
export function parseSse(body: string): unknown[] {
  const out: unknown[] = [];
  for (const block of body.split('\n\n')) {
    const line = block.trim();
    if (line === '') continue;
    if (!line.startsWith('data: ')) throw new Error(`not an SSE data line: ${line}`);
    const data = line.slice(6);
    out.push(data === '[DONE]' ? '[DONE]' : JSON.parse(data));
  }
  return out;
}

let tinyDir: Promise<string> | null = null;
/** The tiny ONNX model, built once per test file into a temp dir (< 1 s). */
export function tinyModelDir(): Promise<string> {
  tinyDir ??= (async () => {
    const outDir = join(mkdtempSync(join(tmpdir(), 'tsinfer-http-')), 'tiny');
    await buildModel({ preset: 'tiny', outDir, seed: 0, dtype: 'fp32', layout: 'genai' });
    return outDir;
  })();
  return tinyDir;
}
