import { TsinferError } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { LoadSnapshotBoard } from './board.js';
import {
  buildGetLoad,
  buildLoadsPayload,
  collectLoads,
  LOADS_INCLUDE_OPTIONS,
  parseLoadsQuery,
  pythonFloatRepr,
  renderLoadsPrometheus,
} from './loads-api.js';
import { createLoadSnapshot, DISAGG_MODE_DECODE, type LoadSnapshot } from './snapshot.js';

function snap(rank: number, over: Partial<LoadSnapshot> = {}): LoadSnapshot {
  return {
    ...createLoadSnapshot(),
    timestamp: 1_700_000_000_500,
    dpRank: rank,
    numRunningReqs: 3,
    numWaitingReqs: 2,
    numWaitingUncachedTokens: 40,
    numUsedTokens: 100,
    numTotalTokens: 150,
    maxTotalNumTokens: 4096,
    maxRunningRequests: 64,
    tokenUsage: 0.0244,
    genThroughput: 12.5,
    cacheHitRate: 0,
    utilization: 1,
    ...over,
  };
}

const CORE_KEYS = [
  'timestamp',
  'dp_rank',
  'num_running_reqs',
  'num_waiting_reqs',
  'num_total_tokens',
  'num_waiting_uncached_tokens',
  'num_used_tokens',
  'max_total_num_tokens',
  'max_running_requests',
  'token_usage',
  'gen_throughput',
  'cache_hit_rate',
  'utilization',
  'num_active_tokens',
  'total_prefill_uncached_tokens',
  'total_prefill_busy_us',
  'decode_moments',
];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof TsinferError ? `${e.code}:${e.statusCode}` : String(e);
  }
  return undefined;
}

describe('parseLoadsQuery', () => {
  it('an invalid include is a 400 TSI_ERR_INVALID_QUERY with SGLang message, checked before dp_rank', () => {
    expect(codeOf(() => parseLoadsQuery({ include: 'core,bogus', dp_rank: 'x' }))).toBe(
      'TSI_ERR_INVALID_QUERY:400',
    );
    expect(() => parseLoadsQuery({ include: 'zeta, bogus ,core' })).toThrow(
      "Invalid include sections: {'bogus', 'zeta'}. Valid options: ['all', 'core', 'disagg', 'lora', 'memory', 'queues', 'spec']",
    );
    // an empty token (trailing comma) is invalid, as in SGLang
    expect(codeOf(() => parseLoadsQuery({ include: 'core,' }))).toBe('TSI_ERR_INVALID_QUERY:400');
  });

  it('resolves sections: absent/empty/all → every section; {core} → none; others → those requested', () => {
    const all = ['memory', 'speculative', 'lora', 'disaggregation', 'queues'];
    expect([...parseLoadsQuery({}).sections]).toEqual(all);
    expect([...parseLoadsQuery({ include: '' }).sections]).toEqual(all);
    expect([...parseLoadsQuery({ include: 'core,all' }).sections]).toEqual(all);
    expect([...parseLoadsQuery({ include: 'core' }).sections]).toEqual([]);
    expect([...parseLoadsQuery({ include: ' spec , disagg' }).sections].sort()).toEqual([
      'disaggregation',
      'speculative',
    ]);
    expect(LOADS_INCLUDE_OPTIONS).toContain('queues');
  });

  it('dp_rank must be an integer; format=prometheus selects text, anything else JSON', () => {
    expect(parseLoadsQuery({ dp_rank: '3' }).dpRank).toBe(3);
    expect(parseLoadsQuery({ dp_rank: '-1' }).dpRank).toBe(-1);
    expect(parseLoadsQuery({ dp_rank: 2 }).dpRank).toBe(2);
    expect(parseLoadsQuery({ dp_rank: '' }).dpRank).toBe(null);
    for (const bad of ['1.5', 'abc', 1.5, '1e3']) {
      expect(codeOf(() => parseLoadsQuery({ dp_rank: bad }))).toBe('TSI_ERR_INVALID_QUERY:400');
    }
    expect(parseLoadsQuery({ format: 'prometheus' }).format).toBe('prometheus');
    expect(parseLoadsQuery({ format: 'Prometheus' }).format).toBe('json');
    expect(parseLoadsQuery({}).format).toBe('json');
  });
});

