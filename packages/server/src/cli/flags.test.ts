import { readFileSync } from 'node:fs';
import { TsinferError } from '@tsinfer/core';
import { PREFILL_DELAYER_FLAGS } from '@tsinfer/delayer';
import { LOAD_BALANCE_FLAGS, SCHEDULER_FLAGS } from '@tsinfer/scheduler';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { ENGINE_FLAGS } from '../engine/index.js';
import { addServeOptions, collectFlagValues, parseServeFlags, renderCliDoc, SERVE_FLAGS } from './flags.js';

function parseArgv(argv: string[]) {
  const cmd = addServeOptions(new Command('serve').exitOverride());
  cmd.parse(argv, { from: 'user' });
  return parseServeFlags(collectFlagValues(cmd.opts()));
}

describe('the serve flag registry', () => {
  it('composes every package table once, with unique names', () => {
    const names = SERVE_FLAGS.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);
    for (const table of [SCHEDULER_FLAGS, LOAD_BALANCE_FLAGS, PREFILL_DELAYER_FLAGS, ENGINE_FLAGS]) {
      for (const d of table) expect(names).toContain(d.name);
    }
    for (const n of [
      'host',
      'port',
      'api-key',
      'shutdown-timeout',
      'max-queued-requests',
      'served-model-name',
      'log-level',
    ]) {
      expect(names).toContain(n);
    }
  });

  it('keeps SGLang names and defaults', () => {
    const c = parseArgv([]);
    expect(c.server.port).toBe(30000);
    expect(c.server.host).toBe('127.0.0.1');
    expect(c.engine.modelPath).toBe('');
    expect(c.engine.scheduler?.dpSize).toBe(1);
  });

  it('parses a full command line into typed engine, scheduler, delayer and server options', () => {
    const c = parseArgv([
      '--model-path',
      'sim:tiny-cpu',
      '--port',
      '8080',
      '--dp-size',
      '2',
      '--enable-dp-attention',
      '--enable-prefill-delayer',
      '--prefill-delayer-max-delay-passes',
      '10',
      '--load-balance-method',
      'ROUND_ROBIN',
      '--max-running-requests',
      '64',
      '--chunked-prefill-size',
      '-1',
      '--max-queued-requests',
      '5',
      '--shutdown-timeout',
      '2.5',
      '--api-key',
      'k',
    ]);
    expect(c.server).toMatchObject({ port: 8080, apiKey: 'k', shutdownTimeoutMs: 2500 });
    expect(c.engine.modelPath).toBe('sim:tiny-cpu');
    expect(c.engine.maxQueuedRequests).toBe(5);
    expect(c.engine.scheduler).toMatchObject({
      dpSize: 2,
      enableDpAttention: true,
      maxRunningRequests: 64,
      chunkedPrefillSize: null,
    });
    expect(c.engine.scheduler?.delayer).toMatchObject({ enabled: true, maxDelayPasses: 10 });
    expect(c.engine.loadBalance?.loadBalanceMethod).toBe('ROUND_ROBIN');
  });

  it('rejects invalid values naming the flag', () => {
    const bad: Array<[string[], string]> = [
      [['--port', '70000'], '--port'],
      [['--dp-size', '0'], '--dp-size'],
      [['--prefill-delayer-max-delay-passes', '0'], '--prefill-delayer-max-delay-passes'],
      [['--load-balance-method', 'random'], '--load-balance-method'],
      [['--max-n', '0'], '--max-n'],
      [['--shutdown-timeout', '-1'], '--shutdown-timeout'],
      [['--mem-fraction-static', '2'], '--mem-fraction-static'],
    ];
    for (const [argv, flag] of bad) {
      let err: unknown;
      try {
        parseArgv(argv);
      } catch (e) {
        err = e;
      }
      expect(err, argv.join(' ')).toBeInstanceOf(TsinferError);
      expect((err as TsinferError).code).toBe('TSI_ERR_INVALID_CONFIG');
      expect((err as Error).message).toContain(flag);
    }
  });

  it('docs/cli.md is generated from the registry (run `pnpm docs:cli` when this fails)', () => {
    const doc = readFileSync(new URL('../../../../docs/cli.md', import.meta.url), 'utf8');
    expect(doc).toBe(renderCliDoc());
    for (const f of SERVE_FLAGS) expect(doc).toContain(`\`${f.flag}`);
  });
});
