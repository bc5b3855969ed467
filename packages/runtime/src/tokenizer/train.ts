/**
 * Trains the small byte-level BPE tokenizer of tsinfer's own test models and
 * writes it in Hugging Face format (`tokenizer.json` + `tokenizer_config.json`).
 *
 * Training is deterministic: the corpus is the committed text files under
 * `corpus/` (read in name order), pre-tokenized with the Llama-3 split
 * regex, and merges are learned greedily by pair frequency with ties broken
 * by the smaller (left id, right id). Same corpus and vocab size ⇒
 * byte-identical files.
 *
 * Vocabulary layout (vocabSize = V):
 * - ids 0..255: the 256 single bytes, id = byte value;
 * - ids 256..V-6: merged tokens in merge order;
 * - ids V-5..V-1: the special tokens of {@link SPECIAL_TOKENS}, in that order.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidConfigError } from '@tsinfer/core';
import { BYTE_TO_UNICODE, SPLIT_REGEX_JS, SPLIT_REGEX_ONIGURUMA } from './byte-level.js';

export const BOS_TOKEN = '<|begin_of_text|>';
export const EOS_TOKEN = '<|end_of_text|>';
export const IM_START_TOKEN = '<|im_start|>';
export const IM_END_TOKEN = '<|im_end|>';
export const PAD_TOKEN = '<|pad|>';

/** Added special tokens, in id order at the end of the vocabulary. */
export const SPECIAL_TOKENS: readonly string[] = [
  BOS_TOKEN,
  EOS_TOKEN,
  IM_START_TOKEN,
  IM_END_TOKEN,
  PAD_TOKEN,
];

export const DEFAULT_VOCAB_SIZE = 2048;
const MIN_VOCAB_SIZE = 256 + SPECIAL_TOKENS.length;
const MAX_VOCAB_SIZE = 65_536;

/**
 * ChatML chat template. Starts with the BOS token (so a rendered prompt is
 * encoded with `addSpecialTokens: false`), one `<|im_start|>role\n...<|im_end|>\n`
 * block per message, and `<|im_start|>assistant\n` when
 * `add_generation_prompt` is set. Unknown roles and non-string contents raise.
 */
export const CHAT_TEMPLATE =
  '{{- bos_token }}' +
  '{%- for message in messages %}' +
  "{%- if message['role'] not in ['system', 'user', 'assistant', 'tool'] %}" +
  "{{- raise_exception('Unsupported message role: ' + message['role']) }}" +
  '{%- endif %}' +
  "{%- if message['content'] is not string %}" +
  "{{- raise_exception('Message content must be a string') }}" +
  '{%- endif %}' +
  "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}" +
  '{%- endfor %}' +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

export interface TokenizerFilesInfo {
  /** Total vocabulary size including the special tokens (= the model's embedding rows). */
  vocabSize: number;
  bosTokenId: number;
  /** `<|end_of_text|>`: end of a document. */
  eosTokenId: number;
  padTokenId: number;
  /** Every id that ends generation: `<|end_of_text|>` and `<|im_end|>` (for `eos_token_id` in config.json / generation_config.json). */
  eosTokenIds: number[];
  imStartTokenId: number;
  imEndTokenId: number;
}

export interface TrainOptions {
  /** Total vocabulary size including the 5 special tokens. Default 2048. */
  vocabSize?: number;
  /** Corpus directory (every `*.txt` file in it, in name order). Default: the committed corpus. */
  corpusDir?: string;
}

/** Where the committed corpus lives, from the source tree or from `dist/`. */
function defaultCorpusDir(): string {
  const candidates = [
    new URL('./corpus/', import.meta.url),
    new URL('../../src/tokenizer/corpus/', import.meta.url),
  ];
  for (const url of candidates) {
    const path = fileURLToPath(url);
    if (existsSync(path)) return path;
  }
  return fileURLToPath(candidates[0]!);
}

/** Reads the corpus texts in file-name order. */
export async function readCorpus(corpusDir = defaultCorpusDir()): Promise<string[]> {
  const names = (await readdir(corpusDir)).filter((n) => n.endsWith('.txt')).sort();
  if (names.length === 0) throw new InvalidConfigError('corpusDir', `no *.txt corpus files in ${corpusDir}`);
  return Promise.all(names.map((n) => readFile(join(corpusDir, n), 'utf8')));
}

export interface TrainedBpe {
  /** Byte-level token strings by id (without special tokens). */
  tokens: string[];
  /** Merges in rank order, as pairs of byte-level token strings. */
  merges: [string, string][];
  /** Tokens in the training texts under the learned segmentation (what encoding them must give). */
  tokenCount: number;
}

