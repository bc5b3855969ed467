/**
 * `/metrics`: prom-client in the main thread, one registry per server (so
 * several servers can live in one process). Request counters and latency
 * histograms are observed here as events stream out (SGLang's bucket
 * layouts); the per-rank gauges are read from the engine's load snapshots
 * at scrape time; the prefill delayer's outcome counter and histograms are
 * rendered from its per-rank snapshots. Names are `tsinfer_*` (SGLang's
 * `sglang:*` with the prefix changed); see docs/metrics.md.
 */
import type { PrefillDelayerMetricsSnapshot } from '@tsinfer/delayer';
import type { LoadSnapshot } from '@tsinfer/scheduler';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine } from '../engine/types.js';

/** SGLang's default `time_to_first_token_seconds` buckets. */
export const TTFT_BUCKETS: readonly number[] = [
  0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400,
];
/** SGLang's default `inter_token_latency_seconds` buckets. */
export const ITL_BUCKETS: readonly number[] = [
  0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4, 0.6,
  0.8, 1, 2, 4, 6, 8,
];
/** SGLang's default `e2e_request_latency_seconds` buckets: TTFT's plus 600, 1200, 1800, 2400. */
export const E2E_BUCKETS: readonly number[] = [...TTFT_BUCKETS, 600, 1200, 1800, 2400];
/** SGLang's `get_loads_duration_seconds` buckets. */
export const GET_LOADS_BUCKETS: readonly number[] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1];

/** Per-rank gauges read from load snapshots: metric name → snapshot field. */
const RANK_GAUGES: ReadonlyArray<{ name: string; help: string; key: keyof LoadSnapshot }> = [
  {
    name: 'tsinfer_num_running_reqs',
    help: 'Requests in the running batch of each DP rank.',
    key: 'numRunningReqs',
  },
  {
    name: 'tsinfer_num_queue_reqs',
    help: 'Requests waiting in the queue of each DP rank.',
    key: 'numWaitingReqs',
  },
  { name: 'tsinfer_num_used_tokens', help: 'KV tokens in use on each DP rank.', key: 'numUsedTokens' },
  {
    name: 'tsinfer_token_usage',
    help: 'KV usage fraction (used / capacity) of each DP rank.',
    key: 'tokenUsage',
  },
  {
    name: 'tsinfer_max_total_num_tokens',
    help: 'KV capacity in tokens of each DP rank.',
    key: 'maxTotalNumTokens',
  },
  {
    name: 'tsinfer_gen_throughput',
    help: 'Generated tokens per second of each DP rank.',
    key: 'genThroughput',
  },
  { name: 'tsinfer_cache_hit_rate', help: 'Prefix cache hit rate of each DP rank.', key: 'cacheHitRate' },
  { name: 'tsinfer_utilization', help: 'Utilization of each DP rank.', key: 'utilization' },
  {
    name: 'tsinfer_num_waiting_uncached_tokens',
    help: 'Uncached prompt tokens of the waiting requests of each DP rank.',
    key: 'numWaitingUncachedTokens',
  },
];

export type Endpoint = 'completions' | 'chat' | 'generate';

