import { TsinferError } from '@tsinfer/core';

/** A sim profile cannot be read or has an invalid field. `file` and `field` say where. */
export class InvalidProfileError extends TsinferError {
  readonly file: string;
  readonly field: string;
  constructor(file: string, field: string, message: string, options?: { cause?: unknown }) {
    super('TSI_ERR_INVALID_PROFILE', `${file}: ${field ? `${field}: ` : ''}${message}`, options);
    this.name = 'InvalidProfileError';
    this.file = file;
    this.field = field;
  }
}

/** A forward pass would exceed the runner's KV capacity. */
export class KvCapacityError extends TsinferError {
  readonly requestedTokens: number;
  readonly capacityTokens: number;
  constructor(requestedTokens: number, capacityTokens: number) {
    super(
      'TSI_ERR_KV_CAPACITY',
      `forward would hold ${requestedTokens} KV tokens, capacity is ${capacityTokens}; nothing was changed`,
    );
    this.name = 'KvCapacityError';
    this.requestedTokens = requestedTokens;
    this.capacityTokens = capacityTokens;
  }
}

/** A ForwardBatch broke the scheduler/runner contract. */
export class InvalidBatchError extends TsinferError {
  constructor(message: string) {
    super('TSI_ERR_INVALID_BATCH', `${message}; nothing was changed`);
    this.name = 'InvalidBatchError';
  }
}