/**
 * Learns byte-level BPE merges on `texts` until the vocabulary (bytes +
 * merged tokens) has `baseVocabSize` entries.
 *
 * Classic BPE with a lazy max-heap of pair counts (like HF's BpeTrainer):
 * pick the most frequent adjacent pair (ties: smaller left id, then smaller
 * right id), replace it in every pre-token containing it, update the counts
 * of the pairs it touched. A merge whose string already exists (e.g. "ab"+"c"
 * after "a"+"bc") is recorded as a merge but reuses the existing id.
 */
export function trainBpe(texts: readonly string[], baseVocabSize: number): TrainedBpe {
  // Unique pre-tokens with frequencies.
  const wordCounts = new Map<string, number>();
  for (const text of texts) {
    for (const m of text.matchAll(SPLIT_REGEX_JS)) {
      const w = m[0];
      wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
    }
  }
  const encoder = new TextEncoder();
  const uniq = [...wordCounts.keys()].sort();
  const words: number[][] = uniq.map((w) => Array.from(encoder.encode(w)));
  const freq = Int32Array.from(uniq, (w) => wordCounts.get(w)!);

  const tokenBytes: number[][] = [];
  const tokens: string[] = [];
  const idOf = new Map<string, number>();
  for (let b = 0; b < 256; b++) {
    tokenBytes.push([b]);
    tokens.push(BYTE_TO_UNICODE[b]!);
    idOf.set(BYTE_TO_UNICODE[b]!, b);
  }
  const merges: [string, string][] = [];

  const K = 65_536; // pair key = left * K + right (ids < 65536)
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  const seenStamp = new Map<number, number>(); // key -> last word index appended (dedupe)
  const addPairs = (wi: number, sign: 1 | -1, newId: number, touched: Set<number> | null): void => {
    const w = words[wi]!;
    const f = freq[wi]! * sign;
    for (let i = 0; i + 1 < w.length; i++) {
      const key = w[i]! * K + w[i + 1]!;
      pairCount.set(key, (pairCount.get(key) ?? 0) + f);
      if (sign > 0) {
        if (seenStamp.get(key) !== wi) {
          seenStamp.set(key, wi);
          let list = pairWords.get(key);
          if (list === undefined) {
            list = [];
            pairWords.set(key, list);
          }
          list.push(wi);
        }
        if (touched !== null && (w[i] === newId || w[i + 1] === newId)) touched.add(key);
      }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addPairs(wi, 1, -1, null);

  // Max-heap of [count, key]: larger count first, then smaller key.
  const heapCount: number[] = [];
  const heapKey: number[] = [];
  const better = (i: number, j: number): boolean =>
    heapCount[i]! > heapCount[j]! || (heapCount[i] === heapCount[j] && heapKey[i]! < heapKey[j]!);
  const swap = (i: number, j: number): void => {
    const c = heapCount[i]!;
    heapCount[i] = heapCount[j]!;
    heapCount[j] = c;
    const k = heapKey[i]!;
    heapKey[i] = heapKey[j]!;
    heapKey[j] = k;
  };
  const push = (count: number, key: number): void => {
    heapCount.push(count);
    heapKey.push(key);
    let i = heapCount.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!better(i, p)) break;
      swap(i, p);
      i = p;
    }
  };
  const pop = (): void => {
    const last = heapCount.length - 1;
    swap(0, last);
    heapCount.pop();
    heapKey.pop();
    let i = 0;
    const n = heapCount.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && better(l, m)) m = l;
      if (r < n && better(r, m)) m = r;
      if (m === i) break;
      swap(i, m);
      i = m;
    }
  };
  for (const [key, count] of pairCount) if (count > 0) push(count, key);

  while (tokens.length < baseVocabSize) {
    // Pop the best pair whose stored count is current.
    let best = -1;
    while (heapCount.length > 0) {
      const count = heapCount[0]!;
      const key = heapKey[0]!;
      pop();
      const actual = pairCount.get(key) ?? 0;
      if (actual === count && actual > 0) {
        best = key;
        break;
      }
      if (actual > 0 && actual < count) push(actual, key);
    }
    if (best < 0) {
      throw new InvalidConfigError(
        'vocabSize',
        `the corpus supports at most ${tokens.length + SPECIAL_TOKENS.length} tokens, asked for ${baseVocabSize + SPECIAL_TOKENS.length}`,
      );
    }
    const left = Math.floor(best / K);
    const right = best % K;
    const str = tokens[left]! + tokens[right]!;
    let newId = idOf.get(str);
    if (newId === undefined) {
      newId = tokens.length;
      tokens.push(str);
      tokenBytes.push([...tokenBytes[left]!, ...tokenBytes[right]!]);
      idOf.set(str, newId);
    }
    merges.push([tokens[left]!, tokens[right]!]);

    const touched = new Set<number>();
    const list = pairWords.get(best) ?? [];
    pairWords.delete(best);
    for (const wi of list) {
      const w = words[wi]!;
      let found = false;
      for (let i = 0; i + 1 < w.length; i++) {
        if (w[i] === left && w[i + 1] === right) {
          found = true;
          break;
        }
      }
      if (!found) continue;
      addPairs(wi, -1, newId, null);
      const out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === left && w[i + 1] === right) {
          out.push(newId);
          i++;
        } else {
          out.push(w[i]!);
        }
      }
      words[wi] = out;
      addPairs(wi, 1, newId, touched);
    }
    pairCount.delete(best);
    seenStamp.delete(best);
    for (const key of [...touched].sort((a, b) => a - b)) {
      const c = pairCount.get(key) ?? 0;
      if (c > 0) push(c, key);
    }
  }
  let tokenCount = 0;
  for (let wi = 0; wi < words.length; wi++) tokenCount += words[wi]!.length * freq[wi]!;
  return { tokens, merges, tokenCount };
}

