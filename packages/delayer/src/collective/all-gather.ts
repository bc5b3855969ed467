/**
 * The one collective tsinfer's ranks use: every rank contributes a fixed-width
 * row of numbers and every rank receives all rows, plus one timestamp shared
 * by every rank for that round (so rank-local clocks cannot split a decision
 * that depends on time).
 *
 * `gather` is synchronous: a rank blocks until every rank of the group has
 * contributed its row for the round, or until the group's timeout, when it
 * throws `CollectiveTimeoutError` (TSI_ERR_COLLECTIVE_TIMEOUT). A rank that
 * dies therefore never hangs the others.
 */
export interface GatherResult {
  /**
   * `rows[r]` is rank r's row for this round. The arrays are views owned by
   * the collective: valid until this rank's next `gather` call, never
   * reallocated between rounds. Copy them to keep them.
   */
  readonly rows: ReadonlyArray<Float64Array>;
  /** One timestamp (Clock milliseconds) shared by every rank for this round. */
  readonly timestampMs: number;
  /** Round number, starting at 0; equal on every rank. */
  readonly round: number;
}

export interface AllGather {
  readonly rank: number;
  readonly worldSize: number;
  readonly rowWidth: number;
  /** Contributes `row` (length `rowWidth`, finite numbers) and returns every rank's row. */
  gather(row: ArrayLike<number>): GatherResult;
  /** Leaves the group; later calls throw `CollectiveClosedError`. */
  close(): void;
}
