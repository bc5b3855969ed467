/**
 * Which tokenizer counts tokens: `--tokenizer <model dir>`, else the
 * server's `/model_info` path when it is a local directory with a
 * tokenizer.json, else the built-in tiny model's tokenizer (written once
 * into a cache directory; the same files `buildModel({ preset: 'tiny' })`
 * writes).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PRESETS, Tokenizer, writeTokenizerFiles } from '@tsinfer/runtime';

/**
 * What the bench needs of a tokenizer. The runtime's `Tokenizer` fits it;
 * so does {@link ByteTokenizer}, which counts like a `sim:` server.
 */
export interface BenchTokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly specialTokenIds: ReadonlySet<number>;
  /**
   * The modulus of `random-ids` (HF `vocab_size`, the vocabulary without
   * added tokens). Default: computed by `baseVocabSize`.
   */
  readonly randomIdsVocabSize?: number;
  encode(text: string, options?: { addSpecialTokens?: boolean }): ArrayLike<number>;
  decode(ids: ArrayLike<number>): string;
  applyChatTemplate(messages: unknown, options?: { addGenerationPrompt?: boolean }): string;
  idToToken(id: number): string | null;
}

/**
 * The byte tokenizer of tsinfer's `sim:` models (packages/server engine
 * tokenizer): text is its UTF-8 bytes, id = byte, no special tokens; ids
 * ≥ 256 decode to ` t<id>`; chat is plain ChatML. `random-ids` runs over the
 * 128 ASCII ids so that decoded text re-encodes to exactly the same ids.
 */
export class ByteTokenizer implements BenchTokenizer {
  readonly bosTokenId = null;
  readonly specialTokenIds: ReadonlySet<number> = new Set<number>();
  readonly randomIdsVocabSize = 128;
  readonly #enc = new TextEncoder();
  readonly #dec = new TextDecoder('utf-8');
  constructor(readonly vocabSize = 256) {}
  encode(text: string): number[] {
    return Array.from(this.#enc.encode(text));
  }
  decode(ids: ArrayLike<number>): string {
    let out = '';
    let bytes: number[] = [];
    const flush = (): void => {
      if (bytes.length > 0) out += this.#dec.decode(Uint8Array.from(bytes));
      bytes = [];
    };
    for (const id of Array.from(ids)) {
      if (id < 256) bytes.push(id);
      else {
        flush();
        out += ` t${id}`;
      }
    }
    flush();
    return out;
  }
  applyChatTemplate(messages: unknown): string {
    const list = messages as Array<{ role: string; content: string }>;
    return `${list.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('')}<|im_start|>assistant\n`;
  }
  idToToken(): string | null {
    return null;
  }
}

export interface ResolvedTokenizer {
  tokenizer: BenchTokenizer;
  /** Where it came from, for the run's log. */
  source: string;
  builtin: boolean;
}

export function defaultTokenizerCacheDir(): string {
  return join(tmpdir(), 'tsinfer-bench', 'tiny-tokenizer');
}

/** The built-in tiny tokenizer, trained into `cacheDir` on first use (~0.1 s). */
export async function builtinTokenizer(cacheDir = defaultTokenizerCacheDir()): Promise<Tokenizer> {
  if (!existsSync(join(cacheDir, 'tokenizer_config.json'))) {
    const parent = join(cacheDir, '..');
    await mkdir(parent, { recursive: true });
    const tmp = await mkdtemp(join(parent, '.tiny-tokenizer-'));
    const vocabSize = PRESETS.tiny.tokenizerVocabSize;
    await writeTokenizerFiles(tmp, vocabSize === undefined ? {} : { vocabSize });
    try {
      await rename(tmp, cacheDir);
    } catch {
      // Another process won the race; its files are identical.
      await rm(tmp, { recursive: true, force: true });
    }
  }
  return Tokenizer.fromDir(cacheDir);
}

export async function resolveTokenizer(opts: {
  tokenizerDir?: string | undefined;
  /** `tokenizer_path` / `model_path` from the server's `/model_info`, if any. */
  serverPath?: string | null | undefined;
  /** `vocab_size` from the server's `/model_info`, if any. */
  serverVocabSize?: number | null | undefined;
  cacheDir?: string;
}): Promise<ResolvedTokenizer> {
  if (opts.tokenizerDir) {
    return {
      tokenizer: await Tokenizer.fromDir(opts.tokenizerDir),
      source: opts.tokenizerDir,
      builtin: false,
    };
  }
  if (opts.serverPath?.startsWith('sim:')) {
    return {
      tokenizer: new ByteTokenizer(opts.serverVocabSize ?? 256),
      source: `the byte tokenizer of the server's simulated model ${opts.serverPath} (text = UTF-8 bytes)`,
      builtin: false,
    };
  }
  if (opts.serverPath && existsSync(join(opts.serverPath, 'tokenizer.json'))) {
    return {
      tokenizer: await Tokenizer.fromDir(opts.serverPath),
      source: `${opts.serverPath} (from the server's /model_info)`,
      builtin: false,
    };
  }
  return {
    tokenizer: await builtinTokenizer(opts.cacheDir),
    source:
      'the built-in tiny model tokenizer (pass --tokenizer <model dir> for exact token counts of another model)',
    builtin: true,
  };
}
