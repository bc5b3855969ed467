/**
 * Hand-rolled server-sent events on the raw response. Streaming is decided
 * by the body's `stream: true`, never by `Accept` (openai-node sends
 * `Accept: application/json` even when streaming). Every event is written
 * at once (no batching: clients timestamp chunks on arrival), the stream
 * ends with `data: [DONE]` and the response is closed right after it (SGLang's
 * bench_serving reads until the body ends). Writes honour backpressure.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';

export class SseStream {
  readonly #res: ServerResponse;
  #closed = false;

  constructor(reply: FastifyReply, headers: Record<string, string> = {}) {
    reply.hijack();
    const res = reply.raw;
    this.#res = res;
    const socket = res.socket as { setNoDelay?: (on: boolean) => void } | null;
    socket?.setNoDelay?.(true); // absent on fastify.inject's mock socket
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      ...headers,
    });
    res.once('close', () => {
      this.#closed = true;
    });
  }

  /** True once the client went away or the stream ended. */
  get closed(): boolean {
    return this.#closed || this.#res.destroyed;
  }

  /** Writes one `data:` event; resolves when the socket can take more. */
  async send(data: unknown): Promise<void> {
    await this.#write(`data: ${JSON.stringify(data)}\n\n`);
  }

  async #write(text: string): Promise<void> {
    if (this.closed) return;
    if (this.#res.write(text)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.#res.off('drain', done);
        this.#res.off('close', done);
        resolve();
      };
      this.#res.on('drain', done);
      this.#res.on('close', done);
    });
  }

  /** Writes `data: [DONE]` and closes the response. */
  async done(): Promise<void> {
    await this.#write('data: [DONE]\n\n');
    this.end();
  }

  end(): void {
    if (this.#res.writableEnded) return;
    this.#res.end();
  }
}
