/**
 * Errors the gateway answers itself leave in OpenAI's shape, as the tsinfer
 * server's do: `{"error": {"message", "type", "param", "code"}}` where
 * `code` is a stable `TSI_ERR_*` code.
 */
import { type OpenAIErrorBody, openAIErrorType, TsinferError, type TsinferErrorCode } from '@tsinfer/core';

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
