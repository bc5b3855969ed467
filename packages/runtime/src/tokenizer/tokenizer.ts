/**
 * Loads any Hugging Face `tokenizer.json` + `tokenizer_config.json` (through
 * `@huggingface/tokenizers`) and renders chat templates (through
 * `@huggingface/jinja`).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { byteLevelTokenToBytes } from './byte-level.js';
import {
  ByteDetokenizer,
  type DetokenizerOptions,
  type IncrementalDetokenizer,
  TextDetokenizer,
  TokenByteTable,
} from './detokenizer.js';
import {
  ChatTemplateError,
  InvalidMessagesError,
  InvalidTokenIdError,
  NoChatTemplateError,
  TokenizerLoadError,
} from './errors.js';

/** One chat message. `content` may be a string, null, or OpenAI-style text parts (joined into one string). */
export interface ChatMessage {
  readonly role: string;
  readonly content?: string | null | ReadonlyArray<{ readonly type: string; readonly text?: string }>;
  readonly [key: string]: unknown;
}

export interface ApplyChatTemplateOptions {
  /** Append the assistant turn header so the model answers (HF `add_generation_prompt`). Default true. */
  addGenerationPrompt?: boolean;
  /** Extra variables for the template (e.g. `tools`, `enable_thinking`). */
  extra?: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A special token in tokenizer_config.json: a string or a serialized AddedToken `{content}`. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v['content'] === 'string') return v['content'];
  return null;
}

function idList(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x));
  return [];
}

async function readJson(dir: string, name: string, required: boolean): Promise<Json | null> {
  const file = join(dir, name);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new TokenizerLoadError(file, `cannot read: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new TokenizerLoadError(file, `invalid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isObject(value)) throw new TokenizerLoadError(file, 'must contain a JSON object');
  return value;
}

/** The chat template from tokenizer_config.json: a string, or a list of named templates (the "default" one). */
function pickChatTemplate(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    for (const t of v) {
      if (isObject(t) && t['name'] === 'default' && typeof t['template'] === 'string') return t['template'];
    }
  }
  return null;
}

/** A loaded tokenizer. */
export class Tokenizer {
  private readonly hf: HfTokenizer;
  /** Number of token ids (1 + the largest id of the vocabulary and added tokens). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  /** The `eos_token` of tokenizer_config.json. */
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  /** Every id that ends generation: `eos_token`, plus `eos_token_id` of generation_config.json and config.json. */
  readonly eosTokenIds: readonly number[];
  /** Ids of all special added tokens. */
  readonly specialTokenIds: ReadonlySet<number>;
  readonly chatTemplate: string | null;
  /** Exact bytes per token when the decoder is byte-level, else null (text-mode streaming). */
  readonly byteTable: TokenByteTable | null;
  private readonly specialTokens: Record<string, string>;
  private compiledTemplate: Template | null = null;

