export {
  ERROR_CODES,
  TsinferError,
  InvalidConfigError,
  CollectiveTimeoutError,
  CollectiveClosedError,
  type TsinferErrorCode,
} from './errors.js';
export { type Clock, systemClock, ManualClock } from './clock.js';
export { type Rng, createRng } from './rng.js';
export { startWorker, workerEntry } from './worker-entry.js';
