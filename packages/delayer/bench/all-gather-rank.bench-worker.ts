/**
 * One rank of the shared-memory all-gather benchmark (delayer.bench.ts).
 * Runs `warmup` rounds, then `rounds` measured rounds; rank 0 records the
 * time every measured gather returned into a preallocated array (nothing is
 * allocated in the loop) and posts it back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type SharedAllGatherInit, SharedMemoryAllGather } from '../src/collective/shared-memory.js';

export interface BenchRankJob {
  init: SharedAllGatherInit;
  rank: number;
  warmup: number;
  rounds: number;
}

export interface BenchRankReport {
  rank: number;
  /** performance.timeOrigin + performance.now() when the warm-up's last gather returned, then after each measured one. */
  returnTimes: Float64Array | null;
  /** Sum of every value received, so the reads are not optimised away. */
  sink: number;
}

const job = workerData as BenchRankJob;
const ag = new SharedMemoryAllGather(job.init, job.rank);
const row = new Float64Array(ag.rowWidth);
const times = job.rank === 0 ? new Float64Array(job.rounds + 1) : null;
let sink = 0;
for (let r = 0; r < job.warmup; r++) {
  row[0] = r;
  sink += ag.gather(row).rows[ag.worldSize - 1]![0]!;
}
const origin = performance.timeOrigin;
if (times !== null) times[0] = origin + performance.now();
for (let r = 0; r < job.rounds; r++) {
  row[0] = r;
  row[1] = job.rank;
  const res = ag.gather(row);
  if (times !== null) times[r + 1] = origin + performance.now();
  sink += res.rows[(r + job.rank) % ag.worldSize]![0]!;
}
ag.close();
const report: BenchRankReport = { rank: job.rank, returnTimes: times, sink };
parentPort!.postMessage(report);