  /**
   * @param tokenizerJson parsed tokenizer.json
   * @param config parsed tokenizer_config.json
   * @param options.extraEosTokenIds eos ids from generation_config.json / config.json
   * @param options.source name used in error messages
   */
  constructor(
    tokenizerJson: Json,
    config: Json,
    options: { extraEosTokenIds?: readonly number[]; chatTemplate?: string | null; source?: string } = {},
  ) {
    const source = options.source ?? 'tokenizer.json';
    if (!isObject(tokenizerJson['model'])) throw new TokenizerLoadError(source, 'has no "model" object');
    if (!Array.isArray(tokenizerJson['added_tokens'])) tokenizerJson = { ...tokenizerJson, added_tokens: [] };
    try {
      this.hf = new HfTokenizer(tokenizerJson, config);
    } catch (err) {
      throw new TokenizerLoadError(source, `cannot build the tokenizer: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const vocab = this.hf.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;

    const special = new Set<number>();
    const addedContent = new Map<number, string>();
    for (const [id, tok] of this.hf.get_added_tokens_decoder()) {
      addedContent.set(id, tok.content);
      if (tok.special) special.add(id);
    }
    this.specialTokens = {};
    const idOfConfigToken = (key: string): number | null => {
      const content = tokenContent(config[key]);
      if (content === null) return null;
      this.specialTokens[key] = content;
      const id = this.hf.token_to_id(content);
      return id === undefined ? null : id;
    };
    this.bosTokenId = idOfConfigToken('bos_token');
    this.eosTokenId = idOfConfigToken('eos_token');
    this.padTokenId = idOfConfigToken('pad_token');
    idOfConfigToken('unk_token');
    for (const id of [this.bosTokenId, this.eosTokenId, this.padTokenId]) if (id !== null) special.add(id);
    this.specialTokenIds = special;

    const eos: number[] = [];
    for (const id of [this.eosTokenId, ...(options.extraEosTokenIds ?? [])]) {
      if (id !== null && id >= 0 && id < this.vocabSize && !eos.includes(id)) eos.push(id);
    }
    this.eosTokenIds = eos;

    this.chatTemplate = options.chatTemplate ?? pickChatTemplate(config['chat_template']);

    // Byte table for exact streaming when the decoder is plain ByteLevel.
    const decoder = tokenizerJson['decoder'];
    let table: TokenByteTable | null = null;
    if (isObject(decoder) && decoder['type'] === 'ByteLevel') {
      const encoder = new TextEncoder();
      const bytes = new Array<Uint8Array | null>(this.vocabSize).fill(null);
      let ok = true;
      for (let id = 0; id < this.vocabSize && ok; id++) {
        const added = addedContent.get(id);
        if (added !== undefined) {
          bytes[id] = encoder.encode(added);
          continue;
        }
        const token = this.hf.id_to_token(id);
        if (token === undefined) continue; // hole in the vocabulary: decodes to nothing
        const b = byteLevelTokenToBytes(token);
        if (b === null) ok = false;
        else bytes[id] = b;
      }
      if (ok) table = new TokenByteTable(bytes, special);
    }
    this.byteTable = table;
  }

  /**
   * Loads `tokenizer.json` and `tokenizer_config.json` from a model
   * directory; `generation_config.json` and `config.json` (optional) add their
   * `eos_token_id`s; `chat_template.jinja` (optional) overrides the config's
   * template. Errors are {@link TokenizerLoadError}s naming the file.
   */
  static async fromDir(dir: string): Promise<Tokenizer> {
    const tokenizerJson = (await readJson(dir, 'tokenizer.json', true))!;
    const config = (await readJson(dir, 'tokenizer_config.json', true))!;
    const gen = await readJson(dir, 'generation_config.json', false);
    const modelConfig = await readJson(dir, 'config.json', false);
    const extraEosTokenIds = [...idList(gen?.['eos_token_id']), ...idList(modelConfig?.['eos_token_id'])];
    let chatTemplate: string | null = null;
    try {
      chatTemplate = await readFile(join(dir, 'chat_template.jinja'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new TokenizerLoadError(
          join(dir, 'chat_template.jinja'),
          `cannot read: ${(err as Error).message}`,
        );
      }
    }
    return new Tokenizer(tokenizerJson, config, {
      extraEosTokenIds,
      chatTemplate,
      source: join(dir, 'tokenizer.json'),
    });
  }

  /** Token ids of `text`. `addSpecialTokens` (default true) applies the post-processor (e.g. prepends BOS). */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): Int32Array {
    const { ids } = this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true });
    return Int32Array.from(ids);
  }

  /**
   * Text of `ids`. `skipSpecialTokens` default false (HF default).
   * `cleanUpTokenizationSpaces` default false, whatever the config says, so
   * that decode equals the concatenated streaming deltas (vLLM behaviour).
   */
  decode(
    ids: ArrayLike<number>,
    options: { skipSpecialTokens?: boolean; cleanUpTokenizationSpaces?: boolean } = {},
  ): string {
    const list = Array.from(ids);
    for (const id of list) this.checkId(id);
    if (list.length === 0) return '';
    const skip = options.skipSpecialTokens ?? false;
    const kept = skip ? list.filter((id) => !this.specialTokenIds.has(id)) : list;
    if (kept.length === 0) return '';
    return this.hf.decode(kept, {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: options.cleanUpTokenizationSpaces ?? false,
    });
  }

  /** Throws {@link InvalidTokenIdError} unless `id` is an integer in [0, vocabSize). */
  checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new InvalidTokenIdError(`token id ${id} is not in [0, ${this.vocabSize})`);
    }
  }

  tokenToId(token: string): number | null {
    return this.hf.token_to_id(token) ?? null;
  }

  idToToken(id: number): string | null {
    return this.hf.id_to_token(id) ?? null;
  }

  /** A streaming detokenizer for one request (byte-exact for byte-level vocabularies). */
  createDetokenizer(
    options: DetokenizerOptions & { context?: ArrayLike<number> } = {},
  ): IncrementalDetokenizer {
    if (this.byteTable !== null) return new ByteDetokenizer(this.byteTable, options);
    return new TextDetokenizer(
      (ids) => this.hf.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }),
      (id) => this.specialTokenIds.has(id),
      options,
    );
  }

  /**
   * Renders `messages` with the model's chat template. Throws
   * {@link NoChatTemplateError} without a template, {@link InvalidMessagesError}
   * for a malformed list, {@link ChatTemplateError} when the template raises
   * or fails (all HTTP 400).
   */
  applyChatTemplate(messages: unknown, options: ApplyChatTemplateOptions = {}): string {
    if (this.chatTemplate === null) {
      throw new NoChatTemplateError(
        'this model has no chat template (tokenizer_config.json "chat_template")',
      );
    }
    const normalized = normalizeMessages(messages);
    if (this.compiledTemplate === null) {
      try {
        this.compiledTemplate = new Template(this.chatTemplate);
      } catch (err) {
        throw new ChatTemplateError(`the model's chat template does not parse: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    try {
      return this.compiledTemplate.render({
        ...options.extra,
        messages: normalized,
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: this.specialTokens['bos_token'] ?? '',
        eos_token: this.specialTokens['eos_token'] ?? '',
        pad_token: this.specialTokens['pad_token'] ?? '',
        unk_token: this.specialTokens['unk_token'] ?? '',
      });
    } catch (err) {
      // The template's raise_exception('...') throws an Error carrying its message.
      throw new ChatTemplateError(`chat template rejected the messages: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** `applyChatTemplate` then `encode` without adding special tokens (the template writes them), like HF `tokenize=True`. */
  encodeChat(messages: unknown, options: ApplyChatTemplateOptions = {}): Int32Array {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false });
  }
}

/** Validates a message list and joins text-part contents into strings. */
export function normalizeMessages(messages: unknown): Json[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new InvalidMessagesError('messages must be a non-empty array');
  }
  return messages.map((m, i) => {
    if (!isObject(m)) throw new InvalidMessagesError(`messages[${i}] must be an object`);
    if (typeof m['role'] !== 'string' || m['role'].length === 0) {
      throw new InvalidMessagesError(`messages[${i}].role must be a non-empty string`);
    }
    const content = m['content'];
    if (content === undefined || content === null || typeof content === 'string') return { ...m };
    if (Array.isArray(content)) {
      let text = '';
      content.forEach((part, j) => {
        if (!isObject(part) || part['type'] !== 'text' || typeof part['text'] !== 'string') {
          throw new InvalidMessagesError(
            `messages[${i}].content[${j}] must be a {type: "text", text: string} part`,
          );
        }
        text += part['text'];
      });
      return { ...m, content: text };
    }
    throw new InvalidMessagesError(`messages[${i}].content must be a string, null or a list of text parts`);
  });
}
