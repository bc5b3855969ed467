import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelInfo } from '../contract.js';
import { COST_TERMS, type CostModel } from './cost.js';
import { InvalidProfileError } from './errors.js';

/** The `format` string of every profile this code reads and writes. */
export const SIM_PROFILE_FORMAT = 'tsinfer-sim-profile/1';

/** Model facts of a simulated model: `ModelInfo` plus an optional row limit. */
export interface SimModelFacts extends ModelInfo {
  /** Most rows (prefill chunks + decodes) one pass may hold; absent: no limit. */
  readonly maxBatch?: number;
}

/** How the simulated model generates. */
export interface SimGeneration {
  /** Probability that a sampled token is an EOS token (0: never). Drawn per token, deterministically per request. */
  readonly eosProbability: number;
}

/** A simulated model: what the `sim:` runner reports and how long its passes take. */
export interface SimProfile {
  readonly format: typeof SIM_PROFILE_FORMAT;
  /** Where the numbers come from, in words (calibrated where and when, or estimated from what). */
  readonly source: string;
  readonly model: SimModelFacts;
  readonly cost: CostModel;
  readonly generation: SimGeneration;
  /** Free-form facts about the calibration run that produced `cost` (device, date, R², ...). */
  readonly calibration?: Readonly<Record<string, unknown>>;
}

/** What `--model-path` names. */
export type ModelPath =
  | { readonly kind: 'sim'; readonly profilePath: string }
  | { readonly kind: 'dir'; readonly dir: string };

/** The folder of the profiles committed with the package (`packages/runtime/profiles`). */
export const BUILTIN_PROFILE_DIR = fileURLToPath(new URL('../../profiles/', import.meta.url));

/**
 * Parses a `--model-path` value: `sim:<profile.json>` is a simulated model
 * (a bare name such as `sim:small-h100` is a profile committed under
 * `packages/runtime/profiles/`); anything else is a model directory.
 */
export function parseModelPath(modelPath: string): ModelPath {
  if (modelPath.startsWith('sim:')) {
    const rest = modelPath.slice(4);
    if (rest.length === 0)
      throw new InvalidProfileError(modelPath, '', 'sim: needs a profile path, e.g. sim:profile.json');
    if (/^[A-Za-z0-9_.-]+$/.test(rest) && !rest.endsWith('.json')) {
      return { kind: 'sim', profilePath: resolve(BUILTIN_PROFILE_DIR, `${rest}.json`) };
    }
    return { kind: 'sim', profilePath: isAbsolute(rest) ? rest : resolve(rest) };
  }
  return { kind: 'dir', dir: modelPath };
}

/** Reads and validates a profile file. Every problem is an `InvalidProfileError` naming the file and field. */
export async function loadSimProfile(path: string): Promise<SimProfile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new InvalidProfileError(path, '', `cannot read profile: ${(cause as Error).message}`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new InvalidProfileError(path, '', `not valid JSON: ${(cause as Error).message}`, { cause });
  }
  return validateSimProfile(json, path);
}

