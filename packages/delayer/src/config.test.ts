import { InvalidConfigError } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PREFILL_DELAYER_CONFIG,
  PREFILL_DELAYER_FLAGS,
  parsePrefillDelayerFlags,
  toDecisionConfig,
  validatePrefillDelayerConfig,
} from './config.js';

function rejects(values: Record<string, unknown>, flag: string, range: RegExp): void {
  let err: unknown;
  try {
    parsePrefillDelayerFlags(values);
  } catch (e) {
    err = e;
  }
  expect(err, `${JSON.stringify(values)} should be rejected`).toBeInstanceOf(InvalidConfigError);
  const e = err as InvalidConfigError;
  expect(e.code).toBe('TSI_ERR_INVALID_CONFIG');
  expect(e.flag).toBe(flag);
  expect(e.message.startsWith(`${flag}: `)).toBe(true);
  expect(e.message).toMatch(range);
}

describe('delayer flags: defaults', () => {
  it('an empty flag set gives SGLang defaults and every opt-in off', () => {
    expect(parsePrefillDelayerFlags({})).toEqual({
      enabled: false,
      maxDelayPasses: 30,
      tokenUsageLowWatermark: null,
      queueMinRatio: null,
      maxDelayMs: null,
      forwardPassesBuckets: null,
      waitSecondsBuckets: null,
      capSlotDelay: false,
      maxPrefillBsWindow: 0,
      admissionCap: false,
      prefillMaxRequests: null,
    });
    expect(parsePrefillDelayerFlags({})).toEqual(DEFAULT_PREFILL_DELAYER_CONFIG);
  });

  it('the flag table covers every config field once, with its default', () => {
    const keys = PREFILL_DELAYER_FLAGS.map((f) => f.key).sort();
    expect(keys).toEqual(Object.keys(DEFAULT_PREFILL_DELAYER_CONFIG).sort());
    for (const f of PREFILL_DELAYER_FLAGS) {
      expect(f.flag).toBe(`--${f.name}`);
      expect(f.default).toEqual(DEFAULT_PREFILL_DELAYER_CONFIG[f.key]);
      expect(f.help.length).toBeGreaterThan(20);
    }
    expect(PREFILL_DELAYER_FLAGS.map((f) => f.flag)).toEqual([
      '--enable-prefill-delayer',
      '--prefill-delayer-max-delay-passes',
      '--prefill-delayer-token-usage-low-watermark',
      '--prefill-delayer-queue-min-ratio',
      '--prefill-delayer-max-delay-ms',
      '--prefill-delayer-forward-passes-buckets',
      '--prefill-delayer-wait-seconds-buckets',
      '--prefill-delayer-cap-slot-delay',
      '--prefill-delayer-max-prefill-bs-window',
      '--prefill-delayer-admission-cap',
      '--prefill-max-requests',
    ]);
  });
});

describe('delayer flags: parsing CLI strings', () => {
  it('parses every flag from strings (parseArgs keys) and ignores other flags', () => {
    const c = parsePrefillDelayerFlags({
      'enable-prefill-delayer': true,
      'prefill-delayer-max-delay-passes': '12',
      'prefill-delayer-token-usage-low-watermark': '0.3',
      'prefill-delayer-queue-min-ratio': '0',
      'prefill-delayer-max-delay-ms': '2500.5',
      'prefill-delayer-forward-passes-buckets': '1, 2,3',
      'prefill-delayer-wait-seconds-buckets': ['0.5', 4],
      'prefill-delayer-cap-slot-delay': 'true',
      'prefill-delayer-max-prefill-bs-window': '16',
      'prefill-delayer-admission-cap': '1',
      'prefill-max-requests': '8',
      'dp-size': '4',
      'model-path': 'x',
    });
    expect(c).toEqual({
      enabled: true,
      maxDelayPasses: 12,
      tokenUsageLowWatermark: 0.3,
      queueMinRatio: 0,
      maxDelayMs: 2500.5,
      forwardPassesBuckets: [1, 2, 3],
      waitSecondsBuckets: [0.5, 4],
      capSlotDelay: true,
      maxPrefillBsWindow: 16,
      admissionCap: true,
      prefillMaxRequests: 8,
    });
  });

  it('accepts range ends: passes 1, ratios and watermark 0 and 1, delay 0, window 0, bucket 0', () => {
    const c = parsePrefillDelayerFlags({
      'prefill-delayer-max-delay-passes': 1,
      'prefill-delayer-token-usage-low-watermark': 1,
      'prefill-delayer-queue-min-ratio': '1',
      'prefill-delayer-max-delay-ms': 0,
      'prefill-delayer-max-prefill-bs-window': 0,
      'prefill-delayer-wait-seconds-buckets': '0',
    });
    expect(c).toMatchObject({
      maxDelayPasses: 1,
      tokenUsageLowWatermark: 1,
      queueMinRatio: 1,
      maxDelayMs: 0,
      maxPrefillBsWindow: 0,
      waitSecondsBuckets: [0],
    });
  });
});