describe('collectLoads', () => {
  it('reads present slots in rank order; dp_rank filters; out of range or empty gives []', () => {
    const board = LoadSnapshotBoard.create(3);
    board.publish(0, snap(0, { numRunningReqs: 10 }));
    board.publish(2, snap(2, { numRunningReqs: 12 }));
    const records = [createLoadSnapshot(), createLoadSnapshot(), createLoadSnapshot()];
    expect(collectLoads(board, records, null).map((s) => [s.dpRank, s.numRunningReqs])).toEqual([
      [0, 10],
      [2, 12],
    ]);
    expect(collectLoads(board, records, 2).map((s) => s.dpRank)).toEqual([2]);
    expect(collectLoads(board, records, 1)).toEqual([]);
    expect(collectLoads(board, records, 3)).toEqual([]);
    expect(collectLoads(board, records, -1)).toEqual([]);
  });
});

describe('buildLoadsPayload', () => {
  it('has SGLang keys, no aggregate; core keys always; sections expanded to named objects when present', () => {
    const s = snap(1, {
      hasMemory: 1,
      memoryWeightGb: 1.5,
      memoryKvCacheGb: 2.25,
      memoryGraphGb: 0,
      memoryTokenCapacity: 4096,
      disaggMode: DISAGG_MODE_DECODE,
      disaggDecodeTransferQueueReqs: 4,
      queuesWaiting: 2,
      queuesRetracted: 1,
      hasDecodeMoments: 1,
      decodeMoments0: 1,
      decodeMoments5: 6,
    });
    const body = buildLoadsPayload([s], parseLoadsQuery({}), {
      version: '0.1.0',
      nowMs: Date.UTC(2026, 10, 23, 1, 2, 3, 456),
      accelerator: null,
      numAccelerators: 1,
    });
    expect(Object.keys(body)).toEqual(['timestamp', 'version', 'accelerator', 'num_accelerators', 'loads']);
    expect(body.timestamp).toBe('2026-11-23T01:02:03.456Z');
    const load = body.loads[0]!;
    expect(Object.keys(load)).toEqual([...CORE_KEYS, 'memory', 'disaggregation', 'queues']);
    expect(load['timestamp']).toBe(1_700_000_000.5); // seconds
    expect(load['dp_rank']).toBe(1);
    expect(load['num_total_tokens']).toBe(150);
    expect(load['decode_moments']).toEqual([1, 0, 0, 0, 0, 6]);
    expect(load['memory']).toEqual({ weight_gb: 1.5, kv_cache_gb: 2.25, graph_gb: 0, token_capacity: 4096 });
    expect(load['disaggregation']).toEqual({
      mode: 'decode',
      prefill_bootstrap_queue_reqs: 0,
      prefill_inflight_queue_reqs: 0,
      decode_prealloc_queue_reqs: 0,
      decode_transfer_queue_reqs: 4,
      decode_retracted_queue_reqs: 0,
      kv_transfer_speed_gb_s: 0,
      kv_transfer_latency_ms: 0,
    });
    expect(load['queues']).toEqual({ waiting: 2, grammar: 0, paused: 0, retracted: 1 });
    expect('speculative' in load).toBe(false); // absent section
    expect('acked_dispatch_seq' in load).toBe(false); // internal
  });

  it('include filters sections per load; include=core gives core keys only', () => {
    const s = snap(0, { hasSpeculative: 1, specAcceptLength: 2.5, specAcceptRate: 0.75, hasLora: 1 });
    const meta = { version: 'v', nowMs: 0 };
    expect(Object.keys(buildLoadsPayload([s], parseLoadsQuery({ include: 'core' }), meta).loads[0]!)).toEqual(
      CORE_KEYS,
    );
    const spec = buildLoadsPayload([s], parseLoadsQuery({ include: 'spec,memory' }), meta).loads[0]!;
    expect(Object.keys(spec)).toEqual([...CORE_KEYS, 'speculative']); // memory requested but absent
    expect(spec['speculative']).toEqual({ accept_length: 2.5, accept_rate: 0.75 });
    expect(buildLoadsPayload([], parseLoadsQuery({}), meta).loads).toEqual([]);
  });
});

