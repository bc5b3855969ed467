export { makeModel, type MakeModelFlags } from './cli/make-model.js';
