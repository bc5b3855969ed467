/**
 * Test helpers for the engine tests (not exported from the package): sim
 * profiles written to a temporary folder, and a stream collector.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_SAMPLING } from '@tsinfer/runtime';
import type { GenerateEvent, GenerateRequest } from './types.js';

export interface ProfileSpec {
  vocab?: number;
  context?: number;
  kv?: number;
  eos?: number[];
  eosProbability?: number;
  /** Modelled ms per pass (fixed) and per decode row. */
  fixedMs?: number;
  perDecodeRequestMs?: number;
}

/** A temp folder with sim profiles; `path(name)` is a `sim:` model path. */
export class ProfileDir {
  root = '';
  async open(): Promise<void> {
    this.root = await mkdtemp(join(tmpdir(), 'tsinfer-engine-'));
  }
  async write(name: string, spec: ProfileSpec = {}): Promise<string> {
    const file = join(this.root, `${name}.json`);
    const profile = {
      format: 'tsinfer-sim-profile/1',
      source: 'engine tests: made-up numbers',
      model: {
        name: `sim-${name}`,
        vocabSize: spec.vocab ?? 2048,
        contextLength: spec.context ?? 4096,
        eosTokenIds: spec.eos ?? [2044],
        kvCapacityTokens: spec.kv ?? 100_000,
      },
      cost: {
        fixedMs: spec.fixedMs ?? 0.2,
        perDecodeRequestMs: spec.perDecodeRequestMs ?? 0.005,
        perPrefillTokenMs: 0.0005,
      },
      generation: { eosProbability: spec.eosProbability ?? 0 },
    };
    await writeFile(file, JSON.stringify(profile));
    return `sim:${file}`;
  }
  async close(): Promise<void> {
    if (this.root) await rm(this.root, { recursive: true, force: true });
  }
}

export function request(
  prompt: GenerateRequest['prompt'],
  maxNewTokens: number,
  extra: Partial<GenerateRequest> = {},
): GenerateRequest {
  return {
    prompt,
    sampling: DEFAULT_SAMPLING,
    maxNewTokens,
    stop: [],
    stopTokenIds: [],
    ignoreEos: false,
    ...extra,
  };
}

export interface Collected {
  tokens: number[];
  /** Streamed text deltas, then the finish text. */
  chunks: string[];
  text: string;
  tokenEvents: number;
  finish: Extract<GenerateEvent, { type: 'finish' }>;
}

/** Reads a stream to its end; `onTokens(eventIndex)` runs after each tokens event. */
export async function collect(
  stream: AsyncIterable<GenerateEvent>,
  onTokens?: (eventIndex: number) => void,
): Promise<Collected> {
  const tokens: number[] = [];
  const chunks: string[] = [];
  let tokenEvents = 0;
  for await (const ev of stream) {
    if (ev.type === 'tokens') {
      tokens.push(...ev.tokenIds);
      if (ev.text.length > 0) chunks.push(ev.text);
      tokenEvents++;
      onTokens?.(tokenEvents);
    } else {
      if (ev.text.length > 0) chunks.push(ev.text);
      return { tokens, chunks, text: chunks.join(''), tokenEvents, finish: ev };
    }
  }
  throw new Error('stream ended without a finish event');
}

/** A deterministic prompt of `n` token ids in [1, vocab). */
export function promptIds(n: number, seed: number, vocab = 2000): number[] {
  const out: number[] = [];
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    out.push(1 + (x % (vocab - 1)));
  }
  return out;
}
