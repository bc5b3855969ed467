import { ManualClock } from '@tsinfer/core';
import { createGateway, type GatewayApp, type GatewayOptions } from '../src/gateway.js';

export interface TestGateway {
  app: GatewayApp;
  url: string;
  clock: ManualClock;
  sleeps: number[];
}

/** A gateway on a random port with a manual clock, no background timers and a sleep that only records. */
export async function startTestGateway(options: GatewayOptions): Promise<TestGateway> {
  const clock = new ManualClock(1_000_000);
  const sleeps: number[] = [];
  const app = await createGateway({
    logLevel: 'silent',
    background: false,
    clock,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...options,
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url, clock, sleeps };
}

/** The JSON bodies the tests look into (workers' answers, gateway errors, /workers, /v1/models). */
export interface Reply {
  object?: string;
  worker?: string;
  dp_rank?: number;
  choices?: Array<{ text?: string; finish_reason?: string | null }>;
  error?: { message: string; type: string; param: string | null; code: string };
  data?: Array<{ id: string; workers: string[] }>;
  workers?: Array<{ url: string }>;
  meta_info?: { dp_rank: number };
  internal_states?: Array<{ num_running_reqs: number; num_waiting_reqs: number }>;
  engine_inflight_requests?: number;
}

export async function getJson(url: string): Promise<Reply> {
  return (await (await fetch(url)).json()) as Reply;
}

export async function postJson(
  url: string,
  body: unknown,
  signal?: AbortSignal,
): Promise<{ status: number; json: Reply }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
  const text = await res.text();
  let json: Reply = {};
  try {
    json = JSON.parse(text) as Reply;
  } catch {
    json = { error: { message: text, type: '', param: null, code: 'NOT_JSON' } };
  }
  return { status: res.status, json };
}

/** Reads an SSE response to its end; returns the data payloads. */
export async function readSse(res: Response): Promise<string[]> {
  const text = await res.text();
  return text
    .split('\n\n')
    .map((b) => b.trim())
    .filter((b) => b.startsWith('data: '))
    .map((b) => b.slice(6));
}
