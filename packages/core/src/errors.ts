/**
 * Every error tsinfer raises on purpose is a `TsinferError` with a stable
 * string `code` (`TSI_ERR_*`) and the HTTP status a server should answer
 * with. Codes are API: never renamed, never reused. The full list with
 * meanings is `ERROR_CODES` below and docs/errors.md (a test keeps the two
 * in step).
 */

/** Every code, its HTTP status and what it means. */
export const ERROR_CODES = {
  TSI_ERR_INVALID_CONFIG: {
    status: 400,
    meaning: 'A flag or option has an invalid value; the message names the flag and the accepted range.',
  },
  TSI_ERR_COLLECTIVE_TIMEOUT: {
    status: 503,
    meaning:
      'A cross-rank collective (all-gather) did not complete in time: some rank stopped or is stuck. Every waiting rank gets this error instead of hanging.',
  },
  TSI_ERR_COLLECTIVE_CLOSED: {
    status: 503,
    meaning: 'A collective was used after it was closed or after an earlier round failed on some rank.',
  },
  TSI_ERR_DELAYER_PROTOCOL: {
    status: 500,
    meaning:
      "The prefill delayer or its collective was driven against its contract (beginPass while a pass is open, negotiate/finalize outside a pass, an all-gather whose row width or row count does not fit). Going on would make this rank's all-gathers fall out of step with its peers.",
  },
  TSI_ERR_INVALID_PROFILE: {
    status: 400,
    meaning:
      'A simulated-runner profile (sim:<profile.json>) cannot be read or has an invalid field; the message names the file and the field.',
  },
  TSI_ERR_KV_CAPACITY: {
    status: 500,
    meaning:
      "A forward pass would hold more KV tokens than the runner's cache capacity; the scheduler's KV budget should have prevented it. Nothing was changed.",
  },
  TSI_ERR_INVALID_BATCH: {
    status: 500,
    meaning:
      'A ForwardBatch broke the scheduler/runner contract (unknown or duplicate request id, a chunk whose start is not the cache length, a decode with no sampled token, a sequence past the context length). A bug in the caller; nothing was changed.',
  },
  TSI_ERR_MODEL_LOAD: {
    status: 500,
    meaning:
      'A model directory cannot be loaded: a missing file, unparsable JSON, a missing config field, or a graph whose inputs/outputs do not match its layout; the message names the file and what is wrong.',
  },
  TSI_ERR_DEVICE_UNAVAILABLE: {
    status: 503,
    meaning:
      'The requested execution device cannot be used (for --device cuda: the CUDA provider libraries are not installed beside the onnxruntime-node binding, or the session failed to start on it); the message says how to fix it.',
  },
  TSI_ERR_NATIVE_UNAVAILABLE: {
    status: 503,
    meaning:
      'The native backend (--runtime-backend native) cannot be used: its addon is not built, failed to load, or does not support this model (the optimum layout); the message says why and how to build it. The JS backend is unaffected.',
  },
  TSI_ERR_WORKER_CRASHED: {
    status: 503,
    meaning:
      'The worker thread running a model runner crashed or exited; every pending and later call on that runner fails with this error.',
  },
  TSI_ERR_NO_CHAT_TEMPLATE: {
    status: 400,
    meaning:
      'A chat request was sent to a model whose tokenizer_config.json has no chat_template; use the completions endpoint or a model with a template.',
  },
  TSI_ERR_INVALID_MESSAGES: {
    status: 400,
    meaning:
      'A chat message list is invalid (not a non-empty array, a message without a string role, a content that is not a string or a list of text parts); the message names the offending index.',
  },
  TSI_ERR_CHAT_TEMPLATE: {
    status: 400,
    meaning:
      "The model's chat template rejected the messages (raise_exception, e.g. an unsupported role or ordering) or failed to render them; the message carries the template's reason.",
  },
  TSI_ERR_INVALID_TOKEN_ID: {
    status: 400,
    meaning:
      'A token id is not an integer in [0, vocabSize) of the tokenizer (prompt token ids or ids to decode).',
  },
  TSI_ERR_INVALID_REQUEST: {
    status: 400,
    meaning:
      'A request cannot be scheduled: an empty prompt, a prompt that leaves no room for one new token within the context length or the KV capacity, max_new_tokens < 1, or a request id already live on the rank.',
  },
  TSI_ERR_SCHEDULER_STATE: {
    status: 500,
    meaning:
      'A Scheduler was driven against its contract: step() while a step is still running, or a use after close(). A bug in the caller.',
  },
  TSI_ERR_INVALID_DP_RANK: {
    status: 400,
    meaning:
      'A request pinned a data-parallel rank (routed_dp_rank) that is not an integer in [0, dp_size); the message gives the valid range.',
  },
  TSI_ERR_RANK_FAILED: {
    status: 503,
    meaning:
      'The data-parallel rank a request was pinned to (routed_dp_rank) is out of dispatch: its worker exited, or its load snapshot is older than the staleness limit.',
  },
  TSI_ERR_NO_LIVE_RANK: {
    status: 503,
    meaning:
      'No data-parallel rank can take a request: every rank is dead (worker exited), has not published a load snapshot yet, or has a snapshot older than the staleness limit.',
  },
  TSI_ERR_INVALID_QUERY: {
    status: 400,
    meaning:
      'A query parameter of an HTTP endpoint is invalid (e.g. /v1/loads include=<unknown section> or a non-integer dp_rank); the message names the parameter and the accepted values.',
  },
  TSI_ERR_BAD_REQUEST: {
    status: 400,
    meaning:
      'An HTTP request body or parameter is invalid (schema violation, prompt + max_tokens over the context length, max_tokens < 1, n over the limit); the message names the field.',
  },
  TSI_ERR_UNAUTHORIZED: {
    status: 401,
    meaning:
      'The server was started with --api-key and the request has no Authorization: Bearer <key> header or a wrong key.',
  },
  TSI_ERR_MODEL_NOT_FOUND: {
    status: 404,
    meaning:
      'The request names a model the server does not serve (see GET /v1/models and --served-model-name).',
  },
  TSI_ERR_QUEUE_FULL: {
    status: 503,
    meaning:
      'The server already holds --max-queued-requests requests waiting for their first token; the response carries Retry-After. Retry later.',
  },
  TSI_ERR_SHUTTING_DOWN: {
    status: 503,
    meaning:
      'The server is draining (SIGTERM or close()): it accepts no new requests, and in-flight ones still running when --shutdown-timeout expires are aborted with this error.',
  },
  TSI_ERR_CONTEXT_LENGTH: {
    status: 400,
    meaning:
      "A request does not fit the model's context: the prompt leaves no room for one new token (min(context, KV capacity) - 1), or prompt tokens + max_tokens exceed the context length; the message gives the counts.",
  },
  TSI_ERR_ROUTE_NOT_FOUND: {
    status: 404,
    meaning: 'No HTTP route matches the method and path.',
  },
  TSI_ERR_INTERNAL: {
    status: 500,
    meaning:
      'An unexpected error inside the server (a bug); the message carries the original error. The server keeps running.',
  },
  TSI_ERR_BENCH_DATASET: {
    status: 400,
    meaning:
      'tsinfer bench cannot build its workload: the dataset file (--dataset-path) is unreadable, not a ShareGPT-format JSON array, or has no usable prompt; the message names the file.',
  },
  TSI_ERR_BENCH_SERVER: {
    status: 503,
    meaning:
      "tsinfer bench cannot use the server it benchmarks: GET /v1/models did not answer 200 within --ready-check-timeout-sec, no model id was found, every warm-up request failed, or POST /flush_cache failed; the message carries the server's answer.",
  },
  TSI_ERR_BENCH_REPORT_INPUT: {
    status: 400,
    meaning:
      'tsinfer bench report cannot read a results file: it is missing, or a line is not a JSON object from tsinfer bench / bench_serving; the message names the file and line.',
  },
  TSI_ERR_NO_HEALTHY_WORKER: {
    status: 503,
    meaning:
      'tsinfer gateway has no worker that can take the request: none registered, every worker failed its health checks, or every circuit breaker is open (a half-open one already has its probe in flight).',
  },
  TSI_ERR_UPSTREAM: {
    status: 502,
    meaning:
      'tsinfer gateway could not get a complete answer from a worker: the connection failed or broke before the response was complete and no retry was left (or the first byte had already reached the client); the message names the worker and the cause.',
  },
  TSI_ERR_UPSTREAM_TIMEOUT: {
    status: 504,
    meaning:
      'tsinfer gateway: a worker did not finish the request within --request-timeout-secs; the request was aborted upstream.',
  },
  TSI_ERR_WORKER_NOT_FOUND: {
    status: 404,
    meaning:
      'tsinfer gateway: the worker URL given to DELETE /workers (or /remove_worker) is not registered.',
  },
} as const satisfies Record<string, { status: number; meaning: string }>;

