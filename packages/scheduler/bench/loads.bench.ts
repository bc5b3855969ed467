import os from 'node:os';
import { isMainThread, parentPort, type Worker, workerData } from 'node:worker_threads';
import { ManualClock, startWorker, systemClock } from '@tsinfer/core';
import { describeMachine, writeBenchSection } from '@tsinfer/core/bench-doc';
import { DpDispatcher } from '../src/dispatch/dispatcher.js';
import { LoadSnapshotBoard } from '../src/load-snapshot/board.js';
import { buildLoadsPayload, collectLoads, parseLoadsQuery } from '../src/load-snapshot/loads-api.js';
import { createLoadHead, createLoadSnapshot, type LoadSnapshot } from '../src/load-snapshot/snapshot.js';

interface RankJob {
  kind: 'rank';
  buffer: SharedArrayBuffer;
  rank: number;
  prefillMs: number;
  /** Delay before the first prefill, so ranks are not in lockstep. */
  phaseMs: number;
  busy: boolean;
  stop: Int32Array;
}

interface WriterJob {
  kind: 'writer';
  buffer: SharedArrayBuffer;
  rank: number;
  /** Publish period in µs (0 = as fast as possible). */
  periodUs: number;
  stop: Int32Array;
}

function fillSnapshot(s: LoadSnapshot, n: number, rank: number): void {
  s.timestamp = systemClock.nowMs();
  s.dpRank = rank;
  s.numRunningReqs = 32 + (n % 7);
  s.numWaitingReqs = n % 5;
  s.numUsedTokens = 10_000 + n;
  s.numTotalTokens = 12_000 + n;
  s.maxTotalNumTokens = 500_000;
  s.maxRunningRequests = 256;
  s.tokenUsage = 0.0244;
  s.genThroughput = 1234.5;
  s.queuesWaiting = n % 5;
  s.ackedDispatchSeq = n;
}

// ---------------------------------------------------------------- worker side
function runRank(job: RankJob): void {
  const board = LoadSnapshotBoard.attach(job.buffer);
  const snap = createLoadSnapshot();
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  let n = 0;
  // The message port is served only when this thread's event loop is free,
  // i.e. between "prefills" — as a rank whose forward blocks its thread.
  parentPort!.on('message', (m: { id: number }) => {
    fillSnapshot(snap, n, job.rank);
    parentPort!.postMessage({ id: m.id, rank: job.rank, snapshot: snap });
  });
  const cycle = (): void => {
    if (Atomics.load(job.stop, 0) !== 0) {
      parentPort!.close();
      return;
    }
    n++;
    fillSnapshot(snap, n, job.rank);
    board.publish(job.rank, snap); // forced publish on a prefill pass
    if (job.busy) {
      const end = performance.now() + job.prefillMs;
      while (performance.now() < end) {
        // burn the core, as a CPU forward would
      }
    } else {
      Atomics.wait(sleeper, 0, 0, job.prefillMs);
    }
    setImmediate(cycle);
  };
  setTimeout(cycle, job.phaseMs);
  parentPort!.postMessage('ready');
}

function runWriter(job: WriterJob): void {
  const board = LoadSnapshotBoard.attach(job.buffer);
  const snap = createLoadSnapshot();
  let n = 0;
  let next = performance.now();
  while (Atomics.load(job.stop, 0) === 0) {
    fillSnapshot(snap, ++n, job.rank);
    board.publish(job.rank, snap);
    if (job.periodUs > 0) {
      next += job.periodUs / 1000;
      while (performance.now() < next) {
        // pace
      }
    }
  }
  parentPort!.postMessage({ writes: n });
}

// ---------------------------------------------------------------- main side
const args = process.argv.slice(2);
const WRITE = !args.includes('--no-write');
const QUICK = args.includes('--quick');

function pct(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
function fmt(x: number, d = 1): string {
  return x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

function startThread<T>(job: object): {
  worker: Worker;
  ready: Promise<void>;
  result: Promise<T | undefined>;
} {
  const worker = startWorker(import.meta.url, './loads.bench', { workerData: job });
  let result: T | undefined;
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));
  worker.on('message', (m: unknown) => {
    if (m === 'ready') markReady();
    else if (typeof m === 'object' && m !== null && 'writes' in m) result = m as T;
  });
  const done = new Promise<T | undefined>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', () => resolve(result));
  });
  return { worker, ready, result: done };
}

