/**
 * `tsinfer serve`: builds the engine from the flags (docs/cli.md), mounts
 * the HTTP layer (docs/server.md), listens, and drains on SIGTERM/SIGINT:
 * stop accepting, let in-flight requests finish within --shutdown-timeout,
 * abort the rest with TSI_ERR_SHUTTING_DOWN, exit 0.
 *
 * With no --model-path it serves the built-in `tiny` model, built once
 * (seeded random weights, no download, well under a second) into the model
 * cache directory.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { InvalidConfigError } from '@tsinfer/core';
import { buildModel } from '@tsinfer/runtime';
import type { Command } from 'commander';
import { createEngine } from '../engine/index.js';
import { createServer, type TsinferServer } from '../http/server.js';
import { addServeOptions, collectFlagValues, parseServeFlags, type ServeConfig } from './flags.js';

/** Default directory of built-in models. */
export function defaultModelCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['TSINFER_CACHE_DIR']) return join(env['TSINFER_CACHE_DIR'], 'models');
  if (env['XDG_CACHE_HOME']) return join(env['XDG_CACHE_HOME'], 'tsinfer', 'models');
  return join(homedir(), '.cache', 'tsinfer', 'models');
}

/**
 * The built-in tiny model's directory, built on first use: `<cacheDir>/tiny-<seed>`.
 * Built into a temporary sibling and renamed, so a crash never leaves a
 * half-written model behind.
 */
export async function ensureTinyModel(
  cacheDir: string,
  seed: number,
  log: (line: string) => void = () => {},
): Promise<string> {
  const dir = join(cacheDir, `tiny-${seed}`);
  if (existsSync(join(dir, 'model.onnx')) && existsSync(join(dir, 'tokenizer.json'))) return dir;
  await mkdir(cacheDir, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  log(`building the built-in tiny model into ${dir} (first use, no download)`);
  try {
    await buildModel({ preset: 'tiny', outDir: tmp, seed, dtype: 'fp32', layout: 'genai' });
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return dir;
}

export interface StartedServe {
  readonly server: TsinferServer;
  readonly url: string;
  readonly config: ServeConfig;
  /** Drains and stops (what SIGTERM does). */
  stop(): Promise<void>;
}

/** Starts a server from flag values (keyed by flag name without dashes). */
export async function startServe(
  values: Readonly<Record<string, unknown>>,
  log: (line: string) => void = (l) => console.error(l),
): Promise<StartedServe> {
  const config = parseServeFlags(values);
  const engineOptions = { ...config.engine };
  if (engineOptions.modelPath === '') {
    engineOptions.modelPath = await ensureTinyModel(
      config.modelCacheDir ?? defaultModelCacheDir(),
      engineOptions.seed ?? 0,
      log,
    );
    // The built-in model is served as `tiny` (the name the README's curl example uses).
    engineOptions.servedModelName ??= 'tiny';
  }
  const engine = await createEngine(engineOptions);
  const s = config.server;
  let server: TsinferServer;
  try {
    server = await createServer({
      engine,
      apiKey: s.apiKey,
      servedModelName: engine.info.modelName,
      retryAfterSeconds: s.queueFullRetryAfter,
      maxN: s.maxN,
      logLevel: s.logLevel,
      logRequests: s.logRequests,
      bodyLimit: s.bodyLimit,
      serverArgs: { ...values, 'api-key': s.apiKey === null ? null : '<set>' },
    });
  } catch (err) {
    await engine.shutdown({ timeoutMs: 0 });
    throw err;
  }
  let url: string;
  try {
    url = await server.listen({ host: s.host, port: s.port });
  } catch (err) {
    // Stop the rank threads, or they would keep the process alive.
    await server.shutdown({ timeoutMs: 0 });
    throw new InvalidConfigError(
      '--port',
      `cannot listen on ${s.host}:${s.port}: ${(err as Error).message ?? String(err)}`,
    );
  }
  return {
    server,
    url,
    config,
    stop: () => server.shutdown({ timeoutMs: s.shutdownTimeoutMs }),
  };
}

function curlExample(url: string, model: string, apiKey: string | null): string {
  const auth = apiKey !== null ? ` -H 'Authorization: Bearer $TSINFER_API_KEY'` : '';
  const body = JSON.stringify({ model, prompt: 'Once upon a time', max_tokens: 16 });
  return `curl ${url}/v1/completions -H 'Content-Type: application/json'${auth} -d '${body}'`;
}

export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description(
      'Serve a model over HTTP: the OpenAI API (/v1/completions, /v1/chat/completions), SGLang /generate, /v1/loads, /metrics',
    );
  addServeOptions(cmd);
  cmd.action(async (opts: Record<string, unknown>) => {
    const values = collectFlagValues(opts);
    const started = await startServe(values);
    const { url } = started;
    const model = started.server.http.state.modelName;
    const info = started.server.http.state.engine.info;
    console.error(
      `tsinfer serving ${model} (${info.modelPath}, dp-size ${info.dpSize}, ${info.device}) on ${url}\n` +
        `runner: ${info.runtimeBackend} (${info.runtimeBackendReason})\n` +
        `try: ${curlExample(url, model, started.config.server.apiKey)}`,
    );
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        console.error(`${signal} again: exiting now`);
        process.exit(1);
      }
      stopping = true;
      console.error(
        `${signal}: draining (in-flight requests get up to ${started.config.server.shutdownTimeoutMs / 1000} s)`,
      );
      started.stop().then(
        () => {
          console.error('stopped');
          process.exit(0);
        },
        (err: unknown) => {
          console.error(`shutdown failed: ${String((err as Error)?.stack ?? err)}`);
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
