export {
  CUDA_PROVIDER_LIBS,
  checkCudaProvider,
  type Device,
  DeviceUnavailableError,
  ortBindingDir,
} from './device.js';
export { groupRagged, OnnxRunner, type OnnxRunnerOptions, type RunnerStepStats } from './onnx-runner.js';
