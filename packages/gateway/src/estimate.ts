/**
 * A request's estimated prompt tokens, the amount the DP-rank selection adds
 * to the chosen rank while the request is in flight.
 *
 * - Token ids in the body (`prompt` as ids, `input_ids`) count exactly.
 * - Text, when the gateway has the model's tokenizer (`--tokenizer-path`):
 *   encoded (chat messages through the chat template when the tokenizer has
 *   one).
 * - Text otherwise: SGLang's estimate, max(1, ceil(words × 1.3)) with words
 *   split on whitespace, in IEEE double (3 words → 4, 4 words → 6).
 * - Nothing readable: 1.
 */
import { Tokenizer } from '@tsinfer/runtime';

/** Counts the tokens of a text (the model's tokenizer). */
export interface TokenCounter {
  countText(text: string): number;
  countChat(messages: ReadonlyArray<{ role: string; content: string }>): number;
}

export function wordCountEstimate(text: string): number {
  const words = text.split(/\s+/).filter((w) => w.length > 0).length;
  return Math.max(1, Math.ceil(words * 1.3));
}

/** A TokenCounter over a model directory's tokenizer.json. */
export async function loadTokenCounter(dir: string): Promise<TokenCounter> {
  const tok = await Tokenizer.fromDir(dir);
  return {
    countText: (text) => tok.encode(text, { addSpecialTokens: true }).length,
    countChat: (messages) => {
      try {
        return tok.encodeChat(messages).length;
      } catch {
        return tok.encode(messages.map((m) => m.content).join('\n'), { addSpecialTokens: true }).length;
      }
    },
  };
}

function isIdArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number');
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p) =>
        typeof p === 'object' && p !== null && typeof (p as { text?: unknown }).text === 'string'
          ? (p as { text: string }).text
          : '',
      )
      .join(' ');
  }
  return '';
}

function textTokens(text: string, counter: TokenCounter | null): number {
  return counter !== null ? Math.max(1, counter.countText(text)) : wordCountEstimate(text);
}

/**
 * The estimate for one request body of `/v1/completions` (`prompt`),
 * `/v1/chat/completions` (`messages`) or `/generate` (`text` / `input_ids`).
 * A batch (an array of prompts) counts the sum.
 */
export function estimateRequestTokens(body: unknown, counter: TokenCounter | null): number {
  if (typeof body !== 'object' || body === null) return 1;
  const b = body as Record<string, unknown>;
  const one = (p: unknown): number => {
    if (typeof p === 'string') return textTokens(p, counter);
    if (isIdArray(p)) return p.length;
    return 0;
  };
  const many = (p: unknown): number => {
    if (Array.isArray(p) && p.length > 0 && !isIdArray(p)) return p.reduce((s: number, x) => s + one(x), 0);
    return one(p);
  };
  let n = 0;
  if (b['input_ids'] !== undefined && b['input_ids'] !== null) n = many(b['input_ids']);
  else if (b['prompt'] !== undefined && b['prompt'] !== null) n = many(b['prompt']);
  else if (b['text'] !== undefined && b['text'] !== null) n = many(b['text']);
  else if (Array.isArray(b['messages'])) {
    const msgs = (b['messages'] as unknown[]).map((m) => {
      const o = (typeof m === 'object' && m !== null ? m : {}) as Record<string, unknown>;
      return { role: typeof o['role'] === 'string' ? o['role'] : 'user', content: contentText(o['content']) };
    });
    if (counter !== null) n = Math.max(1, counter.countChat(msgs));
    else n = wordCountEstimate(msgs.map((m) => m.content).join(' '));
  }
  return Math.max(1, n);
}

/** The text the cache-aware policy matches prefixes on (empty when the body has none). */
export function requestText(body: unknown): string {
  if (typeof body !== 'object' || body === null) return '';
  const b = body as Record<string, unknown>;
  const p = b['prompt'] ?? b['text'];
  if (typeof p === 'string') return p;
  if (Array.isArray(p) && typeof p[0] === 'string') return p[0];
  if (isIdArray(b['input_ids'] ?? p)) return ((b['input_ids'] ?? p) as number[]).join(',');
  if (Array.isArray(b['messages'])) {
    return (b['messages'] as unknown[])
      .map((m) => {
        const o = (typeof m === 'object' && m !== null ? m : {}) as Record<string, unknown>;
        return `${String(o['role'] ?? '')}:${contentText(o['content'])}\n`;
      })
      .join('');
  }
  return '';
}