export type TsinferErrorCode = keyof typeof ERROR_CODES;

const BRAND = Symbol.for('tsinfer.error');

/** Base class of every tsinfer error. `instanceof` works across copies of the package. */
export class TsinferError extends Error {
  readonly code: TsinferErrorCode;
  readonly statusCode: number;

  constructor(code: TsinferErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TsinferError';
    this.code = code;
    this.statusCode = ERROR_CODES[code].status;
    Object.defineProperty(this, BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the subclass being tested; subclasses use the normal prototype check.
    if (this !== TsinferError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }

  toJSON(): { code: TsinferErrorCode; message: string; statusCode: number } {
    return { code: this.code, message: this.message, statusCode: this.statusCode };
  }
}

/** A flag or option value is out of range. `flag` is the CLI spelling, e.g. `--prefill-delayer-queue-min-ratio`. */
export class InvalidConfigError extends TsinferError {
  readonly flag: string;
  constructor(flag: string, message: string) {
    super('TSI_ERR_INVALID_CONFIG', `${flag}: ${message}`);
    this.name = 'InvalidConfigError';
    this.flag = flag;
  }
}

/** A collective round did not complete within its timeout. */
export class CollectiveTimeoutError extends TsinferError {
  constructor(message: string) {
    super('TSI_ERR_COLLECTIVE_TIMEOUT', message);
    this.name = 'CollectiveTimeoutError';
  }
}

/** A collective was used after close or after a failed round. */
export class CollectiveClosedError extends TsinferError {
  constructor(message: string) {
    super('TSI_ERR_COLLECTIVE_CLOSED', message);
    this.name = 'CollectiveClosedError';
  }
}

/** The error body every tsinfer HTTP endpoint answers with: OpenAI's shape, `code` a `TSI_ERR_*` code. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}

/** OpenAI's error `type` for an HTTP status. */
export function openAIErrorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 503) return 'service_unavailable_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}
