/**
 * Test helpers (not shipped): simulated-model profiles, a recording sink, and
 * reference runs of a request alone.
 */
import { type SimProfile, validateSimProfile } from '@tsinfer/runtime';
import type { SchedulerConfig } from '../src/config.js';
import type { Request, RequestInput, StopStringMatcher } from '../src/request.js';
import type { OutputSink } from '../src/scheduler.js';
import type { PassStats } from '../src/stats.js';
import { VirtualCluster } from '../src/virtual.js';

export interface ProfileOptions {
  kv?: number;
  context?: number;
  vocab?: number;
  eos?: number[];
  eosProbability?: number;
  maxBatch?: number;
  cost?: Partial<Record<string, number>>;
}

/** A simulated model; default cost: 1 ms per pass + 0.01 ms per prefill token + 0.05 ms per decode row. */
export function profile(o: ProfileOptions = {}): SimProfile {
  return validateSimProfile({
    format: 'tsinfer-sim-profile/1',
    source: 'scheduler tests: made-up numbers',
    model: {
      name: 'sim-test',
      vocabSize: o.vocab ?? 1000,
      contextLength: o.context ?? 8192,
      eosTokenIds: o.eos ?? [0],
      kvCapacityTokens: o.kv ?? 100_000,
      ...(o.maxBatch !== undefined ? { maxBatch: o.maxBatch } : {}),
    },
    cost: {
      fixedMs: 1,
      prefillFixedMs: 2,
      perPrefillTokenMs: 0.01,
      decodeFixedMs: 1,
      perDecodeRequestMs: 0.05,
      ...o.cost,
    },
    generation: { eosProbability: o.eosProbability ?? 0 },
  });
}

export interface Finished {
  rid: string;
  rank: number;
  tokens: number[];
  reason: string | null;
  matched: number | string | null;
  retractions: number;
  finishedMs: number;
  firstTokenMs: number;
}

/** Records streamed tokens, finishes and pass stats per rank. */
export class Recorder {
  readonly streamed = new Map<string, number[]>();
  readonly finished = new Map<string, Finished>();
  readonly passes: PassStats[] = [];
  readonly onFinishHooks: Array<(f: Finished) => void> = [];
  readonly #keepPasses: boolean;

  constructor(options: { keepPasses?: boolean } = {}) {
    this.#keepPasses = options.keepPasses ?? true;
  }

  sink(rank: number): OutputSink {
    return {
      onToken: (req: Request, token: number) => {
        let a = this.streamed.get(req.rid);
        if (!a) {
          a = [];
          this.streamed.set(req.rid, a);
        }
        a.push(token);
      },
      onFinish: (req: Request) => {
        const f: Finished = {
          rid: req.rid,
          rank,
          tokens: Array.from(req.outputTokens),
          reason: req.finishReason,
          matched: req.matchedStop,
          retractions: req.retractions,
          finishedMs: req.finishedMs,
          firstTokenMs: req.firstTokenMs,
        };
        this.finished.set(req.rid, f);
        for (const h of this.onFinishHooks) h(f);
      },
      onPass: (st: PassStats) => {
        if (this.#keepPasses) this.passes.push(structuredClone(st));
      },
    };
  }
}

/** Deterministic prompt of length n for a seed. */
export function prompt(n: number, seed: number, vocab = 1000): Int32Array {
  const out = new Int32Array(n);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    out[i] = 1 + (x % (vocab - 1));
  }
  return out;
}

/** The tokens a request generates when it runs alone (same profile, no budget pressure). */
export async function runAlone(
  p: SimProfile,
  input: RequestInput,
  config: Partial<SchedulerConfig> = {},
): Promise<Finished> {
  const rec = new Recorder();
  const cluster = new VirtualCluster({
    profile: p,
    config: { ...config, dpSize: 1 },
    sink: (r) => rec.sink(r),
  });
  cluster.submit(0, 0, input);
  await cluster.run();
  const f = rec.finished.get(input.rid);
  if (!f) throw new Error(`runAlone: ${input.rid} did not finish`);
  return f;
}

/** A stop-string matcher over a toy detokenizer: token t → the letter 'a' + t % 26. */
export function letters(tokens: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < tokens.length; i++) s += String.fromCharCode(97 + (tokens[i]! % 26));
  return s;
}

export function letterStopMatcher(stops: string[]): StopStringMatcher {
  let text = '';
  return {
    push(token: number): string | null {
      text += String.fromCharCode(97 + (token % 26));
      for (const s of stops) if (text.endsWith(s)) return s;
      return null;
    },
  };
}
