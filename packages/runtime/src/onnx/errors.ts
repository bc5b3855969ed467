import { TsinferError } from '@tsinfer/core';

/** An ONNX file cannot be read: not a ModelProto, missing or truncated external data, a malformed tensor. */
export class InvalidModelError extends TsinferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TSI_ERR_MODEL_LOAD', message, options);
    this.name = 'InvalidModelError';
  }
}