/** ns per call of `fn` over `iters` calls, 7 runs after a warm-up; returns the runs. */
function timeRuns(fn: (i: number) => void, iters: number, runs = 7): number[] {
  for (let i = 0; i < iters; i++) fn(i);
  const out: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) fn(i);
    out.push(Number(process.hrtime.bigint() - t0) / iters);
  }
  return out;
}

interface ReadRow {
  what: string;
  runs: number[];
}

async function benchReads(): Promise<{ rows: ReadRow[]; writerNote: string }> {
  const DP = 8;
  const ITERS = QUICK ? 200_000 : 2_000_000;
  const board = LoadSnapshotBoard.create(DP);
  const snap = createLoadSnapshot();
  for (let r = 0; r < DP; r++) {
    fillSnapshot(snap, 1, r);
    board.publish(r, snap);
  }
  const reader = LoadSnapshotBoard.attach(board.buffer);
  const rec = createLoadSnapshot();
  const head = createLoadHead();
  const rows: ReadRow[] = [];
  let sink = 0;
  rows.push({
    what: '`read` (full record, 48 fields), no writer',
    runs: timeRuns((i) => {
      reader.read(i & 7, rec);
      sink += rec.numTotalTokens;
    }, ITERS),
  });
  rows.push({
    what: '`readLoad` (the 5-field head the dispatcher reads), no writer',
    runs: timeRuns((i) => {
      reader.readLoad(i & 7, head);
      sink += head.numTotalTokens;
    }, ITERS),
  });
  rows.push({
    what: '`publish` (writer side, full record)',
    runs: timeRuns((i) => {
      snap.numRunningReqs = i;
      board.publish(i & 7, snap);
    }, ITERS),
  });

  // Same reads of rank 0 while a writer thread republishes rank 0 every 1 ms
  // (far above a real rank's once-per-pass rate), then back to back.
  const writerRows: [string, number][] = [
    ['every 1 ms', 1000],
    ['back to back', 0],
  ];
  const notes: string[] = [];
  for (const [label, periodUs] of writerRows) {
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const w = startThread<{ writes: number }>({
      kind: 'writer',
      buffer: board.buffer,
      rank: 0,
      periodUs,
      stop,
    } satisfies WriterJob);
    await new Promise((r) => setTimeout(r, 300));
    const giveUps0 = reader.giveUps;
    const t0 = performance.now();
    rows.push({
      what: `\`read\` of a slot its writer republishes ${label}`,
      runs: timeRuns(
        () => {
          if (reader.read(0, rec)) sink += rec.numTotalTokens;
        },
        periodUs > 0 ? ITERS / 4 : ITERS / 100,
      ),
    });
    rows.push({
      what: `\`readLoad\` of a slot its writer republishes ${label}`,
      runs: timeRuns(
        () => {
          if (reader.readLoad(0, head)) sink += head.numTotalTokens;
        },
        periodUs > 0 ? ITERS / 4 : ITERS / 100,
      ),
    });
    const secs = (performance.now() - t0) / 1000;
    Atomics.store(stop, 0, 1);
    const res = await w.result;
    notes.push(
      `writer ${label}: ${fmt((res?.writes ?? 0) / secs / 1000, 1)}k publishes/s during the reads, ${reader.giveUps - giveUps0} reads gave up`,
    );
  }
  if (sink === 42) console.log('');
  return { rows, writerNote: notes.join('; ') };
}

function benchDispatch(): ReadRow[] {
  const DP = 8;
  const ITERS = QUICK ? 100_000 : 1_000_000;
  const board = LoadSnapshotBoard.create(DP);
  const snap = createLoadSnapshot();
  const clock = new ManualClock(1000);
  for (let r = 0; r < DP; r++) {
    fillSnapshot(snap, r, r);
    snap.timestamp = 1000;
    board.publish(r, snap);
  }
  const rows: ReadRow[] = [];
  for (const method of ['round_robin', 'total_requests', 'total_tokens', 'minimum_tokens'] as const) {
    const d = new DpDispatcher({
      dpSize: DP,
      loads: board,
      clock,
      method,
      staleAfterMs: Number.POSITIVE_INFINITY,
    });
    // Each call advances time 0.05 ms: a budget refresh (8 head reads) every 20 ms = every 400 dispatches.
    rows.push({
      what: `\`dispatch\` ${method} (dpSize 8, refresh every 400th call)`,
      runs: timeRuns((i) => {
        clock.advance(0.05);
        d.dispatch(100 + (i & 255));
        if ((i & 1023) === 0) {
          // ranks acknowledge what they got, so minimum_tokens' rings stay bounded
          for (let r = 0; r < DP; r++) {
            fillSnapshot(snap, i, r);
            snap.timestamp = clock.nowMs();
            snap.ackedDispatchSeq = d.ackedSeq(r) + d.inflightRequests(r);
            board.publish(r, snap);
          }
        }
      }, ITERS),
    });
  }
  return rows;
}

