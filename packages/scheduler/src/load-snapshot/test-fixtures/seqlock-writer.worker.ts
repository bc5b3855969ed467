/**
 * Writer thread of the seqlock stress test (../board.test.ts): rewrites slot
 * `rank` of the board as fast as it can until `stop[0]` becomes 1. Write n
 * is self-consistent: field k of the record holds `stressValue(n, k)` (the
 * board stamps dpRank with the slot's rank). Posts 'ready' after the first
 * write, then `{ writes }` when stopped.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LoadSnapshotBoard } from '../board.js';
import { createLoadSnapshot, SNAPSHOT_FIELDS } from '../snapshot.js';
import { stressValue } from './stress-values.js';

export interface WriterJob {
  buffer: SharedArrayBuffer;
  rank: number;
  stop: Int32Array;
}

const job = workerData as WriterJob;
const board = LoadSnapshotBoard.attach(job.buffer);
const rec = createLoadSnapshot() as unknown as Record<string, number>;
const keys = SNAPSHOT_FIELDS.map((d) => d.key as string);
let n = 0;
const write = (): void => {
  n++;
  for (let k = 0; k < keys.length; k++) rec[keys[k]!] = stressValue(n, k);
  board.publish(job.rank, rec as never);
};
write();
parentPort!.postMessage('ready');
while (Atomics.load(job.stop, 0) === 0) write();
parentPort!.postMessage({ writes: n });
