import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesToByteLevelToken } from './byte-level.js';
import { findEarliestStop, StopStringMatcher, stopHoldBack } from './detokenizer.js';
import { Tokenizer } from './tokenizer.js';
import { writeTokenizerFiles } from './train.js';

let dir: string;
let tok: Tokenizer;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsinfer-detok-'));
  await writeTokenizerFiles(dir, {});
  tok = await Tokenizer.fromDir(dir);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const enc = new TextEncoder();
const utf8 = (s: string): Uint8Array => enc.encode(s);

/** Greedy longest-match tokenization of raw bytes with the vocabulary (tokens may cross character boundaries). */
function greedy(bytes: Uint8Array): number[] {
  const out: number[] = [];
  let i = 0;
  while (i < bytes.length) {
    for (let len = Math.min(16, bytes.length - i); len >= 1; len--) {
      const id = tok.tokenToId(bytesToByteLevelToken(bytes.subarray(i, i + len)));
      if (id !== null) {
        out.push(id);
        i += len;
        break;
      }
    }
  }
  return out;
}

/** Streams ids; checks every delta and returns their concatenation. */
function stream(ids: readonly number[], full: string, opts: { skipSpecialTokens?: boolean } = {}): string {
  const d = tok.createDetokenizer(opts);
  let acc = '';
  for (const id of ids) {
    const delta = d.push(id);
    if (!full.includes('\uFFFD')) expect(delta.includes('\uFFFD'), JSON.stringify(delta)).toBe(false);
    // A delta never ends inside a surrogate pair.
    if (delta.length > 0) {
      const last = delta.charCodeAt(delta.length - 1);
      expect(last >= 0xd800 && last <= 0xdbff).toBe(false);
    }
    acc += delta;
    expect(full.startsWith(acc), `${JSON.stringify(acc)} is not a prefix of ${JSON.stringify(full)}`).toBe(
      true,
    );
  }
  acc += d.flush();
  return acc;
}

const MULTIBYTE = [
  'é',
  '€',
  '😀',
  'aé€😀b',
  '你好世界',
  '👨‍👩‍👧‍👦',
  'Ωmega ≈ 😀 naïve 日本 🇫🇷',
  'x\u00a0y\u2028z',
];

describe('ByteDetokenizer', () => {
  it('streams the real encoding of mixed text exactly like decode()', () => {
    const text = 'Hello wörld! 你好，世界 😀🎉 👩🏽‍💻\n\n\tcafé — “quotes” …';
    const ids = Array.from(tok.encode(text, { addSpecialTokens: false }));
    expect(stream(ids, text)).toBe(text);
    expect(stream(ids, text)).toBe(tok.decode(ids));
  });

  it('never emits a broken character for any split of 2-, 3- and 4-byte sequences', () => {
    let cases = 0;
    for (const s of MULTIBYTE) {
      const b = utf8(s);
      // Every byte as its own token.
      expect(
        stream(
          Array.from(b, (x) => x),
          s,
        ),
      ).toBe(s);
      // Every pair of split points, each piece tokenized with multi-byte vocabulary tokens.
      for (let i = 0; i <= b.length; i++) {
        for (let j = i; j <= b.length; j++) {
          const ids = [...greedy(b.subarray(0, i)), ...greedy(b.subarray(i, j)), ...greedy(b.subarray(j))];
          expect(stream(ids, s)).toBe(s);
          cases++;
        }
      }
    }
    expect(cases).toBeGreaterThan(300);
    // Some vocabulary tokens really do cross character boundaries.
    expect(greedy(utf8('你好')).length).toBeLessThan(6);
  });

  it('matches the full decode for invalid and truncated byte streams', () => {
    const td = (bytes: number[]): string =>
      new TextDecoder('utf-8', { ignoreBOM: true }).decode(new Uint8Array(bytes));
    for (const bytes of [
      [0x80, 0x61], // stray continuation byte
      [0xe4, 0xbd, 0x61], // truncated 3-byte sequence then ASCII
      [0xf0, 0x9f, 0x98], // truncated emoji at the end
      [0xc3, 0xc3, 0xa9], // lead byte, then a full 2-byte char
      [0xef, 0xbb, 0xbf, 0x61], // BOM is kept
    ]) {
      const full = td(bytes);
      expect(stream(bytes, full)).toBe(full);
    }
    const d = tok.createDetokenizer();
    expect(d.push(0xf0)).toBe('');
    expect(d.push(0x9f)).toBe('');
    expect(d.flush()).toBe('\uFFFD');
    // flush resets: the next request starts clean.
    expect(d.push(0x61)).toBe('a');
  });

  it('skips special tokens by default and can keep them', () => {
    const ids = [
      ...tok.encode('Hi ', { addSpecialTokens: false }),
      2046,
      ...tok.encode('there', { addSpecialTokens: false }),
    ];
    expect(stream(ids, 'Hi there')).toBe('Hi there');
    expect(stream(ids, 'Hi <|im_end|>there', { skipSpecialTokens: false })).toBe('Hi <|im_end|>there');
    // A special token between the bytes of one character does not break it when skipped.
    const e = Array.from(utf8('é'));
    expect(stream([e[0]!, 2044, e[1]!], 'é')).toBe('é');
  });
});

