export { type MakeModelFlags, makeModel } from './cli/make-model.js';
