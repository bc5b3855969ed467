export { type Clock, ManualClock, systemClock } from './clock.js';
export {
  CollectiveClosedError,
  CollectiveTimeoutError,
  ERROR_CODES,
  InvalidConfigError,
  type OpenAIErrorBody,
  openAIErrorType,
  TsinferError,
  type TsinferErrorCode,
} from './errors.js';
export { createRng, type Rng } from './rng.js';
export { startWorker, workerEntry } from './worker-entry.js';
