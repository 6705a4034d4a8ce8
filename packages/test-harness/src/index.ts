export { type BackendName, NODE_BACKENDS, getBackend, selectedBackends } from './backends';
export {
  type GoldenCheckpoint,
  type LanguageModelGolden,
  type ParsedSafetensors,
  REL_TOL,
  type SafetensorsCodec,
  type TensorInput,
  cleanTempDirs,
  goldenCheckpoint,
  goldenDir,
  maxRelativeError,
  readJson,
  referenceAgainstGolden,
  writeCheckpointFolder,
} from './checkpoints';
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
