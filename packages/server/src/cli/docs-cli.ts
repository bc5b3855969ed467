/**
 * Rewrites docs/cli.md from the flag registry (`pnpm docs:cli`). With
 * `--check`, exits 1 instead when the file is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderCliDoc } from './flags.js';

const target = fileURLToPath(new URL('../../../../docs/cli.md', import.meta.url));
const text = renderCliDoc();
if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {}
  if (current !== text) {
    console.error(`${target} is out of date; run pnpm docs:cli`);
    process.exitCode = 1;
  }
} else {
  writeFileSync(target, text);
  console.log(`wrote ${target}`);
}