/** A profile as JSON text (stable key order, 2-space indent, trailing newline). */
export function serializeSimProfile(profile: SimProfile): string {
  const ordered = {
    format: profile.format,
    source: profile.source,
    model: profile.model,
    cost: Object.fromEntries(COST_TERMS.map((t) => [t, profile.cost[t]])),
    generation: profile.generation,
    ...(profile.calibration ? { calibration: profile.calibration } : {}),
  };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

type Obj = Record<string, unknown>;

function describe(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : v === undefined ? 'nothing' : String(JSON.stringify(v));
}

/**
 * Validates a parsed profile. `file` names the source in errors. Optional
 * fields get their defaults (cost terms 0, eosProbability 0); unknown fields
 * are errors so that a misspelt coefficient cannot silently be 0.
 */
export function validateSimProfile(json: unknown, file = '<profile>'): SimProfile {
  const fail = (field: string, msg: string): never => {
    throw new InvalidProfileError(file, field, msg);
  };
  const obj = (v: unknown, field: string): Obj =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Obj)
      : fail(field, `must be an object, got ${describe(v)}`);
  const onlyKeys = (o: Obj, field: string, allowed: readonly string[]): void => {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k))
        fail(field ? `${field}.${k}` : k, `unknown field (allowed: ${allowed.join(', ')})`);
    }
  };
  const int = (v: unknown, field: string, min: number): number =>
    typeof v === 'number' && Number.isSafeInteger(v) && v >= min
      ? v
      : fail(field, `must be an integer >= ${min}, got ${describe(v)}`);
  const nonNeg = (v: unknown, field: string): number =>
    typeof v === 'number' && Number.isFinite(v) && v >= 0
      ? v
      : fail(field, `must be a finite number >= 0, got ${describe(v)}`);

  const root = obj(json, '');
  onlyKeys(root, '', ['format', 'source', 'model', 'cost', 'generation', 'calibration']);
  if (root['format'] !== SIM_PROFILE_FORMAT)
    fail('format', `must be "${SIM_PROFILE_FORMAT}", got ${describe(root['format'])}`);
  const source = root['source'];
  if (typeof source !== 'string' || source.trim() === '')
    fail('source', `must be a non-empty string saying where the numbers come from, got ${describe(source)}`);

  const m = obj(root['model'], 'model');
  onlyKeys(m, 'model', ['name', 'vocabSize', 'contextLength', 'eosTokenIds', 'kvCapacityTokens', 'maxBatch']);
  const name = m['name'];
  if (typeof name !== 'string' || name === '')
    fail('model.name', `must be a non-empty string, got ${describe(name)}`);
  const vocabSize = int(m['vocabSize'], 'model.vocabSize', 2);
  const contextLength = int(m['contextLength'], 'model.contextLength', 1);
  const kvCapacityTokens = int(m['kvCapacityTokens'], 'model.kvCapacityTokens', 1);
  const eosRaw = m['eosTokenIds'];
  if (!Array.isArray(eosRaw))
    fail('model.eosTokenIds', `must be an array of token ids, got ${describe(eosRaw)}`);
  const eosTokenIds = (eosRaw as unknown[]).map((v, i) => {
    const id = int(v, `model.eosTokenIds[${i}]`, 0);
    if (id >= vocabSize)
      fail(`model.eosTokenIds[${i}]`, `must be < model.vocabSize (${vocabSize}), got ${id}`);
    return id;
  });
  if (new Set(eosTokenIds).size >= vocabSize)
    fail('model.eosTokenIds', 'must leave at least one non-EOS token');
  const maxBatch = m['maxBatch'] === undefined ? undefined : int(m['maxBatch'], 'model.maxBatch', 1);

  const c = obj(root['cost'], 'cost');
  onlyKeys(c, 'cost', COST_TERMS);
  const cost = Object.fromEntries(
    COST_TERMS.map((t) => [t, c[t] === undefined ? 0 : nonNeg(c[t], `cost.${t}`)]),
  ) as unknown as CostModel;

  const g = root['generation'] === undefined ? {} : obj(root['generation'], 'generation');
  onlyKeys(g, 'generation', ['eosProbability']);
  const eosProbability =
    g['eosProbability'] === undefined ? 0 : nonNeg(g['eosProbability'], 'generation.eosProbability');
  if (eosProbability > 1) fail('generation.eosProbability', `must be in [0, 1], got ${eosProbability}`);
  if (eosProbability > 0 && eosTokenIds.length === 0) {
    fail('generation.eosProbability', 'is > 0 but model.eosTokenIds is empty');
  }

  const calibration = root['calibration'] === undefined ? undefined : obj(root['calibration'], 'calibration');

  return {
    format: SIM_PROFILE_FORMAT,
    source: source as string,
    model: {
      name: name as string,
      vocabSize,
      contextLength,
      eosTokenIds,
      kvCapacityTokens,
      ...(maxBatch !== undefined ? { maxBatch } : {}),
    },
    cost,
    generation: { eosProbability },
    ...(calibration ? { calibration } : {}),
  };
}