/** Builds the `tokenizer.json` object for a trained BPE. */
function buildTokenizerJson(bpe: TrainedBpe): Record<string, unknown> {
  const base = bpe.tokens.length;
  const vocab: Record<string, number> = {};
  for (let i = 0; i < base; i++) vocab[bpe.tokens[i]!] = i;
  const addedTokens = SPECIAL_TOKENS.map((content, i) => ({
    id: base + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const bosId = base + SPECIAL_TOKENS.indexOf(BOS_TOKEN);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: SPLIT_REGEX_ONIGURUMA }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: BOS_TOKEN, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: BOS_TOKEN, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: BOS_TOKEN, type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { [BOS_TOKEN]: { id: BOS_TOKEN, ids: [bosId], tokens: [BOS_TOKEN] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: bpe.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

function buildTokenizerConfig(base: number): Record<string, unknown> {
  const addedTokensDecoder: Record<string, unknown> = {};
  SPECIAL_TOKENS.forEach((content, i) => {
    addedTokensDecoder[String(base + i)] = {
      content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: true,
    };
  });
  return {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: addedTokensDecoder,
    bos_token: BOS_TOKEN,
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: EOS_TOKEN,
    model_input_names: ['input_ids', 'attention_mask'],
    model_max_length: 1_000_000,
    pad_token: PAD_TOKEN,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
}

/**
 * Trains the tokenizer on the committed corpus and writes `tokenizer.json`
 * and `tokenizer_config.json` into `outDir` (created if missing). Same
 * options ⇒ byte-identical files.
 */
export async function writeTokenizerFiles(
  outDir: string,
  options: TrainOptions = {},
): Promise<TokenizerFilesInfo> {
  const vocabSize = options.vocabSize ?? DEFAULT_VOCAB_SIZE;
  if (!Number.isInteger(vocabSize) || vocabSize < MIN_VOCAB_SIZE || vocabSize > MAX_VOCAB_SIZE) {
    throw new InvalidConfigError(
      'vocabSize',
      `must be an integer in [${MIN_VOCAB_SIZE}, ${MAX_VOCAB_SIZE}], got ${vocabSize}`,
    );
  }
  const texts = await readCorpus(options.corpusDir);
  const base = vocabSize - SPECIAL_TOKENS.length;
  const bpe = trainBpe(texts, base);
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'tokenizer.json'), `${JSON.stringify(buildTokenizerJson(bpe), null, 2)}\n`);
  await writeFile(
    join(outDir, 'tokenizer_config.json'),
    `${JSON.stringify(buildTokenizerConfig(base), null, 2)}\n`,
  );
  const id = (t: string): number => base + SPECIAL_TOKENS.indexOf(t);
  return {
    vocabSize,
    bosTokenId: id(BOS_TOKEN),
    eosTokenId: id(EOS_TOKEN),
    padTokenId: id(PAD_TOKEN),
    eosTokenIds: [id(EOS_TOKEN), id(IM_END_TOKEN)],
    imStartTokenId: id(IM_START_TOKEN),
    imEndTokenId: id(IM_END_TOKEN),
  };
}
