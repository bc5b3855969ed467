export { TokenHistory } from './history.js';
export {
  argmax,
  hasPenalties,
  requestRng,
  Sampler,
  type SamplerOptions,
  type SamplingNeed,
  samplingNeed,
  skipSampledDraws,
} from './sampler.js';
