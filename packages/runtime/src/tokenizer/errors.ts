import { TsinferError } from '@tsinfer/core';

/** A tokenizer file is missing or invalid (`TSI_ERR_MODEL_LOAD`); `file` is its path. */
export class TokenizerLoadError extends TsinferError {
  readonly file: string;
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super('TSI_ERR_MODEL_LOAD', `${file}: ${message}`, options);
    this.name = 'TokenizerLoadError';
    this.file = file;
  }
}

/** The model has no chat template (`TSI_ERR_NO_CHAT_TEMPLATE`, HTTP 400). */
export class NoChatTemplateError extends TsinferError {
  constructor(message: string) {
    super('TSI_ERR_NO_CHAT_TEMPLATE', message);
    this.name = 'NoChatTemplateError';
  }
}

/** The chat message list is malformed (`TSI_ERR_INVALID_MESSAGES`, HTTP 400). */
export class InvalidMessagesError extends TsinferError {
  constructor(message: string) {
    super('TSI_ERR_INVALID_MESSAGES', message);
    this.name = 'InvalidMessagesError';
  }
}

/** The chat template raised or failed to render (`TSI_ERR_CHAT_TEMPLATE`, HTTP 400). */
export class ChatTemplateError extends TsinferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TSI_ERR_CHAT_TEMPLATE', message, options);
    this.name = 'ChatTemplateError';
  }
}

/** A token id outside `[0, vocabSize)` (`TSI_ERR_INVALID_TOKEN_ID`, HTTP 400). */
export class InvalidTokenIdError extends TsinferError {
  constructor(message: string) {
    super('TSI_ERR_INVALID_TOKEN_ID', message);
    this.name = 'InvalidTokenIdError';
  }
}
