import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TsinferError } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { InvalidProfileError } from './errors.js';
import {
  BUILTIN_PROFILE_DIR,
  loadSimProfile,
  parseModelPath,
  serializeSimProfile,
  validateSimProfile,
} from './profile.js';
import { testProfile } from './test-util.js';

const good = (): Record<string, unknown> => JSON.parse(serializeSimProfile(testProfile()));

function expectFieldError(json: unknown, field: string, text?: string): void {
  let caught: unknown;
  try {
    validateSimProfile(json, 'p.json');
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected an error on ${field}`).toBeInstanceOf(InvalidProfileError);
  const err = caught as InvalidProfileError;
  expect(err.code).toBe('TSI_ERR_INVALID_PROFILE');
  expect(err.field).toBe(field);
  expect(err.message).toContain('p.json');
  expect(err.message).toContain(field);
  if (text) expect(err.message).toContain(text);
}

describe('validateSimProfile', () => {
  it('accepts a valid profile and round-trips through serializeSimProfile', () => {
    const p = validateSimProfile(good(), 'p.json');
    expect(p).toEqual(testProfile());
    expect(validateSimProfile(JSON.parse(serializeSimProfile(p)))).toEqual(p);
  });

  it('defaults omitted cost terms and generation to 0', () => {
    const j = good();
    j['cost'] = { fixedMs: 1, perDecodeRequestMs: 0.5 };
    delete j['generation'];
    const p = validateSimProfile(j);
    expect(p.cost.fixedMs).toBe(1);
    expect(p.cost.perKvTokenReadMs).toBe(0);
    expect(p.generation.eosProbability).toBe(0);
  });

  it('names the file and the field of every problem', () => {
    const set = (path: string[], v: unknown): Record<string, unknown> => {
      const j = good();
      let o = j as Record<string, unknown>;
      for (const k of path.slice(0, -1)) o = o[k] as Record<string, unknown>;
      o[path[path.length - 1]!] = v;
      return j;
    };
    expectFieldError([], '', 'must be an object');
    expectFieldError(set(['format'], 'v2'), 'format');
    expectFieldError(set(['source'], ''), 'source');
    expectFieldError(set(['model', 'vocabSize'], 1), 'model.vocabSize', '>= 2');
    expectFieldError(set(['model', 'vocabSize'], 10.5), 'model.vocabSize');
    expectFieldError(set(['model', 'contextLength'], '4096'), 'model.contextLength', '"4096"');
    expectFieldError(set(['model', 'kvCapacityTokens'], 0), 'model.kvCapacityTokens');
    expectFieldError(set(['model', 'eosTokenIds'], [5000]), 'model.eosTokenIds[0]', '< model.vocabSize');
    expectFieldError(set(['model', 'eosTokenIds'], 2), 'model.eosTokenIds');
    expectFieldError(set(['model', 'maxBatch'], 0), 'model.maxBatch');
    expectFieldError(set(['model', 'name'], ''), 'model.name');
    expectFieldError(set(['model', 'vocab'], 5), 'model.vocab', 'unknown field');
    expectFieldError(set(['cost', 'perDecodeRequestMs'], -1), 'cost.perDecodeRequestMs', '>= 0');
    expectFieldError(set(['cost', 'perDecodeRequestMs'], null), 'cost.perDecodeRequestMs');
    expectFieldError(set(['cost', 'perDecodeReqMs'], 1), 'cost.perDecodeReqMs', 'unknown field');
    expectFieldError(set(['generation', 'eosProbability'], 1.5), 'generation.eosProbability');
    expectFieldError(set(['extra'], 1), 'extra', 'unknown field');
    const noEos = set(['model', 'eosTokenIds'], []);
    (noEos['generation'] as Record<string, unknown>)['eosProbability'] = 0.1;
    expectFieldError(noEos, 'generation.eosProbability', 'eosTokenIds is empty');
  });
});

describe('loadSimProfile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsinfer-sim-'));

  it('loads a file', async () => {
    const path = join(dir, 'ok.json');
    writeFileSync(path, serializeSimProfile(testProfile()));
    expect(await loadSimProfile(path)).toEqual(testProfile());
  });

  it('reports a missing file and bad JSON as TsinferErrors naming the file', async () => {
    const missing = join(dir, 'missing.json');
    await expect(loadSimProfile(missing)).rejects.toSatisfy(
      (e: unknown) =>
        e instanceof TsinferError && e.code === 'TSI_ERR_INVALID_PROFILE' && e.message.includes(missing),
    );
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"format": ');
    await expect(loadSimProfile(bad)).rejects.toThrow(/bad\.json: not valid JSON/);
  });

  it('loads every committed profile, each with a source', async () => {
    const files = readdirSync(BUILTIN_PROFILE_DIR).filter((f) => f.endsWith('.json'));
    expect(files).toEqual(expect.arrayContaining(['tiny-cpu.json', 'small-h100.json', 'medium-h100.json']));
    for (const f of files) {
      const p = await loadSimProfile(join(BUILTIN_PROFILE_DIR, f));
      expect(p.source.length).toBeGreaterThan(40);
    }
  });
});

describe('parseModelPath', () => {
  it('tells sim profiles from model directories', () => {
    expect(parseModelPath('/models/tiny')).toEqual({ kind: 'dir', dir: '/models/tiny' });
    expect(parseModelPath('sim:/x/p.json')).toEqual({ kind: 'sim', profilePath: '/x/p.json' });
    expect(parseModelPath('sim:rel/p.json')).toEqual({ kind: 'sim', profilePath: resolve('rel/p.json') });
    expect(parseModelPath('sim:small-h100')).toEqual({
      kind: 'sim',
      profilePath: join(BUILTIN_PROFILE_DIR, 'small-h100.json'),
    });
    expect(() => parseModelPath('sim:')).toThrow(InvalidProfileError);
  });
});
