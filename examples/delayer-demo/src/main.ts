/**
 * The prefill delayer across four data-parallel ranks (worker threads),
 * first off, then with the queue trigger on. Run: `pnpm start` at the repo
 * root (or `node examples/delayer-demo/dist/main.js` after a build).
 */
import { startWorker } from '@tsinfer/core';
import { createSharedAllGatherInit, DELAYER_ROW_WIDTH, type PrefillDelayerConfig } from '@tsinfer/delayer';
import type { RankParams, RankReport } from './rank.js';

const DP_SIZE = 4;

export async function runDemo(
  delayer: Partial<PrefillDelayerConfig>,
  overrides: Partial<RankParams> = {},
): Promise<RankReport[]> {
  const init = createSharedAllGatherInit(DP_SIZE, DELAYER_ROW_WIDTH, { timeoutMs: 10_000 });
  const reports = await Promise.all(
    Array.from({ length: DP_SIZE }, (_, rank) => {
      const params: RankParams = {
        init,
        rank,
        dpSize: DP_SIZE,
        passes: 1500,
        passMs: 1,
        seed: 7,
        maxRunningRequests: 32,
        prefillMaxRequests: 8,
        arrivalsPerPass: 0.25,
        minOutputPasses: 20,
        maxOutputPasses: 220,
        delayer,
        ...overrides,
      };
      return new Promise<RankReport>((resolve, reject) => {
        const worker = startWorker(import.meta.url, './rank', { workerData: params });
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => {
          if (code !== 0) reject(new Error(`rank ${rank} exited with code ${code}`));
        });
      });
    }),
  );
  return reports;
}

/** Passes in which at least one rank prefilled: under DP attention each stalls decode on every rank. */
export function globalPrefillPasses(reports: readonly RankReport[]): number {
  const passes = reports[0]?.prefillMask.length ?? 0;
  let n = 0;
  for (let i = 0; i < passes; i++) if (reports.some((r) => r.prefillMask[i] === 1)) n++;
  return n;
}

function summarize(label: string, reports: RankReport[]): void {
  console.log(`\n${label}`);
  console.log(
    'rank  prefill passes  admitted  mean batch  mean running  p99 queue wait (passes)  delayer outcomes',
  );
  for (const r of reports) {
    const outcomes = Object.entries(r.outcomes)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    console.log(
      `${String(r.rank).padStart(4)}  ${String(r.prefillPasses).padStart(14)}  ${String(r.admitted).padStart(8)}  ${(
        r.admitted / Math.max(1, r.prefillPasses)
      )
        .toFixed(2)
        .padStart(
          10,
        )}  ${r.meanRunning.toFixed(1).padStart(12)}  ${String(r.p99QueueWaitPasses).padStart(23)}  ${outcomes}`,
    );
  }
  console.log(
    `passes in which some rank prefilled (each stalls decode on all ranks): ${globalPrefillPasses(reports)}`,
  );
}

async function main(): Promise<void> {
  console.log(
    `tsinfer prefill-delayer demo: ${DP_SIZE} DP ranks (worker threads, DP attention), 1500 passes of 1 ms each,\n` +
      'random arrivals and output lengths, max 32 running and 8 admitted per prefill per rank.\n' +
      'In DP-attention deployments every prefill on any rank stalls decode on all of them,\n' +
      'so fewer, larger prefill batches are better.',
  );
  summarize(
    'Delayer off (every rank admits whenever it can):',
    await runDemo({ enabled: false, maxDelayPasses: 30 }),
  );
  summarize(
    'Delayer on, --prefill-delayer-queue-min-ratio 0.25 --prefill-delayer-max-delay-ms 200:',
    await runDemo({ enabled: true, queueMinRatio: 0.25, maxDelayMs: 200 }),
  );
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
