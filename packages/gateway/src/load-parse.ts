/// <reference path="./types/parse-prometheus-text-format.d.ts" />
/**
 * Reading a worker's per-DP-rank used tokens from what it serves:
 *
 * - `/metrics` (Prometheus text, parsed with parse-prometheus-text-format):
 *   tsinfer's `tsinfer_num_used_tokens{dp_rank="r"}`, SGLang's
 *   `sglang:num_used_tokens{dp_rank="r",...}`, or the `sglang_num_used_tokens`
 *   spelling of `/v1/loads?format=prometheus`. A sample without a `dp_rank`
 *   label (SGLang with dp-size 1) gives the worker's total but no ranks.
 *   Several samples for one rank (SGLang with
 *   --enable-metrics-for-all-schedulers reports every TP rank of a DP group)
 *   count once: the largest.
 * - `/v1/loads` JSON: `loads[].num_used_tokens` per `loads[].dp_rank`.
 *   Entries with a `worker` field are a fleet roll-up, not ranks, and are
 *   ignored (as SMG does).
 *
 * A response that has none of these is `null` (load unknown), never zero
 * (flaw F-14/F-15: SGLang's gateway turned such responses into −1 or 0 and
 * then sent traffic to the worker it knew least about).
 */
import parsePrometheusTextFormat from 'parse-prometheus-text-format';

/** Metric names read, in order of preference. */
export const USED_TOKENS_METRICS: readonly string[] = [
  'tsinfer_num_used_tokens',
  'sglang:num_used_tokens',
  'sglang_num_used_tokens',
];

export interface PolledLoad {
  /** Used tokens per DP rank; null when the worker reports no ranks. */
  readonly ranks: ReadonlyMap<number, number> | null;
  /** Sum over ranks (or the unlabeled value). */
  readonly total: number;
}

function fromRankValues(byRank: Map<number, number>, unlabeled: number | null): PolledLoad | null {
  if (byRank.size > 0) {
    let total = 0;
    for (const v of byRank.values()) total += v;
    const sorted = new Map([...byRank.entries()].sort((a, b) => a[0] - b[0]));
    return { ranks: sorted, total };
  }
  if (unlabeled !== null) return { ranks: null, total: unlabeled };
  return null;
}

/** Per-rank used tokens from a Prometheus text exposition; null if no known metric is in it. */
export function parseMetricsLoad(text: string): PolledLoad | null {
  let families: ReturnType<typeof parsePrometheusTextFormat>;
  try {
    families = parsePrometheusTextFormat(text);
  } catch {
    return null;
  }
  for (const name of USED_TOKENS_METRICS) {
    const fam = families.find((f) => f.name === name);
    if (fam === undefined) continue;
    const byRank = new Map<number, number>();
    let unlabeled: number | null = null;
    for (const s of fam.metrics) {
      const v = Number(s.value);
      if (s.value === undefined || !Number.isFinite(v) || v < 0) continue;
      const rankLabel = s.labels?.['dp_rank'];
      if (rankLabel === undefined || rankLabel === '') {
        unlabeled = Math.max(unlabeled ?? 0, v);
        continue;
      }
      const r = Number(rankLabel);
      if (!Number.isInteger(r) || r < 0) continue;
      byRank.set(r, Math.max(byRank.get(r) ?? 0, v));
    }
    const load = fromRankValues(byRank, unlabeled);
    if (load !== null) return load;
  }
  return null;
}

/** Per-rank used tokens from a `/v1/loads` JSON body; null if it has no usable entry. */
export function parseLoadsJson(body: unknown): PolledLoad | null {
  if (typeof body !== 'object' || body === null) return null;
  const loads = (body as { loads?: unknown }).loads;
  if (!Array.isArray(loads)) return null;
  const byRank = new Map<number, number>();
  for (const l of loads) {
    if (typeof l !== 'object' || l === null) continue;
    const e = l as Record<string, unknown>;
    if ('worker' in e) continue;
    const r = e['dp_rank'];
    const v = e['num_used_tokens'];
    if (typeof r !== 'number' || !Number.isInteger(r) || r < 0) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) continue;
    byRank.set(r, Math.max(byRank.get(r) ?? 0, v));
  }
  return fromRankValues(byRank, null);
}
