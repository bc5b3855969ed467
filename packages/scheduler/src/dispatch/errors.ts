import { TsinferError } from '@tsinfer/core';

/** `routed_dp_rank` is not an integer in [0, dpSize) (TSI_ERR_INVALID_DP_RANK, 400). */
export class InvalidDpRankError extends TsinferError {
  readonly rank: unknown;
  readonly dpSize: number;
  constructor(rank: unknown, dpSize: number) {
    super('TSI_ERR_INVALID_DP_RANK', `routed_dp_rank=${String(rank)} out of range [0, ${dpSize})`);
    this.name = 'InvalidDpRankError';
    this.rank = rank;
    this.dpSize = dpSize;
  }
}

/** The pinned rank is dead or stale (TSI_ERR_RANK_FAILED, 503). */
export class RankFailedError extends TsinferError {
  readonly rank: number;
  constructor(rank: number, reason: string) {
    super('TSI_ERR_RANK_FAILED', `DP rank ${rank} is not available: ${reason}`);
    this.name = 'RankFailedError';
    this.rank = rank;
  }
}

/** Every rank is dead, not yet published, or stale (TSI_ERR_NO_LIVE_RANK, 503). */
export class NoLiveRankError extends TsinferError {
  constructor(dpSize: number) {
    super(
      'TSI_ERR_NO_LIVE_RANK',
      `no live DP rank among ${dpSize}: every rank is dead, has not published a load snapshot, or is stale`,
    );
    this.name = 'NoLiveRankError';
  }
}
