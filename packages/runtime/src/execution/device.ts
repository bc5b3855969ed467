import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { TsinferError } from '@tsinfer/core';

export type Device = 'cpu' | 'cuda';

/** The requested device cannot be used; the message says how to fix it. */
export class DeviceUnavailableError extends TsinferError {
  readonly device: Device;
  constructor(device: Device, message: string, options?: { cause?: unknown }) {
    super('TSI_ERR_DEVICE_UNAVAILABLE', message, options);
    this.name = 'DeviceUnavailableError';
    this.device = device;
  }
}

/** The two provider libraries the CUDA execution provider needs beside the binding. */
export const CUDA_PROVIDER_LIBS = [
  'libonnxruntime_providers_cuda.so',
  'libonnxruntime_providers_shared.so',
] as const;

/** Folder of onnxruntime-node's native binding (`.../onnxruntime-node/bin/napi-v6/<platform>/<arch>`). */
export function ortBindingDir(): string {
  const require = createRequire(import.meta.url);
  const pkg = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

/** Throws DeviceUnavailableError (with the fix) when the CUDA provider libraries are not installed. */
export function checkCudaProvider(bindingDir: string = ortBindingDir()): void {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new DeviceUnavailableError(
      'cuda',
      `--device cuda: the CUDA provider is only installed for linux-x64 (this is ${process.platform}-${process.arch})`,
    );
  }
  const missing = CUDA_PROVIDER_LIBS.filter((f) => !existsSync(join(bindingDir, f)));
  if (missing.length > 0) {
    throw new DeviceUnavailableError(
      'cuda',
      `--device cuda: ${missing.join(' and ')} not found in ${bindingDir}. onnxruntime-node ships no CUDA provider; ` +
        'install it with `pnpm gpu:install` (copies the onnxruntime 1.29.0 CUDA provider from ' +
        'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 beside the binding), and put the CUDA 13 and cuDNN 9 ' +
        'libraries on LD_LIBRARY_PATH.',
    );
  }
}
