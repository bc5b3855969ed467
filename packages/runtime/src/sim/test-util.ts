import { DEFAULT_SAMPLING, type SamplingParams } from '../contract.js';
import { SIM_PROFILE_FORMAT, type SimProfile } from './profile.js';

/** Greedy sampling with overrides, for tests. */
export function sampling(over: Partial<SamplingParams> = {}): SamplingParams {
  return {
    ...DEFAULT_SAMPLING,
    ...over,
  };
}

/** A small profile with every cost term non-zero, for tests. */
export function testProfile(
  over: { model?: Partial<SimProfile['model']>; eosProbability?: number } = {},
): SimProfile {
  return {
    format: SIM_PROFILE_FORMAT,
    source: 'test profile',
    model: {
      name: 'sim-test',
      vocabSize: 1000,
      contextLength: 4096,
      eosTokenIds: [2],
      kvCapacityTokens: 200_000,
      ...over.model,
    },
    cost: {
      fixedMs: 0.4,
      prefillFixedMs: 1.5,
      decodeFixedMs: 2,
      perPrefillRequestMs: 0.3,
      perPrefillTokenMs: 0.01,
      perPrefillAttentionPairMs: 2e-6,
      perDecodeRequestMs: 0.05,
      perKvTokenReadMs: 1e-4,
    },
    generation: { eosProbability: over.eosProbability ?? 0 },
  };
}
