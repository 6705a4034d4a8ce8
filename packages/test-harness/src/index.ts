export { type BackendName, NODE_BACKENDS, getBackend, selectedBackends } from './backends';
export { type CloseOptions, expectClose, expectCloseRelative } from './expect';
export {
  type BackendContext,
  type DescribeOptions,
  describeEachBackend,
  poisonOutputs,
  toHost,
} from './harness';
export {
  type Rng,
  caseSeed,
  freshSeed,
  randomFloats,
  randomInt,
  randomInts,
  randomNormal,
  rng,
} from './random';
export { runReadmeExample } from './readme';
