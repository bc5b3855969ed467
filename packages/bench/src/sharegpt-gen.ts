/**
 * A deterministic generator of ShareGPT-format conversations from a word
 * list, so the package ships a dataset without downloading one. The text is
 * word salad with a realistic shape: a spread of prompt and answer lengths
 * (log-normal), some multi-turn conversations, and a few rows that
 * bench_serving's filters drop (one turn, empty prompt or answer).
 */
import { createRng, type Rng } from '@tsinfer/core';

export interface ShareGptTurn {
  from: 'human' | 'gpt';
  value: string;
}

export interface ShareGptConversation {
  id: string;
  conversations: ShareGptTurn[];
}

export interface GenerateOptions {
  seed: number;
  count: number;
  words: readonly string[];
  /** Median / log-sd / cap of prompt length in words (default 40 / 1.0 / 500). */
  prompt?: { median: number; sigma: number; max: number };
  /** Median / log-sd / cap of answer length in words (default 110 / 0.8 / 500). */
  answer?: { median: number; sigma: number; max: number };
}

const OPENERS = [
  'Explain',
  'Describe',
  'Write a short story about',
  'Summarize',
  'List the steps to',
  'Compare',
  'Give an example of',
  'Why does',
  'How can I',
  'Translate into plain words:',
];

function normal(rng: Rng): number {
  const u = 1 - rng.next();
  const v = rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function lengthDraw(rng: Rng, median: number, sigma: number, cap: number): number {
  return Math.max(1, Math.min(cap, Math.round(median * Math.exp(sigma * normal(rng)))));
}

function text(rng: Rng, words: readonly string[], n: number, opener: string | null): string {
  const out: string[] = [];
  let left = n;
  let first = true;
  while (left > 0) {
    const len = Math.min(left, rng.int(4, 18));
    const s: string[] = [];
    for (let k = 0; k < len; k++) {
      // Skewed toward the front of the list: a rough Zipf shape.
      const u = rng.next();
      s.push(words[Math.floor(words.length * u * u)]!);
      if (k > 2 && k < len - 2 && rng.next() < 0.08) s[s.length - 1] += ',';
    }
    if (first && opener !== null) s[0] = `${opener} ${s[0]}`;
    else s[0] = s[0]!.charAt(0).toUpperCase() + s[0]!.slice(1);
    const r = rng.next();
    out.push(`${s.join(' ')}${r < 0.15 ? '?' : r < 0.2 ? '!' : '.'}`);
    left -= len;
    first = false;
  }
  // Paragraph breaks now and then.
  return out
    .map((x, i) => (i > 0 && rng.next() < 0.15 ? `\n\n${x}` : x))
    .join(' ')
    .replace(/ \n\n/g, '\n\n');
}

export function generateShareGpt(o: GenerateOptions): ShareGptConversation[] {
  if (o.words.length === 0) throw new RangeError('generateShareGpt: empty word list');
  const rng = createRng(o.seed);
  const p = o.prompt ?? { median: 40, sigma: 1.0, max: 500 };
  const a = o.answer ?? { median: 110, sigma: 0.8, max: 500 };
  const convs: ShareGptConversation[] = [];
  for (let i = 0; i < o.count; i++) {
    const kind = rng.next();
    const exchanges = kind < 0.05 ? 0 : kind < 0.75 ? 1 : 2;
    const turns: ShareGptTurn[] = [];
    if (exchanges === 0) {
      turns.push({
        from: 'human',
        value: text(rng, o.words, lengthDraw(rng, p.median, p.sigma, p.max), null),
      });
    }
    for (let e = 0; e < exchanges; e++) {
      const special = rng.next();
      const opener = OPENERS[rng.int(0, OPENERS.length - 1)]!;
      const prompt =
        special < 0.01 ? '' : text(rng, o.words, lengthDraw(rng, p.median, p.sigma, p.max), opener);
      const answer =
        special > 0.99 ? '' : text(rng, o.words, lengthDraw(rng, a.median, a.sigma, a.max), null);
      turns.push({ from: 'human', value: prompt }, { from: 'gpt', value: answer });
    }
    convs.push({ id: `tsinfer-sharegpt-${o.seed}-${String(i).padStart(4, '0')}`, conversations: turns });
  }
  return convs;
}

/** The file bytes: a JSON array with one conversation per line. */
export function serializeShareGpt(convs: readonly ShareGptConversation[]): string {
  return `[\n${convs.map((c) => JSON.stringify(c)).join(',\n')}\n]\n`;
}

/** The settings of the shipped data/sharegpt-small.json. */
export const SHIPPED_SHAREGPT = { seed: 20261123, count: 500 } as const;
