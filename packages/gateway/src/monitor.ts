/**
 * The gateway's background probes of its workers:
 *
 * - `LoadMonitor`: every `--worker-load-check-interval`, reads each worker's
 *   per-DP-rank used tokens (from `/metrics`, or `/v1/loads`, or `/metrics`
 *   falling back to `/v1/loads` with `auto`). A failed poll never counts as
 *   zero load (F-14): the worker keeps its last value until that value is
 *   older than `--worker-load-stale-after`, and from then on its load is
 *   unknown and it counts as busy.
 * - `HealthChecker`: every `--health-check-interval-secs`, GETs the health
 *   endpoint; `failureThreshold` consecutive failures mark a worker
 *   unhealthy, `successThreshold` consecutive successes mark it healthy
 *   again.
 *
 * Both expose `…Once()` methods that tests call directly; `start()` only
 * adds an unref'ed interval around them.
 */
import type { Clock } from '@tsinfer/core';
import { type Dispatcher, request } from 'undici';
import type { HealthCheckConfig, LoadMonitorConfig } from './config.js';
import { type PolledLoad, parseLoadsJson, parseMetricsLoad } from './load-parse.js';
import type { Worker } from './worker.js';

export interface ProbeDeps {
  readonly clock: Clock;
  readonly dispatcher: Dispatcher;
  /** `Authorization` for the workers, or null. */
  readonly apiKey: string | null;
  readonly workers: () => readonly Worker[];
  readonly log?: (level: 'info' | 'warn', msg: string) => void;
}

async function getText(
  deps: ProbeDeps,
  url: string,
  timeoutMs: number,
): Promise<{ status: number; text: string; contentType: string }> {
  const headers: Record<string, string> = {};
  if (deps.apiKey !== null) headers['authorization'] = `Bearer ${deps.apiKey}`;
  const res = await request(url, {
    method: 'GET',
    headers,
    dispatcher: deps.dispatcher,
    signal: AbortSignal.timeout(timeoutMs),
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const text = await res.body.text();
  const ct = res.headers['content-type'];
  return { status: res.statusCode, text, contentType: Array.isArray(ct) ? (ct[0] ?? '') : (ct ?? '') };
}

function errText(err: unknown): string {
  const e = err as { code?: string; message?: string; name?: string };
  if (e?.code !== undefined) return e.message ? `${e.code}: ${e.message}` : e.code;
  return e?.message ?? String(err);
}

export class LoadMonitor {
  readonly #config: LoadMonitorConfig;
  readonly #deps: ProbeDeps;
  #timer: NodeJS.Timeout | null = null;
  #polling: Promise<void> | null = null;
  /** Completed poll rounds. */
  rounds = 0;

  constructor(config: LoadMonitorConfig, deps: ProbeDeps) {
    this.#config = config;
    this.#deps = deps;
  }

  /** Reads one worker's load; null when no source gave a usable answer. Throws on connection errors. */
  async fetchLoad(worker: Worker): Promise<PolledLoad | null> {
    const src = this.#config.source;
    let metricsStatus: number | null = null;
    if (src === 'metrics' || src === 'auto') {
      const r = await getText(this.#deps, `${worker.url}/metrics`, this.#config.timeoutMs);
      metricsStatus = r.status;
      if (r.status >= 200 && r.status < 300) {
        const load = parseMetricsLoad(r.text);
        if (load !== null || src === 'metrics') return load;
      } else if (src === 'metrics') {
        throw new Error(`GET /metrics answered ${r.status}`);
      }
    }
    const r = await getText(this.#deps, `${worker.url}/v1/loads?include=core`, this.#config.timeoutMs);
    if (r.status < 200 || r.status >= 300) {
      throw new Error(
        `GET /v1/loads answered ${r.status}${metricsStatus !== null ? ` (and /metrics ${metricsStatus})` : ''}`,
      );
    }
    try {
      return parseLoadsJson(JSON.parse(r.text));
    } catch {
      return null;
    }
  }

  /** Polls one worker and stores the result (or the failure). */
  async pollWorker(worker: Worker): Promise<void> {
    try {
      const load = await this.fetchLoad(worker);
      if (load === null) worker.pollFailed('no num_used_tokens in the response');
      else worker.setPolled(load, this.#deps.clock.nowMs());
    } catch (err) {
      worker.pollFailed(errText(err));
    }
  }

  /** One round over every registered worker, concurrently. Rounds never overlap. */
  pollOnce(): Promise<void> {
    this.#polling ??= (async () => {
      try {
        await Promise.all(this.#deps.workers().map((w) => this.pollWorker(w)));
        this.rounds++;
      } finally {
        this.#polling = null;
      }
    })();
    return this.#polling;
  }

  start(): void {
    if (this.#timer !== null) return;
    void this.pollOnce();
    this.#timer = setInterval(() => void this.pollOnce(), this.#config.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#polling;
  }
}

export class HealthChecker {
  readonly #config: HealthCheckConfig;
  readonly #deps: ProbeDeps;
  #timer: NodeJS.Timeout | null = null;
  #checking: Promise<void> | null = null;

  constructor(config: HealthCheckConfig, deps: ProbeDeps) {
    this.#config = config;
    this.#deps = deps;
  }

  /** Applies one probe outcome to a worker's health (the threshold rules). */
  apply(worker: Worker, ok: boolean, error: string | null): void {
    const c = this.#config;
    if (ok) {
      worker.healthFailures = 0;
      worker.healthSuccesses++;
      worker.lastHealthError = null;
      if (!worker.healthy && worker.healthSuccesses >= c.successThreshold) {
        worker.healthy = true;
        worker.healthSuccesses = 0;
        this.#deps.log?.('info', `worker ${worker.url} is healthy again`);
      }
    } else {
      worker.healthSuccesses = 0;
      worker.healthFailures++;
      worker.lastHealthError = error;
      if (worker.healthy && worker.healthFailures >= c.failureThreshold) {
        worker.healthy = false;
        worker.healthFailures = 0;
        this.#deps.log?.('warn', `worker ${worker.url} is unhealthy: ${error ?? 'failed'}`);
      }
    }
  }

  async checkWorker(worker: Worker): Promise<void> {
    try {
      const r = await getText(this.#deps, `${worker.url}${this.#config.endpoint}`, this.#config.timeoutMs);
      const ok = r.status >= 200 && r.status < 300;
      this.apply(worker, ok, ok ? null : `${this.#config.endpoint} answered ${r.status}`);
    } catch (err) {
      this.apply(worker, false, errText(err));
    }
  }

  checkOnce(): Promise<void> {
    this.#checking ??= (async () => {
      try {
        await Promise.all(this.#deps.workers().map((w) => this.checkWorker(w)));
      } finally {
        this.#checking = null;
      }
    })();
    return this.#checking;
  }

  start(): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => void this.checkOnce(), this.#config.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#checking;
  }
}
