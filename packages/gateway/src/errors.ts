/**
 * Errors the gateway answers itself leave in OpenAI's shape, as the tsinfer
 * server's do: `{"error": {"message", "type", "param", "code"}}` where
 * `code` is a stable `TSI_ERR_*` code.
 */
import { TsinferError, type TsinferErrorCode } from '@tsinfer/core';

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}

export function openAIErrorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 503) return 'service_unavailable_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

export class GatewayError extends TsinferError {
  readonly param: string | null;
  constructor(code: TsinferErrorCode, message: string, param: string | null = null) {
    super(code, message);
    this.name = 'GatewayError';
    this.param = param;
  }
}

/** Any thrown value → status + OpenAI body (fastify's own errors included). */
export function toErrorResponse(err: unknown): { status: number; body: OpenAIErrorBody } {
  if (err instanceof TsinferError) {
    const param = err instanceof GatewayError ? err.param : null;
    return {
      status: err.statusCode,
      body: { error: { message: err.message, type: openAIErrorType(err.statusCode), param, code: err.code } },
    };
  }
  const e = (typeof err === 'object' && err !== null ? err : {}) as { statusCode?: number; message?: string };
  const status =
    typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500;
  const code =
    status === 404 ? 'TSI_ERR_ROUTE_NOT_FOUND' : status < 500 ? 'TSI_ERR_BAD_REQUEST' : 'TSI_ERR_INTERNAL';
  return {
    status,
    body: { error: { message: e.message ?? String(err), type: openAIErrorType(status), param: null, code } },
  };
}
