/**
 * Loads the native backend's addon (packages/runtime/native, built by
 * `node packages/runtime/native/build.mjs`). Never throws: when the addon is
 * not built or cannot be loaded, the result carries the reason, which the
 * server reports while the JS backend keeps working.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TsinferError } from '@tsinfer/core';

/** Options of `createEngine` (see native/src/addon.cc). */
export interface NativeEngineOptions {
  device: 'cpu' | 'cuda';
  deviceId?: number;
  intraOpThreads?: number;
  spinThreads?: boolean;
  /** Session config entries (e.g. the external-data folder). */
  sessionConfig?: Record<string, string>;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  maxSlots: number;
  maxSeq: number;
  dtype: 'fp32' | 'fp16';
  inputIds: string;
  attentionMask: string;
  /** Empty when the graph takes no position ids. */
  positionIds: string;
  inputIdsInt32: boolean;
  attentionMaskInt32: boolean;
  positionIdsInt32: boolean;
  pastKeys: readonly string[];
  pastValues: readonly string[];
  presentKeys: readonly string[];
  presentValues: readonly string[];
}

/** One run over the cache slots [lo, lo + rows). */
export interface NativeRunSpec {
  lo: number;
  rows: number;
  /** New tokens per row. */
  S: number;
  /** attention_mask width (GroupQueryAttention's total_sequence_length). */
  T: number;
  /** [rows, S] */
  ids: Int32Array;
  /** [rows, T] */
  mask: Int32Array;
  /** [rows, S], only when the graph takes position ids. */
  positions?: Int32Array;
  /** Flat rows of [rows * S] whose last-position outputs come back. */
  logitRows: Int32Array;
  argmax: boolean;
  topk: boolean;
  logits: boolean;
}

export interface NativeRunResult {
  argmax?: BigInt64Array;
  topkValues?: Float32Array;
  topkIndices?: BigInt64Array;
  topk?: number;
  logits?: Float32Array;
  sessionMs: number;
}

/** A session plus its device-resident KV cache. */
export interface NativeEngine {
  run(spec: NativeRunSpec): Promise<NativeRunResult>;
  /** Copies [kvHeads, count, headDim] of one layer's K (which 0) or V (which 1) of a slot to the host. */
  readKv(layer: number, which: 0 | 1, slot: number, start: number, count: number): Float32Array | Uint16Array;
  writeKv(
    layer: number,
    which: 0 | 1,
    slot: number,
    start: number,
    count: number,
    data: Float32Array | Uint16Array,
  ): void;
  /** Frees the cache and the session (waits for an in-flight run). */
  release(): void;
  /** Bytes of the whole cache (K and V, all layers). */
  readonly kvBytes: number;
}

export interface NativeBinding {
  readonly ortVersion: string;
  readonly ortApiVersion: number;
  createEngine(model: Uint8Array, options: NativeEngineOptions): Promise<NativeEngine>;
}

export type NativeLoadResult =
  | { readonly ok: true; readonly binding: NativeBinding; readonly path: string }
  | { readonly ok: false; readonly reason: string };

/** onnxruntime version the addon is compiled for (it links onnxruntime-node's library). */
export const NATIVE_ORT_VERSION = '1.29.0';

const BUILD_HINT = 'build it with `node packages/runtime/native/build.mjs`';

/** Folder of the native package (`packages/runtime/native`), from src/native or dist/native. */
export function nativeDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native');
}

/** Path of the built addon. */
export function nativeAddonPath(dir: string = nativeDir()): string {
  return join(dir, 'build', 'Release', 'tsinfer_native.node');
}

let cached: NativeLoadResult | null = null;

/**
 * The addon, or why it cannot be used. `addonPath` is for tests (an explicit
 * path is never cached).
 */
export function loadNativeBackend(addonPath?: string): NativeLoadResult {
  if (addonPath === undefined && cached !== null) return cached;
  const result = load(addonPath ?? nativeAddonPath());
  if (addonPath === undefined) cached = result;
  return result;
}

function load(path: string): NativeLoadResult {
  if (process.platform !== 'linux') {
    return { ok: false, reason: `the native backend is built for Linux only (this is ${process.platform})` };
  }
  if (!existsSync(path)) {
    const errFile = join(dirname(dirname(path)), 'build-error.txt');
    let why = '';
    try {
      if (existsSync(errFile)) why = ` (its last build failed: ${readFileSync(errFile, 'utf8').trim()})`;
    } catch {
      // ignore: the reason stays generic
    }
    return { ok: false, reason: `native addon not built: ${path} does not exist${why}; ${BUILD_HINT}` };
  }
  const require = createRequire(import.meta.url);
  try {
    // onnxruntime-node first: it loads libonnxruntime.so.1, which the addon then shares.
    require('onnxruntime-node');
  } catch (err) {
    return { ok: false, reason: `onnxruntime-node failed to load: ${(err as Error).message}` };
  }
  let mod: Record<string, unknown>;
  try {
    mod = require(path) as Record<string, unknown>;
  } catch (err) {
    return {
      ok: false,
      reason: `native addon failed to load from ${path}: ${(err as Error).message}; rebuild it (${BUILD_HINT})`,
    };
  }
  if (typeof mod.error === 'string') return { ok: false, reason: `native addon unusable: ${mod.error}` };
  if (mod.ortVersion !== NATIVE_ORT_VERSION) {
    return {
      ok: false,
      reason: `native addon runs on onnxruntime ${String(mod.ortVersion)}, expected ${NATIVE_ORT_VERSION}`,
    };
  }
  if (typeof mod.createEngine !== 'function')
    return { ok: false, reason: `native addon at ${path} exports no createEngine` };
  return { ok: true, binding: mod as unknown as NativeBinding, path };
}

/** The native backend cannot be used; the message says why and how to fix it. */
export class NativeUnavailableError extends TsinferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TSI_ERR_NATIVE_UNAVAILABLE', message, options);
    this.name = 'NativeUnavailableError';
  }
}

/** The binding, or a NativeUnavailableError with the loader's reason. */
export function requireNativeBackend(): NativeBinding {
  const r = loadNativeBackend();
  if (!r.ok) throw new NativeUnavailableError(`--runtime-backend native: ${r.reason}`);
  return r.binding;
}
