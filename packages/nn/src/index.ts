export {
  CausalConv1d,
  type CausalConv1dAttrs,
  CausalConv1dStep,
  type CausalConv1dStepAttrs,
} from './contract';
export { type CausalConv1dOptions, causalConv1d, causalConv1dStep, registerNnKernels } from './conv1d';
export {
  type CausalConv1dRefOptions,
  type CausalConv1dRefResult,
  causalConv1dRef,
  causalConv1dStepRef,
  linearRef,
} from './reference';
export { embedding, linear, rmsNorm, silu, softplus } from './layers';
export { bf16BitsToNumber, f16BitsToNumber, numberToBf16Bits, numberToF16Bits } from './dtype';
export { ConfigError, MissingFileError, MissingTensorError, SafetensorsFormatError } from './errors';
export {
  SAFETENSORS_DTYPES,
  type SafetensorsDType,
  type SafetensorsEntry,
  SafetensorsFile,
  type SafetensorsTensorInput,
  encodeSafetensors,
} from './safetensors';
export {
  type FetchSourceOptions,
  type FileSource,
  fetchFileSource,
  memoryFileSource,
  nodeFileSource,
  readText,
} from './source';
export {
  Checkpoint,
  type HfConfig,
  SAFETENSORS_FILE,
  SAFETENSORS_INDEX,
  configArchitectures,
  configBool,
  configInt,
  configNumber,
  loadCheckpoint,
  loadConfig,
} from './checkpoint';
