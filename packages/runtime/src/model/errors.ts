import { TsinferError } from '@tsinfer/core';

/** A model directory cannot be loaded; the message names the file and what is wrong. */
export class ModelLoadError extends TsinferError {
  readonly file: string;
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super('TSI_ERR_MODEL_LOAD', `${file}: ${message}`, options);
    this.name = 'ModelLoadError';
    this.file = file;
  }
}
