/**
 * Runnable example of the queue trigger (docs/delayer.md):
 *
 *   npx tsx packages/delayer/src/examples/queue-threshold.ts
 *
 * One DP rank (DP attention on, dp size 1), running batch 64,
 * --prefill-delayer-queue-min-ratio 0.25, max_prefill_bs 20, 128 slots:
 * threshold = min(trunc(64 × 0.25), 20) = 16. A queue of 5 waits, a queue of
 * 16 is admitted, and a queue that stays at 5 is released by the 5000 ms cap.
 */
import { pathToFileURL } from 'node:url';
import { type DecisionConfig, type DelayerReason, type DelayerState, decidePrefill } from '../decide.js';
import { encodeDelayerRow } from '../row.js';

export interface ExampleStep {
  waitingQueueLen: number;
  atMs: number;
  allow: boolean;
  reason: DelayerReason;
}

export function runQueueThresholdExample(): ExampleStep[] {
  const config: DecisionConfig = {
    maxDelayPasses: 30,
    tokenUsageLowWatermark: null,
    queueMinRatio: 0.25,
    maxDelayMs: null, // unset: 5000 ms
    dpSize: 1,
    enableDpAttention: true,
  };
  // skipFirst false: the delayer's one-time "let the first trigger through" was already used.
  let state: DelayerState = { prev: null, skipFirst: false };
  const steps: Array<[waitingQueueLen: number, atMs: number]> = [
    [5, 0], // 5 < 16: delay (an episode starts at t=0)
    [16, 100], // 16 >= 16: admit, the episode waited 1 pass / 100 ms
    [5, 1000], // a new episode starts at t=1000
    [5, 3000], // 2000 ms in: still waiting
    [5, 6000], // 5000 ms in: the wall-clock cap releases (labelled wait_success, as in SGLang)
  ];
  const out: ExampleStep[] = [];
  for (const [waitingQueueLen, atMs] of steps) {
    const row = encodeDelayerRow(
      { prefillable: true, tokenUsage: 0.5, runningBatch: 64, maxPrefillBs: 20, waitingQueueLen },
      config.tokenUsageLowWatermark,
    );
    const d = decidePrefill([row], { maxRunningRequests: 128 }, state, atMs, config);
    state = d.state;
    out.push({ waitingQueueLen, atMs, allow: d.allow, reason: d.reason });
  }
  return out;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const s of runQueueThresholdExample()) {
    console.log(
      `t=${s.atMs}ms queue=${s.waitingQueueLen}: ${s.allow ? 'admit' : 'wait'} (${s.reason || '""'})`,
    );
  }
}
