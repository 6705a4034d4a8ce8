export {
  JAMBA_ARCHITECTURES,
  JAMBA_CONFIG_DTYPES,
  type JambaConfig,
  type JambaLayerType,
  checkJambaConfig,
  jambaConfig,
  jambaConfigFromHf,
  jambaLayerPlan,
} from './config';
export {
  JambaExpertCopy,
  type JambaExpertCopyAttrs,
  JambaMoeAccumulate,
  type JambaMoeAccumulateAttrs,
} from './contract';
export { CacheBudgetError } from './errors';
export {
  JambaCache,
  type JambaCacheMemory,
  type JambaCacheOptions,
  type JambaCacheSnapshot,
  type JambaLayerMemory,
} from './cache';
export {
  type MoeRouting,
  copyExpert,
  moeAccumulate,
  moeForward,
  registerJambaKernels,
  routeTokens,
  swiglu,
} from './moe';
export { type JambaRefState, jambaRef, jambaRefState, moeRef } from './reference';
export {
  type JambaForwardOptions,
  type JambaGenerateOptions,
  type JambaGenerateResult,
  JambaModel,
} from './model';
export {
  type JambaAttentionWeights,
  type JambaLayerWeights,
  type JambaMambaWeights,
  type JambaMlpWeights,
  type JambaMoeWeights,
  type JambaTensorReader,
  type JambaWeights,
  jambaCheckpointReader,
  jambaRandomReader,
  jambaWeightTensors,
  uploadJambaWeights,
} from './weights';