export class ServerMetrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'route' | 'status_code'>;
  readonly requests: Counter<'endpoint' | 'finish_reason'>;
  readonly abortedRequests: Counter<'endpoint'>;
  readonly rejectedRequests: Counter<'code'>;
  readonly promptTokens: Counter;
  readonly generationTokens: Counter;
  readonly ttft: Histogram;
  readonly itl: Histogram;
  readonly e2e: Histogram;
  readonly getLoadsDuration: Histogram;
  readonly inflight: Gauge;
  readonly waitingFirstToken: Gauge;
  readonly #engine: Engine;

  constructor(engine: Engine) {
    this.#engine = engine;
    const registers = [this.registry];
    this.httpRequests = new Counter({
      name: 'tsinfer_http_requests_total',
      help: 'HTTP requests answered, by method, route and status code.',
      labelNames: ['method', 'route', 'status_code'],
      registers,
    });
    this.requests = new Counter({
      name: 'tsinfer_num_requests_total',
      help: 'Generation requests that ended, by endpoint and finish reason (stop, length, abort).',
      labelNames: ['endpoint', 'finish_reason'],
      registers,
    });
    this.abortedRequests = new Counter({
      name: 'tsinfer_num_aborted_requests_total',
      help: 'Generation requests aborted (client disconnect, shutdown, rank failure).',
      labelNames: ['endpoint'],
      registers,
    });
    this.rejectedRequests = new Counter({
      name: 'tsinfer_num_rejected_requests_total',
      help: 'Requests refused before generating, by error code (validation, auth, queue full, ...).',
      labelNames: ['code'],
      registers,
    });
    this.promptTokens = new Counter({
      name: 'tsinfer_prompt_tokens_total',
      help: 'Prompt tokens of ended generation requests.',
      registers,
    });
    this.generationTokens = new Counter({
      name: 'tsinfer_generation_tokens_total',
      help: 'Generated tokens of ended generation requests.',
      registers,
    });
    this.ttft = new Histogram({
      name: 'tsinfer_time_to_first_token_seconds',
      help: 'Time from request arrival to its first generated token.',
      buckets: [...TTFT_BUCKETS],
      registers,
    });
    this.itl = new Histogram({
      name: 'tsinfer_inter_token_latency_seconds',
      help: 'Gap between generated tokens (an event of k tokens adds k observations of gap / k, as SGLang).',
      buckets: [...ITL_BUCKETS],
      registers,
    });
    this.e2e = new Histogram({
      name: 'tsinfer_e2e_request_latency_seconds',
      help: 'Time from request arrival to its last token.',
      buckets: [...E2E_BUCKETS],
      registers,
    });
    this.getLoadsDuration = new Histogram({
      name: 'tsinfer_get_loads_duration_seconds',
      help: 'Time to answer GET /v1/loads (failures included).',
      buckets: [...GET_LOADS_BUCKETS],
      registers,
    });
    this.inflight = new Gauge({
      name: 'tsinfer_http_inflight_requests',
      help: 'Generation requests the HTTP layer is serving now.',
      registers,
    });
    this.waitingFirstToken = new Gauge({
      name: 'tsinfer_http_waiting_requests',
      help: 'Generation requests accepted but without their first token yet (what --max-queued-requests bounds).',
      registers,
    });
    const loads = (): readonly LoadSnapshot[] => this.#engine.loads(null);
    for (const g of RANK_GAUGES) {
      new Gauge({
        name: g.name,
        help: g.help,
        labelNames: ['dp_rank'],
        registers,
        collect() {
          this.reset();
          for (const s of loads()) this.set({ dp_rank: String(s.dpRank) }, s[g.key]);
        },
      });
    }
  }

  /** The whole text exposition: the registry, then the delayer's metrics per rank. */
  async render(): Promise<string> {
    const base = await this.registry.metrics();
    const delayer = this.#engine.delayerMetrics();
    return base + renderDelayerMetrics(delayer);
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labels(l: Readonly<Record<string, string>>): string {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/**
 * The delayer's three metrics over every rank, each with one HELP/TYPE
 * header and a `dp_rank` label per sample. Empty when no rank has a delayer.
 */
export function renderDelayerMetrics(perRank: readonly (PrefillDelayerMetricsSnapshot | null)[]): string {
  const ranks = perRank
    .map((s, rank) => ({ s, rank }))
    .filter((x): x is { s: PrefillDelayerMetricsSnapshot; rank: number } => x.s !== null);
  const first = ranks[0]?.s;
  if (first === undefined) return '';
  const out: string[] = [];
  out.push(`# HELP ${first.outcomes.name} ${first.outcomes.help}`, `# TYPE ${first.outcomes.name} counter`);
  for (const { s, rank } of ranks) {
    for (const sample of s.outcomes.samples) {
      out.push(`${s.outcomes.name}${labels({ dp_rank: String(rank), ...sample.labels })} ${sample.value}`);
    }
  }
  for (const pick of [
    (s: PrefillDelayerMetricsSnapshot) => s.waitForwardPasses,
    (s: PrefillDelayerMetricsSnapshot) => s.waitSeconds,
  ]) {
    const h0 = pick(first);
    out.push(`# HELP ${h0.name} ${h0.help}`, `# TYPE ${h0.name} histogram`);
    for (const { s, rank } of ranks) {
      const h = pick(s);
      const r = String(rank);
      for (const b of h.buckets) {
        const le = b.le === Number.POSITIVE_INFINITY ? '+Inf' : String(b.le);
        out.push(`${h.name}_bucket${labels({ dp_rank: r, le })} ${b.count}`);
      }
      out.push(
        `${h.name}_sum${labels({ dp_rank: r })} ${h.sum}`,
        `${h.name}_count${labels({ dp_rank: r })} ${h.count}`,
      );
    }
  }
  return `${out.join('\n')}\n`;
}
