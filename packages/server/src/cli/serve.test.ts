/**
 * `tsinfer serve` as a real process: the built-in tiny model when no
 * --model-path is given, and the SIGTERM drain (in-flight streams finish,
 * the port closes, exit status 0).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUILTIN_PROFILE_DIR } from '@tsinfer/runtime';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureTinyModel } from './serve.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

function serve(args: string[]): {
  child: ChildProcess;
  url: Promise<string>;
  stderr: () => string;
  exit: Promise<number | null>;
} {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--conditions=@tsinfer/source', MAIN, 'serve', ...args],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let err = '';
  child.stdout?.resume();
  const url = new Promise<string>((resolve, reject) => {
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
      const m = / on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`serve exited (${code}) before listening:\n${err}`)));
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, url, stderr: () => err, exit };
}

describe('ensureTinyModel', () => {
  it('builds the tiny model once into the cache directory and reuses it', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'tsinfer-cache-'));
    const dir = await ensureTinyModel(cache, 3);
    expect(dir).toBe(join(cache, 'tiny-3'));
    expect(existsSync(join(dir, 'model.onnx'))).toBe(true);
    const mtime = statSync(join(dir, 'model.onnx')).mtimeMs;
    expect(await ensureTinyModel(cache, 3)).toBe(dir);
    expect(statSync(join(dir, 'model.onnx')).mtimeMs).toBe(mtime);
  });
});

describe('tsinfer serve (a real process)', () => {
  it('serves the built-in tiny model with no --model-path, prints the URL and a curl line, exits 0 on SIGTERM', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'tsinfer-cache-'));
    const s = serve([
      '--port',
      '0',
      '--model-cache-dir',
      cache,
      '--log-level',
      'silent',
      '--intra-op-threads',
      '1',
    ]);
    const url = await s.url;
    expect(s.stderr()).toContain('try: curl ');
    expect(existsSync(join(cache, 'tiny-0', 'model.onnx'))).toBe(true);
    const models = (await (await fetch(`${url}/v1/models`)).json()) as {
      data: Array<{ id: string; root: string }>;
    };
    expect(models.data[0]!.root).toBe(join(cache, 'tiny-0'));
    expect(models.data[0]!.id).toBe('tiny'); // the README's curl example names it
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    s.child.kill('SIGTERM');
    expect(await s.exit).toBe(0);
  }, 60_000);

  it('drains on SIGTERM: the in-flight stream finishes, the port closes, exit 0', async () => {
    const p = JSON.parse(readFileSync(join(BUILTIN_PROFILE_DIR, 'tiny-cpu.json'), 'utf8'));
    p.cost.decodeFixedMs = 15;
    const profile = join(mkdtempSync(join(tmpdir(), 'tsinfer-slow-')), 'slow.json');
    writeFileSync(profile, JSON.stringify(p));
    const s = serve([
      '--model-path',
      `sim:${profile}`,
      '--port',
      '0',
      '--log-level',
      'silent',
      '--shutdown-timeout',
      '20',
    ]);
    const url = await s.url;
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'drain me', max_tokens: 60, stream: true, ignore_eos: true }),
    });
    let body = '';
    let signalled = false;
    const decoder = new TextDecoder();
    for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
      body += decoder.decode(part, { stream: true });
      if (!signalled && body.includes('data: ')) {
        signalled = true;
        s.child.kill('SIGTERM');
        // Give the server a moment to close its listening socket, then check it refuses.
        await new Promise((r) => setTimeout(r, 200));
        const refused = await fetch(`${url}/v1/models`).then(
          (r) => r.status,
          () => 'refused',
        );
        expect([503, 'refused']).toContain(refused);
      }
    }
    expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(body).toContain('"finish_reason":"length"');
    expect(body).toContain('"completion_tokens":60');
    expect(await s.exit).toBe(0);
  }, 60_000);

  it('exits 2 naming the flag for an invalid value or a port in use, leaving no thread behind', async () => {
    const bad = serve(['--model-path', 'sim:tiny-cpu', '--dp-size', '0']);
    bad.url.catch(() => {});
    expect(await bad.exit).toBe(2);
    expect(bad.stderr()).toContain('TSI_ERR_INVALID_CONFIG');
    expect(bad.stderr()).toContain('--dp-size');
    const blocker = createNetServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const busy = serve(['--model-path', 'sim:tiny-cpu', '--port', String(port), '--log-level', 'silent']);
      busy.url.catch(() => {});
      expect(await busy.exit).toBe(2);
      expect(busy.stderr()).toContain('--port');
    } finally {
      blocker.close();
    }
  }, 60_000);
});
