export { gammaUnit, nextSimArrivalDelayMs } from './arrival.js';
export { parseSimFlags, registerSim, type SimFlags } from './cli.js';
export {
  DEFAULT_SIM_OPTIONS,
  formatSimStats,
  runSim,
  SIM_BACKEND,
  type SimDeps,
  type SimOptions,
  type SimRunResult,
  type SimSchedulerOptions,
  type SimStats,
} from './run.js';
