/**
 * Every error that reaches HTTP leaves in OpenAI's shape:
 *
 *   {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": "TSI_ERR_BAD_REQUEST"}}
 *
 * with the error's status. `code` is the stable `TSI_ERR_*` code; `type` is
 * OpenAI's class for the status; `param` names the offending field when
 * known. fastify's own errors (schema validation, bad JSON, body too large)
 * are mapped here too, so no response ever has another shape.
 */
import {
  ERROR_CODES,
  type OpenAIErrorBody,
  openAIErrorType,
  TsinferError,
  type TsinferErrorCode,
} from '@tsinfer/core';

/** A TsinferError that names the request field it is about (OpenAI's `param`). */
export class HttpError extends TsinferError {
  readonly param: string | null;
  constructor(
    code: TsinferErrorCode,
    message: string,
    param: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'HttpError';
    this.param = param;
  }
}

export function badRequest(message: string, param: string | null = null): HttpError {
  return new HttpError('TSI_ERR_BAD_REQUEST', message, param);
}

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message?: string;
  validation?: ReadonlyArray<unknown>;
  validationContext?: string;
}

type ValidationItem = {
  instancePath?: string;
  params?: Record<string, unknown>;
  message?: string;
  keyword?: string;
};

function pathOf(v: ValidationItem): string[] {
  const parts = (v.instancePath ?? '').split('/').filter((p) => p !== '');
  const params = v.params ?? {};
  const missing = params['missingProperty'] ?? (params['requiredProperties'] as unknown[] | undefined)?.[0];
  if (typeof missing === 'string') parts.push(missing);
  const extra = params['additionalProperty'];
  if (typeof extra === 'string') parts.push(extra);
  return parts;
}

/**
 * The offending field of a schema violation as a dotted OpenAI `param`
 * (`messages.0.role`) and a message naming it. Errors of one union
 * (`anyOf`) at the same path are merged into "must be number or null".
 */
function describeValidation(err: FastifyLikeError): { param: string | null; message: string } {
  const items = (err.validation ?? []) as readonly ValidationItem[];
  const first = items[0];
  if (first === undefined) return { param: null, message: 'body: is invalid' };
  const parts = pathOf(first);
  const param = parts.length > 0 ? parts.join('.') : null;
  const where = param ?? err.validationContext ?? 'body';
  const same = items.filter((v) => (v.instancePath ?? '') === (first.instancePath ?? ''));
  let message = first.message ?? 'is invalid';
  if (same.some((v) => v.keyword === 'anyOf')) {
    const types = same.filter((v) => v.keyword === 'type').map((v) => String(v.params?.['type']));
    const other = same.find((v) => v.keyword !== 'type' && v.keyword !== 'anyOf');
    message = other?.message ?? (types.length > 0 ? `must be ${[...new Set(types)].join(' or ')}` : message);
  }
  return { param, message: `${where}: ${message}` };
}

/** Maps anything thrown to a status and an OpenAI error body. */
export function toErrorResponse(err: unknown): { status: number; body: OpenAIErrorBody } {
  if (err instanceof TsinferError) {
    const param = err instanceof HttpError ? err.param : paramOfTsinferError(err);
    return {
      status: err.statusCode,
      body: { error: { message: err.message, type: openAIErrorType(err.statusCode), param, code: err.code } },
    };
  }
  const e = (typeof err === 'object' && err !== null ? err : {}) as FastifyLikeError;
  if (Array.isArray(e.validation)) {
    const { param, message } = describeValidation(e);
    return {
      status: 400,
      body: { error: { message, type: 'invalid_request_error', param, code: 'TSI_ERR_BAD_REQUEST' } },
    };
  }
  const status =
    typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500;
  if (status < 500) {
    // fastify's client errors: bad JSON, wrong content type, body too large, ...
    return {
      status,
      body: {
        error: {
          message: e.message ?? 'bad request',
          type: openAIErrorType(status),
          param: null,
          code: status === 404 ? 'TSI_ERR_ROUTE_NOT_FOUND' : 'TSI_ERR_BAD_REQUEST',
        },
      },
    };
  }
  return {
    status: 500,
    body: {
      error: {
        message: `internal error: ${e.message ?? String(err)}`,
        type: 'server_error',
        param: null,
        code: 'TSI_ERR_INTERNAL',
      },
    },
  };
}

function paramOfTsinferError(err: TsinferError): string | null {
  switch (err.code) {
    case 'TSI_ERR_INVALID_DP_RANK':
      return 'routed_dp_rank';
    case 'TSI_ERR_INVALID_MESSAGES':
    case 'TSI_ERR_CHAT_TEMPLATE':
    case 'TSI_ERR_NO_CHAT_TEMPLATE':
      return 'messages';
    case 'TSI_ERR_INVALID_TOKEN_ID':
      return 'prompt';
    default:
      return null;
  }
}

/** An error carried by a `finish` event (`reason: 'abort'`), as a TsinferError-like body. */
export function errorOfFinish(error: { code: string; message: string }): OpenAIErrorBody {
  const status = statusOfCode(error.code);
  return { error: { message: error.message, type: openAIErrorType(status), param: null, code: error.code } };
}

export function statusOfCode(code: string): number {
  return (ERROR_CODES as Record<string, { status: number } | undefined>)[code]?.status ?? 500;
}
