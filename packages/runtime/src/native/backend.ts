/**
 * `--runtime-backend native|js|auto`: which ModelRunner executes the model.
 * native: the addon (device-resident KV cache); fails with
 * TSI_ERR_NATIVE_UNAVAILABLE when it cannot be used. js: OnnxRunner through
 * onnxruntime-node. auto: native when the addon is built and the model is in
 * the genai layout, else js, with the reason (for the server to log).
 */
import { InvalidConfigError } from '@tsinfer/core';
import { OnnxRunner } from '../execution/onnx-runner.js';
import { loadNativeBackend, NativeUnavailableError } from './loader.js';
import { NativeRunner, type NativeRunnerOptions } from './runner.js';

export type RuntimeBackend = 'native' | 'js' | 'auto';
export const RUNTIME_BACKENDS: readonly RuntimeBackend[] = ['native', 'js', 'auto'];

export function parseRuntimeBackend(value: string): RuntimeBackend {
  if ((RUNTIME_BACKENDS as readonly string[]).includes(value)) return value as RuntimeBackend;
  throw new InvalidConfigError(
    '--runtime-backend',
    `must be native, js or auto, got ${JSON.stringify(value)}`,
  );
}

export interface CreatedRunner {
  readonly runner: OnnxRunner | NativeRunner;
  readonly backend: 'native' | 'js';
  /** Why this backend (for `auto`, why not native when it fell back). */
  readonly reason: string;
}

/** Creates the runner `backend` asks for (default auto). */
export async function createRunner(
  opts: NativeRunnerOptions & { backend?: RuntimeBackend },
): Promise<CreatedRunner> {
  const backend = opts.backend ?? 'auto';
  if (backend === 'js')
    return { runner: await OnnxRunner.create(opts), backend: 'js', reason: '--runtime-backend js' };
  if (backend === 'native') {
    return { runner: await NativeRunner.create(opts), backend: 'native', reason: '--runtime-backend native' };
  }
  const loaded = opts.binding ? null : loadNativeBackend();
  if (loaded !== null && !loaded.ok) {
    return {
      runner: await OnnxRunner.create(opts),
      backend: 'js',
      reason: `native backend unavailable: ${loaded.reason}`,
    };
  }
  try {
    return { runner: await NativeRunner.create(opts), backend: 'native', reason: 'native addon built' };
  } catch (err) {
    if (!(err instanceof NativeUnavailableError)) throw err;
    return {
      runner: await OnnxRunner.create(opts),
      backend: 'js',
      reason: `native backend unavailable: ${err.message}`,
    };
  }
}