describe('TextDetokenizer (SentencePiece-style vocabulary)', () => {
  // Llama-2-like: Metaspace via normalizer, byte fallback, Replace/ByteFallback/Fuse/Strip decoder.
  function spTokenizer(): Tokenizer {
    const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
    for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
    let next = 259;
    for (const c of ['▁', ...'Helowrdabc!', '▁w', 'lo', '▁H', 'll']) vocab[c] = next++;
    const special = (id: number, content: string) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
    const json = {
      version: '1.0',
      added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
      normalizer: {
        type: 'Sequence',
        normalizers: [
          { type: 'Prepend', prepend: '▁' },
          { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
        ],
      },
      pre_tokenizer: null,
      post_processor: null,
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          { type: 'Strip', content: ' ', start: 1, stop: 0 },
        ],
      },
      model: {
        type: 'BPE',
        unk_token: '<unk>',
        byte_fallback: true,
        fuse_unk: true,
        vocab,
        merges: ['▁ w', 'l o', '▁ H', 'l l'],
      },
    };
    return new Tokenizer(json, { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' });
  }

  it('streams byte-fallback characters whole and equals decode()', () => {
    const sp = spTokenizer();
    expect(sp.byteTable).toBeNull();
    const text = 'Hello wörld 😀 你好!';
    const ids = Array.from(sp.encode(text, { addSpecialTokens: false }));
    expect(ids.some((id) => id >= 3 && id < 259)).toBe(true); // byte-fallback tokens present
    const full = sp.decode(ids);
    expect(full).toBe(text);
    const d = sp.createDetokenizer();
    let acc = '';
    for (const id of ids) {
      const delta = d.push(id);
      expect(delta.includes('\uFFFD')).toBe(false);
      acc += delta;
      expect(full.startsWith(acc)).toBe(true);
    }
    acc += d.flush();
    expect(acc).toBe(full);
  });

  it('keeps the leading space of the first generated token given prompt context', () => {
    const sp = spTokenizer();
    const prompt = Array.from(sp.encode('Hello', { addSpecialTokens: false }));
    const gen = Array.from(sp.encode('Hello wörld', { addSpecialTokens: false })).slice(prompt.length);
    const d = sp.createDetokenizer({ context: prompt });
    let acc = '';
    for (const id of gen) acc += d.push(id);
    acc += d.flush();
    expect(acc).toBe(' wörld');
  });
});

describe('stop strings', () => {
  it('holds back the longest suffix that could start a stop string', () => {
    expect(stopHoldBack('Hello wor', ['world'])).toBe(3);
    expect(stopHoldBack('Hello', ['x', 'yz'])).toBe(0);
    expect(stopHoldBack('xab', ['abc', 'bcd'])).toBe(2);
    expect(stopHoldBack('xa', ['ab'])).toBe(1);
    expect(stopHoldBack('aa', ['aab'])).toBe(2);
    expect(stopHoldBack('', ['ab'])).toBe(0);
    expect(stopHoldBack('end\n', ['\n\n'])).toBe(1);
  });

  it('finds the earliest stop, longest on ties', () => {
    expect(findEarliestStop('foo END bar STOP', ['STOP', 'END'])).toEqual({ index: 4, stop: 'END' });
    expect(findEarliestStop('abcdef', ['cd', 'cde'])).toEqual({ index: 2, stop: 'cde' });
    expect(findEarliestStop('abcdef', ['xyz', ''])).toBeNull();
    expect(findEarliestStop('abcabc', ['abc'], 1)).toEqual({ index: 3, stop: 'abc' });
  });

  it('releases everything before a stop and nothing of it, across any delta split', () => {
    const text = 'The answer is 42.\n\nObservation: done';
    const stops = ['\n\nObservation:', 'answer is 43'];
    const stopAt = text.indexOf('\n\nObservation:');
    for (let split = 1; split <= 5; split++) {
      const m = new StopStringMatcher(stops);
      let acc = '';
      let emitted = 0;
      let out = '';
      let stopped = false;
      for (let i = 0; i < text.length && !stopped; i += split) {
        acc += text.slice(i, i + split);
        const r = m.check(acc, emitted);
        expect(r.safeEnd).toBeGreaterThanOrEqual(emitted);
        out += acc.slice(emitted, r.safeEnd);
        emitted = r.safeEnd;
        // Never released text that a later stop match could start in.
        expect(emitted).toBeLessThanOrEqual(stopAt);
        if (r.stopIndex >= 0) {
          expect(r.stop).toBe('\n\nObservation:');
          expect(r.stopIndex).toBe(stopAt);
          stopped = true;
        }
      }
      expect(stopped).toBe(true);
      expect(out).toBe('The answer is 42.');
    }
  });

  it('releases held-back text once it can no longer become a stop', () => {
    const m = new StopStringMatcher(['</tool>']);
    expect(m.check('abc</to', 0)).toMatchObject({ stopIndex: -1, safeEnd: 3 });
    expect(m.check('abc</tx', 3)).toMatchObject({ stopIndex: -1, safeEnd: 7 });
    expect(new StopStringMatcher([]).check('abc', 1)).toMatchObject({ stopIndex: -1, safeEnd: 3 });
  });
});
