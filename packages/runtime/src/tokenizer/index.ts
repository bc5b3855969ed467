export {
  ByteDetokenizer,
  type DecodeFn,
  type DetokenizerOptions,
  findEarliestStop,
  type IncrementalDetokenizer,
  type StopCheck,
  StopStringMatcher,
  stopHoldBack,
  TextDetokenizer,
  TokenByteTable,
} from './detokenizer.js';
export {
  ChatTemplateError,
  InvalidMessagesError,
  InvalidTokenIdError,
  NoChatTemplateError,
  TokenizerLoadError,
} from './errors.js';
export {
  type ApplyChatTemplateOptions,
  type ChatMessage,
  normalizeMessages,
  Tokenizer,
} from './tokenizer.js';
export {
  BOS_TOKEN,
  CHAT_TEMPLATE,
  DEFAULT_VOCAB_SIZE,
  EOS_TOKEN,
  IM_END_TOKEN,
  IM_START_TOKEN,
  PAD_TOKEN,
  SPECIAL_TOKENS,
  type TokenizerFilesInfo,
  type TrainOptions,
  writeTokenizerFiles,
} from './train.js';
