import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { TsinferError } from '@tsinfer/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BYTE_TO_UNICODE, byteLevelTokenToBytes, UNICODE_TO_BYTE } from './byte-level.js';
import { readCorpus, SPECIAL_TOKENS, trainBpe, writeTokenizerFiles } from './train.js';

const ROUND_TRIP = [
  'Hello, world!',
  'The quick brown fox jumps over the lazy dog.',
  "I'M here, you're there, THEY'LL see. don't",
  '  leading spaces, trailing spaces   ',
  'tabs\tand\nnewlines\r\n\r\nand   runs     of\u00a0spaces\n\n\n',
  'café naïve résumé Zürich Ångström Dvořák',
  '你好，世界！今天天气很好。日本語のテキスト。한국어 텍스트.',
  'Привет, мир! Ελληνικά. עברית. العربية.',
  'emoji 😀🎉🚀 ZWJ 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 skin 👩🏽‍💻 keycap 1️⃣',
  'never seen: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 🦖 ꙮ',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: literal source text to tokenize
  'code: const x = a?.b ?? 0; if (x >= 10) { return `${x}`; }',
  'numbers 1234567890 3.14159 -42 1e-5 0xFF',
  '\u0000\u0001\u007f control \ufeff BOM \ud7ff',
  '',
  ' ',
  '\n',
];

describe('byte-level table', () => {
  it('is a bijection between the 256 bytes and 256 printable characters', () => {
    const chars = new Set(BYTE_TO_UNICODE);
    expect(chars.size).toBe(256);
    for (let b = 0; b < 256; b++) expect(UNICODE_TO_BYTE[BYTE_TO_UNICODE[b]!.charCodeAt(0)]).toBe(b);
    expect(BYTE_TO_UNICODE[0x20]).toBe('Ġ');
    expect(BYTE_TO_UNICODE[0x0a]).toBe('Ċ');
    expect(BYTE_TO_UNICODE[0x41]).toBe('A');
    expect(byteLevelTokenToBytes('ĠHi')).toEqual(new Uint8Array([0x20, 0x48, 0x69]));
    expect(byteLevelTokenToBytes('€')).toBeNull();
  });
});

describe('writeTokenizerFiles', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsinfer-tok-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes byte-identical files for the same inputs, quickly', async () => {
    const t0 = performance.now();
    const a = await writeTokenizerFiles(join(dir, 'a'), {});
    const ms = performance.now() - t0;
    const b = await writeTokenizerFiles(join(dir, 'b'), { vocabSize: 2048 });
    expect(a).toEqual(b);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
      const fa = await readFile(join(dir, 'a', f));
      const fb = await readFile(join(dir, 'b', f));
      expect(fa.equals(fb), f).toBe(true);
    }
    expect(ms).toBeLessThan(2000);
    const c = await writeTokenizerFiles(join(dir, 'c'), { vocabSize: 1024 });
    expect(
      (await readFile(join(dir, 'c', 'tokenizer.json'))).equals(
        await readFile(join(dir, 'a', 'tokenizer.json')),
      ),
    ).toBe(false);
    expect(c.vocabSize).toBe(1024);
  });

  it('lays out the vocabulary: bytes, merges, then the special tokens', async () => {
    const info = await writeTokenizerFiles(join(dir, 'layout'), {});
    expect(info).toEqual({
      vocabSize: 2048,
      bosTokenId: 2043,
      eosTokenId: 2044,
      padTokenId: 2047,
      eosTokenIds: [2044, 2046],
      imStartTokenId: 2045,
      imEndTokenId: 2046,
    });
    const tj = JSON.parse(await readFile(join(dir, 'layout', 'tokenizer.json'), 'utf8'));
    const vocab = tj.model.vocab as Record<string, number>;
    const ids = Object.values(vocab).sort((x, y) => x - y);
    expect(ids.length).toBe(2043);
    expect(ids.every((id, i) => id === i)).toBe(true);
    for (let b = 0; b < 256; b++) expect(vocab[BYTE_TO_UNICODE[b]!]).toBe(b);
    expect(tj.model.type).toBe('BPE');
    expect(tj.model.merges.length).toBeGreaterThanOrEqual(2043 - 256);
    expect(tj.added_tokens.map((t: { content: string; id: number }) => [t.content, t.id])).toEqual(
      SPECIAL_TOKENS.map((t, i) => [t, 2043 + i]),
    );
    expect(tj.pre_tokenizer.pretokenizers.map((p: { type: string }) => p.type)).toEqual([
      'Split',
      'ByteLevel',
    ]);
    expect(tj.decoder.type).toBe('ByteLevel');
    const cfg = JSON.parse(await readFile(join(dir, 'layout', 'tokenizer_config.json'), 'utf8'));
    expect(cfg.bos_token).toBe('<|begin_of_text|>');
    expect(cfg.eos_token).toBe('<|end_of_text|>');
    expect(cfg.pad_token).toBe('<|pad|>');
    expect(typeof cfg.chat_template).toBe('string');
    expect(cfg.clean_up_tokenization_spaces).toBe(false);
  });

  it('loads in @huggingface/tokenizers and round-trips text exactly', async () => {
    const d = join(dir, 'rt');
    await writeTokenizerFiles(d, {});
    const tok = new HfTokenizer(
      JSON.parse(await readFile(join(d, 'tokenizer.json'), 'utf8')),
      JSON.parse(await readFile(join(d, 'tokenizer_config.json'), 'utf8')),
    );
    for (const text of ROUND_TRIP) {
      const { ids } = tok.encode(text, { add_special_tokens: false });
      for (const id of ids) expect(id).toBeLessThan(2043);
      expect(ids.length === 0 ? '' : tok.decode(ids), JSON.stringify(text)).toBe(text);
      const withBos = tok.encode(text).ids;
      expect(withBos[0]).toBe(2043);
    }
    // Special tokens in text are single tokens.
    const { ids } = tok.encode('<|im_start|>user\nhi<|im_end|>', { add_special_tokens: false });
    expect(ids[0]).toBe(2045);
    expect(ids[ids.length - 1]).toBe(2046);
  });

  it('encodes the corpus exactly as the trainer segmented it, with real compression', async () => {
    const d = join(dir, 'seg');
    await writeTokenizerFiles(d, {});
    const tok = new HfTokenizer(
      JSON.parse(await readFile(join(d, 'tokenizer.json'), 'utf8')),
      JSON.parse(await readFile(join(d, 'tokenizer_config.json'), 'utf8')),
    );
    const texts = await readCorpus();
    const bpe = trainBpe(texts, 2048 - SPECIAL_TOKENS.length);
    let count = 0;
    let bytes = 0;
    for (const text of texts) {
      const { ids } = tok.encode(text, { add_special_tokens: false });
      count += ids.length;
      bytes += Buffer.byteLength(text);
      expect(tok.decode(ids)).toBe(text);
    }
    expect(count).toBe(bpe.tokenCount);
    expect(bytes / count).toBeGreaterThan(2.5);
    expect(bytes).toBeGreaterThan(20_000);
  });

  it('rejects bad vocab sizes with TsinferErrors', async () => {
    await expect(writeTokenizerFiles(join(dir, 'bad'), { vocabSize: 100 })).rejects.toMatchObject({
      code: 'TSI_ERR_INVALID_CONFIG',
    });
    await expect(writeTokenizerFiles(join(dir, 'bad'), { vocabSize: 2048.5 })).rejects.toBeInstanceOf(
      TsinferError,
    );
    await expect(writeTokenizerFiles(join(dir, 'bad'), { vocabSize: 65_000 })).rejects.toThrow(
      /supports at most/,
    );
  });
});