describe('delayer flags: rejected values name the flag and the accepted range', () => {
  const passes = '--prefill-delayer-max-delay-passes';
  it.each([['0'], ['-3'], ['2.5'], ['abc'], [''], ['NaN'], [Number.NaN], [Number.POSITIVE_INFINITY], [true]])(
    `${passes} %s`,
    (v) => rejects({ 'prefill-delayer-max-delay-passes': v }, passes, /an integer >= 1; got/),
  );

  it.each([
    ['prefill-delayer-queue-min-ratio', '1.01'],
    ['prefill-delayer-queue-min-ratio', '-0.1'],
    ['prefill-delayer-queue-min-ratio', 'NaN'],
    ['prefill-delayer-token-usage-low-watermark', 2],
    ['prefill-delayer-token-usage-low-watermark', '-1'],
  ])('--%s %s', (name, v) => rejects({ [name]: v }, `--${name}`, /a number in \[0, 1\], or unset; got/));

  it.each([['-1'], ['Infinity'], ['x'], [Number.NaN]])('--prefill-delayer-max-delay-ms %s', (v) =>
    rejects(
      { 'prefill-delayer-max-delay-ms': v },
      '--prefill-delayer-max-delay-ms',
      /a finite number >= 0, or unset \(5000\); got/,
    ),
  );

  it.each([['1,-2'], ['1,x'], [[]], [''], [[1, Number.NaN]], [[Number.POSITIVE_INFINITY]], [5]])(
    '--prefill-delayer-forward-passes-buckets %j',
    (v) =>
      rejects(
        { 'prefill-delayer-forward-passes-buckets': v },
        '--prefill-delayer-forward-passes-buckets',
        /a non-empty list of finite numbers >= 0, or unset; got/,
      ),
  );

  it('rejects a bad wait-seconds list too', () =>
    rejects(
      { 'prefill-delayer-wait-seconds-buckets': '-1' },
      '--prefill-delayer-wait-seconds-buckets',
      /non-empty list/,
    ));

  it.each([['-1'], ['1.5'], ['4097']])('--prefill-delayer-max-prefill-bs-window %s', (v) =>
    rejects(
      { 'prefill-delayer-max-prefill-bs-window': v },
      '--prefill-delayer-max-prefill-bs-window',
      /an integer in \[0, 4096\]; got/,
    ),
  );

  it.each([['0'], ['2.5']])('--prefill-max-requests %s', (v) =>
    rejects({ 'prefill-max-requests': v }, '--prefill-max-requests', /an integer >= 1, or unset; got/),
  );

  it.each([['yes'], [1], ['']])('--enable-prefill-delayer %j', (v) =>
    rejects({ 'enable-prefill-delayer': v }, '--enable-prefill-delayer', /true or false; got/),
  );

  it('shows the offending value in the message', () => {
    expect(() => parsePrefillDelayerFlags({ 'prefill-delayer-queue-min-ratio': '1.5' })).toThrow(
      '--prefill-delayer-queue-min-ratio: must be a number in [0, 1], or unset; got "1.5"',
    );
  });
});

describe('validatePrefillDelayerConfig / toDecisionConfig', () => {
  it('fills defaults and checks typed fields like the flags', () => {
    expect(validatePrefillDelayerConfig({ queueMinRatio: 0.25 })).toMatchObject({
      maxDelayPasses: 30,
      queueMinRatio: 0.25,
    });
    expect(() => validatePrefillDelayerConfig({ maxDelayPasses: 0 })).toThrow(
      /--prefill-delayer-max-delay-passes: must be an integer >= 1/,
    );
    expect(() => validatePrefillDelayerConfig({ maxDelayPasses: null as unknown as number })).toThrow(
      InvalidConfigError,
    );
    expect(() => validatePrefillDelayerConfig({ queueMinRatio: -0.5 })).toThrow(/queue-min-ratio/);
  });

  it('maps the admission cap to the decision only when both flags are set', () => {
    const par = { dpSize: 2, enableDpAttention: true };
    const d = (c: Parameters<typeof validatePrefillDelayerConfig>[0]) =>
      toDecisionConfig(validatePrefillDelayerConfig(c), par);
    expect(d({}).admissionCap).toBeNull();
    expect(d({ prefillMaxRequests: 8 }).admissionCap).toBeNull();
    expect(d({ admissionCap: true }).admissionCap).toBeNull();
    expect(d({ admissionCap: true, prefillMaxRequests: 8 }).admissionCap).toBe(8);
    expect(d({ capSlotDelay: true })).toMatchObject({
      capSlotDelay: true,
      dpSize: 2,
      enableDpAttention: true,
    });
    expect(() =>
      toDecisionConfig(validatePrefillDelayerConfig({}), { dpSize: 0, enableDpAttention: true }),
    ).toThrow(/--dp-size: must be an integer >= 1/);
  });
});