describe('renderLoadsPrometheus', () => {
  it('renders tsinfer_* gauges grouped by metric in first-appearance order, ints as ints and floats as Python prints them', () => {
    const q = parseLoadsQuery({ include: 'core,spec', format: 'prometheus' });
    const a = snap(0, { hasSpeculative: 1, specAcceptLength: 3, specAcceptRate: 1e-5 });
    const b = snap(1, { numRunningReqs: 7, tokenUsage: 0.25 });
    const text = renderLoadsPrometheus([a, b], q);
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.trimEnd().split('\n');
    const block = (name: string): string[] => {
      const i = lines.indexOf(`# TYPE ${name} ${name.startsWith('tsinfer_total_') ? 'counter' : 'gauge'}`);
      expect(i, name).toBeGreaterThan(0);
      expect(lines[i - 1]).toMatch(new RegExp(`^# HELP ${name} `));
      const out: string[] = [];
      for (let j = i + 1; j < lines.length && !lines[j]!.startsWith('#'); j++) out.push(lines[j]!);
      return out;
    };
    expect(block('tsinfer_num_running_reqs')).toEqual([
      'tsinfer_num_running_reqs{dp_rank="0"} 3',
      'tsinfer_num_running_reqs{dp_rank="1"} 7',
    ]);
    expect(block('tsinfer_token_usage')).toEqual([
      'tsinfer_token_usage{dp_rank="0"} 0.0244',
      'tsinfer_token_usage{dp_rank="1"} 0.25',
    ]);
    expect(block('tsinfer_utilization')).toEqual([
      'tsinfer_utilization{dp_rank="0"} 1.0',
      'tsinfer_utilization{dp_rank="1"} 1.0',
    ]);
    expect(block('tsinfer_cache_hit_rate')[0]).toBe('tsinfer_cache_hit_rate{dp_rank="0"} 0.0');
    expect(block('tsinfer_timestamp')[0]).toBe('tsinfer_timestamp{dp_rank="0"} 1700000000.5');
    expect(block('tsinfer_total_prefill_busy_us')[0]).toBe('tsinfer_total_prefill_busy_us{dp_rank="0"} 0');
    // only rank 0 has the speculative section
    expect(block('tsinfer_spec_accept_length')).toEqual(['tsinfer_spec_accept_length{dp_rank="0"} 3.0']);
    expect(block('tsinfer_spec_accept_rate')).toEqual(['tsinfer_spec_accept_rate{dp_rank="0"} 1e-05']);
    // no dp_rank metric, no lists, no disaggregation (not included), no sglang names
    expect(text).not.toMatch(/tsinfer_dp_rank|decode_moments|tsinfer_disagg|sglang/);
    const names = lines.filter((l) => l.startsWith('# TYPE')).map((l) => l.split(' ')[2]);
    expect(names.slice(0, 3)).toEqual([
      'tsinfer_timestamp',
      'tsinfer_num_running_reqs',
      'tsinfer_num_waiting_reqs',
    ]);
    expect(names.at(-1)).toBe('tsinfer_spec_accept_rate');
  });

  it('skips the disaggregation mode string and renders section prefixes disagg/queues', () => {
    const s = snap(0, { disaggMode: DISAGG_MODE_DECODE, disaggKvTransferSpeedGbS: 12 });
    const text = renderLoadsPrometheus([s], parseLoadsQuery({ include: 'disagg,queues' }));
    expect(text).toContain('tsinfer_disagg_kv_transfer_speed_gb_s{dp_rank="0"} 12.0\n');
    expect(text).toContain('tsinfer_disagg_decode_prealloc_queue_reqs{dp_rank="0"} 0\n');
    expect(text).toContain('tsinfer_queues_waiting{dp_rank="0"} 0\n');
    expect(text).not.toContain('mode');
    expect(renderLoadsPrometheus([], parseLoadsQuery({}))).toBe('');
  });
});

describe('pythonFloatRepr', () => {
  it.each([
    [3, '3.0'],
    [0.25, '0.25'],
    [1e-5, '1e-05'],
    [0.0001, '0.0001'],
    [1e16, '1e+16'],
    [1234567890123456.0, '1234567890123456.0'],
    [1.5e16, '1.5e+16'],
    [123456789012345680, '1.2345678901234568e+17'],
    [-2.5, '-2.5'],
    [0.1 + 0.2, '0.30000000000000004'],
    [1e100, '1e+100'],
    [5e-324, '5e-324'],
    [0, '0.0'],
    [-0, '-0.0'],
    [Number.NaN, 'nan'],
    [Number.POSITIVE_INFINITY, 'inf'],
    [100, '100.0'],
    [12.5, '12.5'],
  ])('%s → %s', (x, want) => {
    expect(pythonFloatRepr(x)).toBe(want);
  });
});

describe('buildGetLoad (legacy /get_load)', () => {
  it('projects num_reqs = running + waiting, num_tokens = total, num_pending_tokens = total - used, ts_tic', () => {
    expect(buildGetLoad([snap(0), snap(3, { numUsedTokens: 150 })], 12.5)).toEqual([
      { dp_rank: 0, num_reqs: 5, num_waiting_reqs: 2, num_tokens: 150, num_pending_tokens: 50, ts_tic: 12.5 },
      { dp_rank: 3, num_reqs: 5, num_waiting_reqs: 2, num_tokens: 150, num_pending_tokens: 0, ts_tic: 12.5 },
    ]);
  });
});
