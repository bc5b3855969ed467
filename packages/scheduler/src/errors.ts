import { TsinferError } from '@tsinfer/core';

/** A request cannot be scheduled (TSI_ERR_INVALID_REQUEST). */
export class InvalidRequestError extends TsinferError {
  readonly rid: string;
  constructor(rid: string, message: string) {
    super('TSI_ERR_INVALID_REQUEST', `request ${JSON.stringify(rid)}: ${message}`);
    this.name = 'InvalidRequestError';
    this.rid = rid;
  }
}

/** The Scheduler was driven against its contract (TSI_ERR_SCHEDULER_STATE). */
export class SchedulerStateError extends TsinferError {
  constructor(message: string) {
    super('TSI_ERR_SCHEDULER_STATE', message);
    this.name = 'SchedulerStateError';
  }
}