interface PollResult {
  ranks: number;
  busy: boolean;
  seconds: number;
  snapshotPolls: number;
  snapshotLat: Float64Array;
  portPolls: number;
  portLat: Float64Array;
}

async function benchPolls(ranks: number, busy: boolean, seconds: number): Promise<PollResult> {
  const PREFILL_MS = 2000;
  const board = LoadSnapshotBoard.create(ranks);
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const threads = Array.from({ length: ranks }, (_, rank) =>
    startThread<never>({
      kind: 'rank',
      buffer: board.buffer,
      rank,
      prefillMs: PREFILL_MS,
      phaseMs: Math.round((rank * PREFILL_MS) / ranks),
      busy,
      stop,
    } satisfies RankJob),
  );
  await Promise.all(threads.map((t) => t.ready));
  // wait until every rank has published once (the last one starts after its phase)
  while (Array.from({ length: ranks }, (_, r) => board.sequence(r)).some((s) => s === 0)) {
    await new Promise((r) => setTimeout(r, 5));
  }

  const records = Array.from({ length: ranks }, () => createLoadSnapshot());
  const query = parseLoadsQuery({});
  const snapLat: number[] = [];
  const portLat: number[] = [];
  const pending = new Map<number, { t0: number; left: number }>();
  let nextId = 0;
  let bytes = 0;
  for (const t of threads) {
    t.worker.on('message', (m: unknown) => {
      if (typeof m !== 'object' || m === null || !('id' in m)) return;
      const p = pending.get((m as { id: number }).id);
      if (p === undefined) return;
      if (--p.left === 0) {
        portLat.push(performance.now() - p.t0);
        pending.delete((m as { id: number }).id);
      }
    });
  }

  const end = performance.now() + seconds * 1000;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      if (now >= end) {
        clearInterval(timer);
        resolve();
        return;
      }
      // side by side: one poll of each kind per tick
      const t0 = performance.now();
      const loads = collectLoads(board, records, null);
      const body = JSON.stringify(buildLoadsPayload(loads, query, { version: 'bench', nowMs: Date.now() }));
      snapLat.push(performance.now() - t0);
      bytes = body.length;
      const id = nextId++;
      pending.set(id, { t0: performance.now(), left: ranks });
      for (const t of threads) t.worker.postMessage({ id });
    }, 1);
  });
  const portPolls = nextId;
  // let every rank finish its current prefill and answer what it was asked
  const drainUntil = performance.now() + PREFILL_MS * 2;
  while (pending.size > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 10));
  const unanswered = pending.size;
  Atomics.store(stop, 0, 1);
  await Promise.all(threads.map((t) => t.worker.terminate()));
  if (unanswered > 0) console.log(`  ${unanswered} port polls unanswered after the drain`);
  console.log(`  /v1/loads body: ${bytes} bytes for ${ranks} ranks`);
  return {
    ranks,
    busy,
    seconds,
    snapshotPolls: snapLat.length,
    snapshotLat: Float64Array.from(snapLat).sort(),
    portPolls,
    portLat: Float64Array.from(portLat).sort(),
  };
}

