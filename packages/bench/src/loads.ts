/**
 * `--loads-interval`: samples `GET /v1/loads` (SGLang's JSON keys, see
 * /work/shared/specs/dp-dispatch-and-loads.md §3) during the measured run,
 * keeping per-rank load over time for the report.
 */
import type { Clock } from '@tsinfer/core';
import type { HttpClient } from './http.js';

/** The per-rank fields kept from each `/v1/loads` entry. */
export const LOAD_FIELDS = [
  'num_running_reqs',
  'num_waiting_reqs',
  'num_waiting_uncached_tokens',
  'num_used_tokens',
  'num_total_tokens',
  'token_usage',
  'gen_throughput',
] as const;

export type RankLoad = { dp_rank: number } & Partial<Record<(typeof LOAD_FIELDS)[number], number>>;

export interface LoadSample {
  /** Seconds since the measured run started. */
  t: number;
  loads: RankLoad[];
}

/** Picks the kept fields out of a `/v1/loads` response body; null when it is not one. */
export function parseLoads(body: unknown): RankLoad[] | null {
  if (typeof body !== 'object' || body === null) return null;
  const loads = (body as Record<string, unknown>)['loads'];
  if (!Array.isArray(loads)) return null;
  const out: RankLoad[] = [];
  for (const l of loads) {
    if (typeof l !== 'object' || l === null) continue;
    const rec = l as Record<string, unknown>;
    const rank = rec['dp_rank'];
    const entry: RankLoad = { dp_rank: typeof rank === 'number' ? rank : out.length };
    for (const f of LOAD_FIELDS) {
      const v = rec[f];
      if (typeof v === 'number') entry[f] = v;
    }
    out.push(entry);
  }
  return out;
}

export interface LoadSampler {
  /** Stops sampling and returns the samples taken. */
  stop(): Promise<LoadSample[]>;
  /** Requests that failed (non-200, not a loads body, network error). */
  readonly failures: number;
}

export function startLoadSampler(opts: {
  client: HttpClient;
  url: string;
  intervalMs: number;
  clock: Clock;
  sleep: (ms: number) => Promise<void>;
}): LoadSampler {
  const samples: LoadSample[] = [];
  const t0 = opts.clock.nowMs();
  let stopped = false;
  let failures = 0;
  let wake: () => void = () => {};
  const stopSignal = new Promise<void>((r) => {
    wake = r;
  });
  const loop = (async () => {
    while (!stopped) {
      const t = (opts.clock.nowMs() - t0) / 1000;
      try {
        const r = await opts.client.getJson(opts.url, Math.max(1000, opts.intervalMs * 5));
        const loads = r.status === 200 ? parseLoads(r.json) : null;
        if (loads === null) failures++;
        else samples.push({ t, loads });
      } catch {
        failures++;
      }
      if (stopped) break;
      await Promise.race([opts.sleep(opts.intervalMs), stopSignal]);
    }
  })();
  return {
    async stop() {
      stopped = true;
      wake();
      await loop;
      return samples;
    },
    get failures() {
      return failures;
    },
  };
}
