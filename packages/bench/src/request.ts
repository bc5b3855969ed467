/**
 * One benchmark request over HTTP: bench_serving's `async_request_*`
 * request functions. The clock starts when this function runs (after the
 * concurrency gate), and every line is timestamped as it is read.
 */
import type { Clock } from '@tsinfer/core';
import {
  buildPayload,
  LineSplitter,
  newOutput,
  type PayloadOptions,
  type Protocol,
  parseNonStreamed,
  type RequestInput,
  type RequestOutput,
  StreamParser,
} from './backends.js';
import type { HttpClient } from './http.js';

export interface RequestContext {
  client: HttpClient;
  clock: Clock;
  apiUrl: string;
  protocol: Protocol;
  payload: PayloadOptions;
}

const sec = (clock: Clock): number => clock.nowMs() / 1000;

function describe(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}

export async function sendRequest(ctx: RequestContext, input: RequestInput): Promise<RequestOutput> {
  const body = buildPayload(ctx.protocol, input, ctx.payload);
  const st = sec(ctx.clock);
  try {
    const res = await ctx.client.request('POST', ctx.apiUrl, { json: body });
    if (res.status !== 200) {
      const parts: Buffer[] = [];
      for await (const c of res.body) parts.push(c);
      const out = newOutput(input, st);
      out.error = `${res.statusMessage}: ${Buffer.concat(parts).toString('utf8')}`;
      return out;
    }
    if (ctx.payload.disableStream) {
      const parts: Buffer[] = [];
      for await (const c of res.body) parts.push(c);
      return parseNonStreamed(ctx.protocol, input, st, Buffer.concat(parts).toString('utf8'), sec(ctx.clock));
    }
    const parser = new StreamParser(ctx.protocol, input, st);
    const lines = new LineSplitter();
    for await (const chunk of res.body) {
      for (const line of lines.push(chunk)) parser.line(line, sec(ctx.clock));
    }
    for (const line of lines.end()) parser.line(line, sec(ctx.clock));
    return parser.finish();
  } catch (err) {
    const out = newOutput(input, st);
    out.error = describe(err);
    return out;
  }
}
