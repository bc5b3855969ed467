export {
  type CalibrateOptions,
  type CalibrateProgress,
  type CalibrationPoint,
  type CalibrationResult,
  calibrate,
} from './calibrate.js';
export { type CalibrateCommandOptions, type OpenRunner, runCalibrateCommand } from './command.js';
export {
  type CostSample,
  type FitOptions,
  type FitQuality,
  type FitResult,
  fitCostModel,
  fitQuality,
} from './fit.js';
export { leastSquares, type NnlsResult, nnls } from './nnls.js';
