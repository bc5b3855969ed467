/**
 * Model shapes the builder knows by name. Every preset is a Llama-style
 * decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU, untied LM head).
 */
import { InvalidConfigError } from '@tsinfer/core';

export interface ModelShape {
  /** Hidden size (embedding width). */
  hiddenSize: number;
  /** SwiGLU inner size. */
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  /** Per-head size; hiddenSize need not equal numHeads × headDim. */
  headDim: number;
  /**
   * Minimum vocabulary size. The model's vocab is max(this, the tokenizer's
   * vocab); when no tokenizer is written it is exactly this.
   */
  vocabSize: number;
  /** Vocabulary size the tokenizer is trained to (default: the tokenizer's default, 2048). */
  tokenizerVocabSize?: number;
  /** Rows of the rotary cos/sin caches = the longest sequence the model takes. */
  contextLength: number;
  ropeTheta: number;
  rmsNormEps: number;
  /**
   * Standard deviation of the logits of a random model for a unit-RMS final
   * hidden state: the LM head's std is `logitStd / sqrt(hiddenSize)`. Large
   * enough that the top logits rarely tie (fp16 noise is ~1e-2).
   */
  logitStd: number;
}

export type PresetName = 'tiny' | 'small' | 'medium';

export const PRESETS: Readonly<Record<PresetName, Readonly<ModelShape>>> = {
  tiny: {
    hiddenSize: 128,
    intermediateSize: 384,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 32,
    vocabSize: 2048,
    contextLength: 2048,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
    logitStd: 4,
  },
  small: {
    hiddenSize: 768,
    intermediateSize: 2048,
    numLayers: 12,
    numHeads: 12,
    numKvHeads: 4,
    headDim: 64,
    vocabSize: 32000,
    contextLength: 4096,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
    logitStd: 4,
  },
  medium: {
    hiddenSize: 2048,
    intermediateSize: 5632,
    numLayers: 16,
    numHeads: 16,
    numKvHeads: 4,
    headDim: 128,
    vocabSize: 32000,
    contextLength: 4096,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
    logitStd: 4,
  },
};

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(PRESETS, name);
}

/** Resolves a preset name or validates a custom shape. */
export function resolveShape(preset: PresetName | ModelShape): ModelShape {
  if (typeof preset === 'string') {
    if (!isPresetName(preset)) {
      throw new InvalidConfigError(
        '--preset',
        `unknown preset ${JSON.stringify(preset)}; one of ${Object.keys(PRESETS).join(', ')}`,
      );
    }
    return { ...PRESETS[preset] };
  }
  const s = { ...preset };
  const positive: (keyof ModelShape)[] = [
    'hiddenSize',
    'intermediateSize',
    'numLayers',
    'numHeads',
    'numKvHeads',
    'headDim',
    'vocabSize',
    'contextLength',
  ];
  for (const k of positive) {
    const v = s[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new InvalidConfigError(`preset.${k}`, `must be a positive integer, got ${v}`);
  }
  if (s.numHeads % s.numKvHeads !== 0) {
    throw new InvalidConfigError(
      'preset.numKvHeads',
      `must divide numHeads (${s.numHeads}), got ${s.numKvHeads}`,
    );
  }
  if (s.headDim % 2 !== 0)
    throw new InvalidConfigError('preset.headDim', `must be even (rotary halves), got ${s.headDim}`);
  if (!(s.ropeTheta > 1)) throw new InvalidConfigError('preset.ropeTheta', `must be > 1, got ${s.ropeTheta}`);
  if (!(s.rmsNormEps > 0))
    throw new InvalidConfigError('preset.rmsNormEps', `must be > 0, got ${s.rmsNormEps}`);
  if (!(s.logitStd > 0)) throw new InvalidConfigError('preset.logitStd', `must be > 0, got ${s.logitStd}`);
  return s;
}

/** Parameter count of a shape with vocabulary `vocab` (rotary caches not counted). */
export function parameterCount(s: ModelShape, vocab: number): number {
  const q = s.numHeads * s.headDim;
  const kv = s.numKvHeads * s.headDim;
  const perLayer =
    2 * s.hiddenSize + s.hiddenSize * (q + 2 * kv) + q * s.hiddenSize + 3 * s.hiddenSize * s.intermediateSize;
  return 2 * vocab * s.hiddenSize + s.numLayers * perLayer + s.hiddenSize;
}
