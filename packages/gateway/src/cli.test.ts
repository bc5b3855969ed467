import { readFileSync } from 'node:fs';
import { InvalidConfigError } from '@tsinfer/core';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { configFromFlags, GATEWAY_FLAGS, registerGateway, startGateway } from './cli.js';
import { DEFAULTS, resolveConfig } from './config.js';

function parse(argv: string[]): Record<string, unknown> {
  const program = new Command('tsinfer').exitOverride();
  const cmd = registerGateway(program);
  let opts: Record<string, unknown> = {};
  cmd.action((o: Record<string, unknown>) => {
    opts = o;
  });
  program.parse(['node', 'tsinfer', 'gateway', ...argv]);
  return opts;
}

describe('tsinfer gateway flags', () => {
  it('parse into a config: seconds to ms, switches, worker list', () => {
    const c = resolveConfig(
      configFromFlags(
        parse([
          '--worker-urls',
          'http://a:1',
          'b:2/',
          '--port',
          '30090',
          '--policy',
          'power_of_two',
          '--dp-minimum-tokens-scheduler',
          '--worker-load-check-interval',
          '0.5',
          '--cb-timeout-duration-secs',
          '2',
          '--retry-max-retries',
          '0',
          '--disable-circuit-breaker',
          '--worker-load-source',
          'loads',
        ]),
      ),
    );
    expect(c.workerUrls).toEqual(['http://a:1', 'http://b:2']);
    expect(c.port).toBe(30090);
    expect(c.policy).toBe('power_of_two');
    expect(c.dpMinimumTokensScheduler).toBe(true);
    expect(c.load).toEqual({ ...DEFAULTS.load, intervalMs: 500, source: 'loads' });
    expect(c.circuitBreaker.timeoutMs).toBe(2000);
    expect(c.circuitBreaker.enabled).toBe(false);
    expect(c.retry.maxRetries).toBe(0);
  });

  it('no flags: exactly DEFAULTS', () => {
    expect(resolveConfig(configFromFlags(parse([])))).toEqual(resolveConfig({}));
  });

  it('a long poll interval alone stretches the stale limit to 3 intervals', () => {
    const c = resolveConfig(configFromFlags(parse(['--worker-load-check-interval', '10'])));
    expect(c.load.staleAfterMs).toBe(30_000);
  });

  it('invalid values name the flag', () => {
    expect(() => resolveConfig(configFromFlags(parse(['--port', 'x'])))).toThrow(InvalidConfigError);
    expect(() => resolveConfig(configFromFlags(parse(['--retry-jitter-factor', '2'])))).toThrow(
      /--retry-jitter-factor/,
    );
    expect(() => resolveConfig(configFromFlags(parse(['--worker-urls', 'ftp://x'])))).toThrow(
      /--worker-urls/,
    );
    expect(() =>
      resolveConfig(
        configFromFlags(parse(['--worker-load-check-interval', '2', '--worker-load-stale-after', '1'])),
      ),
    ).toThrow(/--worker-load-stale-after/);
    expect(() => parse(['--policy', 'nope'])).toThrow();
  });

  it('startGateway listens with the parsed flags and answers /health', async () => {
    const { app, url } = await startGateway(
      parse(['--port', '0', '--log-level', 'silent', '--policy', 'random']),
    );
    try {
      expect(app.gateway.config.policy).toBe('random');
      const res = await fetch(`${url}/health`);
      expect(res.status).toBe(503); // no workers
      expect(await res.json()).toEqual({ status: 'unhealthy', workers: 0, available_workers: 0 });
    } finally {
      await app.close();
    }
  });

  it('docs/gateway.md lists every flag with the default in DEFAULTS', () => {
    const doc = readFileSync(new URL('../../../docs/gateway.md', import.meta.url), 'utf8');
    for (const f of GATEWAY_FLAGS) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`--${f.name}`));
      expect(row, `--${f.name} missing from docs/gateway.md`).toBeDefined();
      expect(row!.split('|')[2]!.trim()).toBe(f.default);
    }
  });
});
