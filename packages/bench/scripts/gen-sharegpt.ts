/**
 * Regenerates data/sharegpt-small.json from data/words.txt (deterministic:
 * the same inputs write the same bytes; a test checks the committed file).
 *
 *   npx tsx --conditions=@tsinfer/source packages/bench/scripts/gen-sharegpt.ts
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { generateShareGpt, SHIPPED_SHAREGPT, serializeShareGpt } from '../src/sharegpt-gen.js';

const dataDir = new URL('../data/', import.meta.url);
const words = readFileSync(new URL('words.txt', dataDir), 'utf8')
  .split('\n')
  .filter((w) => w.trim() !== '');
const convs = generateShareGpt({ ...SHIPPED_SHAREGPT, words });
const out = new URL('sharegpt-small.json', dataDir);
writeFileSync(out, serializeShareGpt(convs));
console.log(`wrote ${out.pathname}: ${convs.length} conversations`);
