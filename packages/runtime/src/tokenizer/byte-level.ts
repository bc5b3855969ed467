/**
 * GPT-2 byte-level BPE building blocks shared by the trainer, the tokenizer
 * and the streaming detokenizer.
 *
 * Byte-level BPE never sees raw bytes in its vocabulary strings: each byte
 * 0..255 is mapped to a printable Unicode character (printable ASCII and most
 * of Latin-1 map to themselves, the rest to U+0100..U+0143, e.g. space → `Ġ`,
 * newline → `Ċ`). A token string is therefore a sequence of these characters
 * and its bytes are recovered exactly with {@link UNICODE_TO_BYTE}.
 */

/** `BYTE_TO_UNICODE[b]` is the one-character string standing for byte `b` (GPT-2 `bytes_to_unicode`). */
export const BYTE_TO_UNICODE: readonly string[] = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const table = new Array<string>(256);
  for (let i = 0; i < 256; i++) table[bs[i]!] = String.fromCharCode(cs[i]!);
  return table;
})();

/**
 * `UNICODE_TO_BYTE[codePoint]` is the byte a byte-level character stands
 * for, or -1 if the code point is not one of the 256 byte characters (all of
 * them are below U+0144).
 */
export const UNICODE_TO_BYTE: Int16Array = (() => {
  const table = new Int16Array(0x144).fill(-1);
  for (let b = 0; b < 256; b++) table[BYTE_TO_UNICODE[b]!.charCodeAt(0)] = b;
  return table;
})();

/**
 * Bytes of a byte-level token string, or null if some character is not a
 * byte character (the token is then not a byte-level token, e.g. an added
 * special token).
 */
export function byteLevelTokenToBytes(token: string): Uint8Array | null {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    const b = c < UNICODE_TO_BYTE.length ? UNICODE_TO_BYTE[c]! : -1;
    if (b < 0) return null;
    out[i] = b;
  }
  return out;
}

/** The byte-level token string for `bytes`. */
export function bytesToByteLevelToken(bytes: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_UNICODE[bytes[i]!]!;
  return s;
}

/**
 * The Llama-3 / tiktoken `cl100k` pre-tokenizer split regex, as written in a
 * `tokenizer.json` (Oniguruma syntax; `(?i:...)` is a case-insensitive group).
 * Contractions, words with one optional leading non-letter, numbers in groups
 * of at most 3 digits, punctuation runs with an optional leading space and
 * trailing newlines, newline runs, and other whitespace runs.
 */
export const SPLIT_REGEX_ONIGURUMA =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** The same split regex in JavaScript syntax (the case-insensitive group spelled out). */
export const SPLIT_REGEX_JS =
  /'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;