async function main(): Promise<void> {
  const cores = os.availableParallelism();
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const date = new Date().toISOString();
  const load = os.loadavg()[0] ?? 0;
  console.log(`loads bench — ${cpu}, ${cores} cores, node ${process.version}${QUICK ? ' (--quick)' : ''}`);

  console.log('(a) snapshot reads…');
  const { rows: readRows, writerNote } = await benchReads();
  for (const r of readRows) console.log(`  ${r.what}: ${fmt(median(r.runs))} ns`);
  const dispatchRows = benchDispatch();
  for (const r of dispatchRows) console.log(`  ${r.what}: ${fmt(median(r.runs))} ns`);

  console.log('(b) /v1/loads polls during 2 s prefills…');
  const SECONDS = QUICK ? 4 : 10;
  const configs: [number, boolean][] = [
    [2, false],
    [4, false],
    [8, false],
    [1, true],
    [2, true],
  ];
  const polls: PollResult[] = [];
  for (const [n, busy] of configs) {
    const r = await benchPolls(n, busy, SECONDS);
    polls.push(r);
    console.log(
      `  N=${n} ${busy ? 'busy' : 'wait'}: snapshot p50 ${fmt(pct(r.snapshotLat, 50) * 1000)} µs p99 ${fmt(pct(r.snapshotLat, 99) * 1000)} µs (${r.snapshotPolls}); port p50 ${fmt(pct(r.portLat, 50))} ms p99 ${fmt(pct(r.portLat, 99))} ms (${r.portLat.length}/${r.portPolls})`,
    );
  }

  const lines = [
    '## Load snapshots and DP dispatch',
    '',
    `Command: \`tsx --conditions=@tsinfer/source packages/scheduler/bench/loads.bench.ts\`${QUICK ? ' `--quick`' : ''}  `,
    `Date: ${date}  `,
    `Machine: ${describeMachine(load)}`,
    '',
    '### (a) Reading a rank’s snapshot (LoadSnapshotBoard, seqlock) and dispatching',
    '',
    'Board of 8 ranks; the reader is a second board object on the same buffer, as on the controller thread. ns per call, median of 7 runs after a warm-up run.',
    '',
    '| operation | median ns/call | runs (ns/call) |',
    '|---|---:|---|',
    ...[...readRows, ...dispatchRows].map(
      (r) => `| ${r.what} | ${fmt(median(r.runs))} | ${r.runs.map((x) => fmt(x)).join(', ')} |`,
    ),
    '',
    `Concurrent writer thread: ${writerNote}. A read that overlaps a write retries; "gave up" = a read that overlapped writes for 65,536 attempts and returned false (never a torn record).`,
    '',
    '### (b) `/v1/loads` while every rank is inside a 2-second prefill',
    '',
    `N rank worker threads loop: publish a snapshot, then a 2,000 ms "prefill" that blocks the thread (\`Atomics.wait\`, or a busy loop: "busy"), then let their event loop run; rank r starts its first prefill r × 2000/N ms late, so the ranks are not in lockstep. The main thread ticks \`setInterval(1 ms)\` for ${SECONDS} s; each tick (i) builds the \`/v1/loads\` body from the snapshots (\`collectLoads\` + \`buildLoadsPayload\` + \`JSON.stringify\`), timed synchronously, and (ii) asks every rank for its load over its message port; that poll's latency runs until the last rank has answered (polls still open at the end are answered when the prefills end, and counted). Both kinds of poll share each tick, so they see the same conditions.`,
    '',
    '| ranks | prefill | snapshot polls | snapshot p50 | snapshot p99 | port polls | port p50 | port p99 |',
    '|---:|---|---:|---:|---:|---:|---:|---:|',
    ...polls.map(
      (r) =>
        `| ${r.ranks} | ${r.busy ? 'busy loop' : 'Atomics.wait'} | ${r.snapshotPolls.toLocaleString('en-US')} (${fmt(r.snapshotPolls / r.seconds, 0)}/s) | ${fmt(pct(r.snapshotLat, 50) * 1000)} µs | ${fmt(pct(r.snapshotLat, 99) * 1000)} µs | ${r.portLat.length.toLocaleString('en-US')} of ${r.portPolls.toLocaleString('en-US')} | ${fmt(pct(r.portLat, 50), 0)} ms | ${fmt(pct(r.portLat, 99), 0)} ms |`,
    ),
    '',
    `Busy-loop rows on this ${cores}-core machine: N busy ranks plus the polling main thread compete for the cores, so the snapshot path's tail includes OS scheduling.`,
  ];
  const section = lines.join('\n');
  console.log(`\n${section}`);
  if (WRITE)
    console.log(`
wrote ${writeBenchSection('loads', section)}`);
}

if (isMainThread) {
  await main();
} else {
  const job = workerData as RankJob | WriterJob;
  if (job.kind === 'rank') runRank(job);
  else runWriter(job);
}
