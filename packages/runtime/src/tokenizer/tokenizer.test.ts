import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TsinferError } from '@tsinfer/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tokenizer } from './tokenizer.js';
import { writeTokenizerFiles } from './train.js';

let dir: string;
let tok: Tokenizer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsinfer-tokenizer-'));
  await writeTokenizerFiles(join(dir, 'model'), {});
  await writeFile(
    join(dir, 'model', 'generation_config.json'),
    JSON.stringify({ eos_token_id: [2044, 2046] }),
  );
  tok = await Tokenizer.fromDir(join(dir, 'model'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function expectCode(p: Promise<unknown> | (() => unknown), code: string, re?: RegExp): Promise<void> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeInstanceOf(TsinferError);
  expect((err as TsinferError).code).toBe(code);
  if (re) expect((err as Error).message).toMatch(re);
}

describe('Tokenizer', () => {
  it('exposes vocab size and special ids', () => {
    expect(tok.vocabSize).toBe(2048);
    expect(tok.bosTokenId).toBe(2043);
    expect(tok.eosTokenId).toBe(2044);
    expect(tok.padTokenId).toBe(2047);
    expect(tok.eosTokenIds).toEqual([2044, 2046]);
    expect([...tok.specialTokenIds].sort()).toEqual([2043, 2044, 2045, 2046, 2047]);
    expect(tok.byteTable).not.toBeNull();
    expect(tok.tokenToId('<|im_end|>')).toBe(2046);
    expect(tok.idToToken(2043)).toBe('<|begin_of_text|>');
  });

  it('encodes with and without special tokens and decodes exactly', () => {
    const text = 'Hello wörld 😀\n\n  你好';
    const withBos = tok.encode(text);
    const plain = tok.encode(text, { addSpecialTokens: false });
    expect(withBos).toBeInstanceOf(Int32Array);
    expect(withBos[0]).toBe(2043);
    expect(Array.from(withBos.subarray(1))).toEqual(Array.from(plain));
    expect(tok.decode(plain)).toBe(text);
    expect(tok.decode(withBos)).toBe(`<|begin_of_text|>${text}`);
    expect(tok.decode(withBos, { skipSpecialTokens: true })).toBe(text);
    expect(tok.decode([])).toBe('');
    // No clean-up of tokenization spaces: " ." stays.
    expect(tok.decode(tok.encode('a . b , c', { addSpecialTokens: false }))).toBe('a . b , c');
  });

  it('rejects ids outside the vocabulary', async () => {
    await expectCode(() => tok.decode([5, 2048]), 'TSI_ERR_INVALID_TOKEN_ID', /2048/);
    await expectCode(() => tok.decode([-1]), 'TSI_ERR_INVALID_TOKEN_ID');
  });

  it('renders the ChatML template', () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Hi ' },
          { type: 'text', text: 'there' },
        ],
      },
    ];
    expect(tok.applyChatTemplate(messages)).toBe(
      '<|begin_of_text|><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(tok.applyChatTemplate(messages, { addGenerationPrompt: false })).toBe(
      '<|begin_of_text|><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n',
    );
    const ids = tok.encodeChat(messages);
    expect(ids[0]).toBe(2043);
    expect(ids.filter((id) => id === 2043).length).toBe(1);
    expect(ids.filter((id) => id === 2045).length).toBe(3);
    expect(ids.filter((id) => id === 2046).length).toBe(2);
    expect(tok.decode(ids)).toBe(tok.applyChatTemplate(messages));
  });

  it('maps bad message lists and template failures to HTTP-400 TsinferErrors', async () => {
    await expectCode(() => tok.applyChatTemplate([]), 'TSI_ERR_INVALID_MESSAGES');
    await expectCode(() => tok.applyChatTemplate('hi'), 'TSI_ERR_INVALID_MESSAGES');
    await expectCode(
      () => tok.applyChatTemplate([{ content: 'x' }]),
      'TSI_ERR_INVALID_MESSAGES',
      /messages\[0\]\.role/,
    );
    await expectCode(
      () =>
        tok.applyChatTemplate([
          { role: 'user', content: 'a' },
          { role: 'user', content: 3 },
        ]),
      'TSI_ERR_INVALID_MESSAGES',
      /messages\[1\]\.content/,
    );
    await expectCode(
      () => tok.applyChatTemplate([{ role: 'user', content: [{ type: 'image_url', image_url: 'x' }] }]),
      'TSI_ERR_INVALID_MESSAGES',
    );
    await expectCode(
      () => tok.applyChatTemplate([{ role: 'wizard', content: 'x' }]),
      'TSI_ERR_CHAT_TEMPLATE',
      /Unsupported message role: wizard/,
    );
    try {
      tok.applyChatTemplate([{ role: 'wizard', content: 'x' }]);
    } catch (e) {
      expect((e as TsinferError).statusCode).toBe(400);
    }
  });

  it('errors clearly for a model without a template and for missing/invalid files', async () => {
    const d = join(dir, 'notemplate');
    await mkdir(d, { recursive: true });
    await copyFile(join(dir, 'model', 'tokenizer.json'), join(d, 'tokenizer.json'));
    await writeFile(join(d, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|end_of_text|>' }));
    const t2 = await Tokenizer.fromDir(d);
    expect(t2.chatTemplate).toBeNull();
    expect(t2.bosTokenId).toBeNull();
    expect(t2.eosTokenIds).toEqual([2044]);
    await expectCode(
      () => t2.applyChatTemplate([{ role: 'user', content: 'x' }]),
      'TSI_ERR_NO_CHAT_TEMPLATE',
    );
    // chat_template.jinja beside it is picked up.
    await writeFile(
      join(d, 'chat_template.jinja'),
      '{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}',
    );
    const t3 = await Tokenizer.fromDir(d);
    expect(t3.applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('[user]x');

    const missing = join(dir, 'missing');
    await mkdir(missing, { recursive: true });
    await expectCode(Tokenizer.fromDir(missing), 'TSI_ERR_MODEL_LOAD', /tokenizer\.json/);
    await copyFile(join(dir, 'model', 'tokenizer.json'), join(missing, 'tokenizer.json'));
    await expectCode(Tokenizer.fromDir(missing), 'TSI_ERR_MODEL_LOAD', /tokenizer_config\.json/);
    await writeFile(join(missing, 'tokenizer_config.json'), '{ not json');
    await expectCode(
      Tokenizer.fromDir(missing),
      'TSI_ERR_MODEL_LOAD',
      /tokenizer_config\.json: invalid JSON/,
    );
    await writeFile(join(missing, 'tokenizer_config.json'), '{}');
    await writeFile(join(missing, 'tokenizer.json'), '{"version": "1.0"}');
    await expectCode(Tokenizer.fromDir(missing), 'TSI_ERR_MODEL_LOAD', /tokenizer\.json: has no "model"/);
  });
});
