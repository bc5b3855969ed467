import { describe, expect, it } from 'vitest';
import { parseLoadsJson, parseMetricsLoad } from './load-parse.js';

describe('parseMetricsLoad', () => {
  it("reads tsinfer's tsinfer_num_used_tokens per dp_rank", () => {
    const text = [
      '# HELP tsinfer_num_used_tokens KV tokens in use on each DP rank.',
      '# TYPE tsinfer_num_used_tokens gauge',
      'tsinfer_num_used_tokens{dp_rank="0"} 120',
      'tsinfer_num_used_tokens{dp_rank="1"} 30',
      '# TYPE tsinfer_token_usage gauge',
      'tsinfer_token_usage{dp_rank="0"} 0.5',
    ].join('\n');
    const l = parseMetricsLoad(`${text}\n`);
    expect(l?.total).toBe(150);
    expect([...(l?.ranks ?? [])]).toEqual([
      [0, 120],
      [1, 30],
    ]);
  });

  it("reads SGLang's sglang:num_used_tokens with extra labels; TP ranks of one DP rank count once", () => {
    const text = [
      '# HELP sglang:num_used_tokens The number of used tokens.',
      '# TYPE sglang:num_used_tokens gauge',
      'sglang:num_used_tokens{dp_rank="1",engine_type="unified",model_name="m",tp_rank="0"} 7.0',
      'sglang:num_used_tokens{dp_rank="1",engine_type="unified",model_name="m",tp_rank="1"} 7.0',
      'sglang:num_used_tokens{dp_rank="0",engine_type="unified",model_name="m",tp_rank="0"} 40.0',
    ].join('\n');
    const l = parseMetricsLoad(`${text}\n`);
    expect([...(l?.ranks ?? [])]).toEqual([
      [0, 40],
      [1, 7],
    ]);
    expect(l?.total).toBe(47);
  });

  it('reads the sglang_num_used_tokens spelling of /v1/loads?format=prometheus', () => {
    const l = parseMetricsLoad(
      '# TYPE sglang_num_used_tokens gauge\nsglang_num_used_tokens{dp_rank="0"} 5\n',
    );
    expect([...(l?.ranks ?? [])]).toEqual([[0, 5]]);
  });

  it('a sample without dp_rank gives the total but no ranks', () => {
    const l = parseMetricsLoad('sglang:num_used_tokens{model_name="m",tp_rank="0"} 64.0\n');
    expect(l).toEqual({ ranks: null, total: 64 });
  });

  it('no known metric, or unparsable text, is unknown (null), never zero (F-14/F-15)', () => {
    expect(parseMetricsLoad('# TYPE foo gauge\nfoo 1\n')).toBeNull();
    expect(parseMetricsLoad('')).toBeNull();
    expect(parseMetricsLoad('tsinfer_num_used_tokens{dp_rank="0"} NaN\n')).toBeNull();
  });
});

describe('parseLoadsJson', () => {
  it('reads loads[].num_used_tokens per dp_rank', () => {
    const l = parseLoadsJson({
      timestamp: 'x',
      loads: [
        { dp_rank: 1, num_used_tokens: 3, num_total_tokens: 90 },
        { dp_rank: 0, num_used_tokens: 10 },
      ],
    });
    expect([...(l?.ranks ?? [])]).toEqual([
      [0, 10],
      [1, 3],
    ]);
  });

  it('ignores fleet roll-ups (entries with a worker field) and a missing loads array', () => {
    expect(parseLoadsJson({ loads: [{ worker: 'http://x', dp_rank: 0, num_used_tokens: 5 }] })).toBeNull();
    expect(parseLoadsJson({ aggregate: { total_tokens: 5 } })).toBeNull();
    expect(parseLoadsJson({ loads: [] })).toBeNull();
    expect(parseLoadsJson(null)).toBeNull();
  });
});
