/**
 * Real `tsinfer serve` instances as child processes (the simulated runner,
 * `--model-path sim:tiny-cpu`), run from the server's TypeScript sources
 * through tsx so that no build is needed and no stale build is used.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface ServeInstance {
  readonly url: string;
  readonly port: number;
  readonly args: readonly string[];
  proc: ChildProcess;
  log: string;
  /** SIGKILL (no drain): open connections are reset. */
  kill(): Promise<void>;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
}

async function waitHealthy(
  url: string,
  proc: ChildProcess,
  timeoutMs: number,
  log: () => string,
): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (proc.exitCode !== null) throw new Error(`tsinfer serve exited with ${proc.exitCode}:\n${log()}`);
    try {
      const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`tsinfer serve at ${url} not healthy after ${timeoutMs} ms:\n${log()}`);
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((r) => proc.once('exit', () => r()));
}

/** Starts `tsinfer serve --model-path sim:tiny-cpu --port <port> ...extra` and waits for /health. */
export async function startServe(extra: readonly string[] = [], port?: number): Promise<ServeInstance> {
  const p = port ?? (await freePort());
  const args = [
    'serve',
    '--model-path',
    'sim:tiny-cpu',
    '--port',
    String(p),
    '--log-level',
    'warn',
    ...extra,
  ];
  const spawnOne = (): ChildProcess =>
    spawn(
      process.execPath,
      ['--import', 'tsx', '--conditions=@tsinfer/source', 'packages/server/src/cli/main.ts', ...args],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
  const inst: ServeInstance = {
    url: `http://127.0.0.1:${p}`,
    port: p,
    args,
    proc: spawnOne(),
    log: '',
    async kill() {
      inst.proc.kill('SIGKILL');
      await exited(inst.proc);
    },
    async stop() {
      inst.proc.kill('SIGTERM');
      await exited(inst.proc);
    },
  };
  const capture = (d: Buffer): void => {
    inst.log = (inst.log + d.toString()).slice(-4000);
  };
  inst.proc.stdout?.on('data', capture);
  inst.proc.stderr?.on('data', capture);
  await waitHealthy(inst.url, inst.proc, 60_000, () => inst.log);
  return inst;
}

/** Starts a killed instance again on the same port. */
export async function restartServe(inst: ServeInstance): Promise<ServeInstance> {
  return startServe(inst.args.slice(inst.args.indexOf('--log-level') + 2), inst.port);
}
