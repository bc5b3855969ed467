import { readFileSync } from 'node:fs';
import { InvalidConfigError } from '@tsinfer/core';
import { PREFILL_DELAYER_FLAGS } from '@tsinfer/delayer';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SCHEDULER_CONFIG,
  parseSchedulerFlags,
  rankLimits,
  resolveSchedulerConfig,
  SCHEDULER_FLAGS,
} from './config.js';

function flagOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidConfigError);
    expect((err as InvalidConfigError).code).toBe('TSI_ERR_INVALID_CONFIG');
    return (err as InvalidConfigError).flag;
  }
  throw new Error('did not throw');
}

describe('scheduler config and flags', () => {
  it("has SGLang's names and defaults", () => {
    const c = DEFAULT_SCHEDULER_CONFIG;
    expect(c.maxPrefillTokens).toBe(16384);
    expect(c.chunkedPrefillSize).toBe(8192);
    expect(c.maxRunningRequests).toBeNull();
    expect(c.prefillMaxRequests).toBeNull();
    expect(c.schedulePolicy).toBe('fcfs');
    expect(c.scheduleConservativeness).toBe(1);
    expect(c.initNewTokenRatio).toBe(0.7);
    expect(c.minNewTokenRatio).toBeNull();
    expect(c.minNewTokenRatioFactor).toBe(0.14);
    expect(c.newTokenRatioDecaySteps).toBe(600);
    expect(c.retractDecodeSteps).toBe(20);
    expect(c.clipMaxNewTokensEstimation).toBe(4096);
    expect(c.enableDpAttention).toBe(false);
    expect(c.dpSize).toBe(1);
    expect(c.delayer.enabled).toBe(false);
    for (const d of SCHEDULER_FLAGS) {
      expect(d.flag).toBe(`--${d.name}`);
      expect(d.name).toMatch(/^[a-z]+(-[a-z]+)*$/);
      expect(d.help.length).toBeGreaterThan(20);
    }
    // no flag is defined in both tables
    const delayerNames = new Set(PREFILL_DELAYER_FLAGS.map((d) => d.name));
    for (const d of SCHEDULER_FLAGS) expect(delayerNames.has(d.name), d.name).toBe(false);
  });

  it('documents every flag in docs/scheduling.md with its default', () => {
    const doc = readFileSync(new URL('../../../docs/scheduling.md', import.meta.url), 'utf8');
    for (const d of SCHEDULER_FLAGS) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`${d.flag}\` |`));
      expect(row, d.flag).toBeDefined();
      expect(row!.split('|')[2]!.trim(), d.flag).toBe(d.default === null ? 'unset' : String(d.default));
    }
  });

  it('parses CLI strings from both tables; -1 disables chunked prefill', () => {
    const c = parseSchedulerFlags({
      'max-prefill-tokens': '4096',
      'chunked-prefill-size': '-1',
      'max-running-requests': '64',
      'prefill-max-requests': '8',
      'schedule-policy': 'lpm',
      'enable-dp-attention': 'true',
      'dp-size': '4',
      'enable-prefill-delayer': 'true',
      'prefill-delayer-queue-min-ratio': '0.25',
      'unrelated-flag': 'x',
    });
    expect(c).toMatchObject({
      maxPrefillTokens: 4096,
      chunkedPrefillSize: null,
      maxRunningRequests: 64,
      prefillMaxRequests: 8,
      schedulePolicy: 'lpm',
      enableDpAttention: true,
      dpSize: 4,
    });
    expect(c.delayer).toMatchObject({ enabled: true, queueMinRatio: 0.25, prefillMaxRequests: 8 });
  });

  it('rejects out-of-range values with InvalidConfigError naming the flag', () => {
    expect(flagOf(() => resolveSchedulerConfig({ maxPrefillTokens: 0 }))).toBe('--max-prefill-tokens');
    expect(flagOf(() => parseSchedulerFlags({ 'chunked-prefill-size': '0' }))).toBe('--chunked-prefill-size');
    expect(flagOf(() => parseSchedulerFlags({ 'chunked-prefill-size': '-2' }))).toBe(
      '--chunked-prefill-size',
    );
    expect(flagOf(() => parseSchedulerFlags({ 'max-running-requests': '1.5' }))).toBe(
      '--max-running-requests',
    );
    expect(flagOf(() => parseSchedulerFlags({ 'schedule-policy': 'lifo' }))).toBe('--schedule-policy');
    expect(flagOf(() => parseSchedulerFlags({ 'init-new-token-ratio': '1.2' }))).toBe(
      '--init-new-token-ratio',
    );
    expect(flagOf(() => parseSchedulerFlags({ 'new-token-ratio-decay-steps': '0' }))).toBe(
      '--new-token-ratio-decay-steps',
    );
    expect(flagOf(() => parseSchedulerFlags({ 'enable-dp-attention': 'yes' }))).toBe('--enable-dp-attention');
    expect(flagOf(() => parseSchedulerFlags({ 'dp-size': '0' }))).toBe('--dp-size');
    expect(flagOf(() => parseSchedulerFlags({ 'prefill-max-requests': '0' }))).toBe('--prefill-max-requests');
    expect(flagOf(() => resolveSchedulerConfig({ minNewTokenRatio: 0.8 }))).toBe('--min-new-token-ratio');
    expect(flagOf(() => resolveSchedulerConfig({ maxTotalTokens: 1 }))).toBe('--max-total-tokens');
    const err = (() => {
      try {
        parseSchedulerFlags({ 'max-prefill-tokens': 'lots' });
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    expect(err?.message).toBe('--max-prefill-tokens: must be an integer >= 1; got "lots"');
  });

  it('derives per-rank limits: capacity / 2 by default, max-running-requests / dp-size under DP attention', () => {
    expect(rankLimits(resolveSchedulerConfig(), 1000)).toEqual({ kvCapacity: 1000, maxRunningRequests: 500 });
    expect(rankLimits(resolveSchedulerConfig({ maxTotalTokens: 600 }), 1000).kvCapacity).toBe(600);
    const dpa = resolveSchedulerConfig({ maxRunningRequests: 100, enableDpAttention: true, dpSize: 4 });
    expect(rankLimits(dpa, 10_000).maxRunningRequests).toBe(25);
    const noDpa = resolveSchedulerConfig({ maxRunningRequests: 100, dpSize: 4 });
    expect(rankLimits(noDpa, 10_000).maxRunningRequests).toBe(100);
    expect(rankLimits(noDpa, 10_000, 32).maxRunningRequests).toBe(32);
    expect(
      flagOf(() =>
        rankLimits(
          resolveSchedulerConfig({ maxRunningRequests: 3, enableDpAttention: true, dpSize: 4 }),
          100,
        ),
      ),
    ).toBe('--max-running-requests');
  });
});
