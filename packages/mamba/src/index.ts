export {
  CONFIG_DTYPES,
  MAMBA_ARCHITECTURES,
  type MambaConfig,
  mambaConfig,
  mambaConfigFromHf,
} from './config';
export { MambaSsmStep, type MambaSsmStepAttrs } from './contract';
export { MambaArgmax } from './webgpu/fused-decode';
// The fused decode kernels' matrix-vector pieces, shared with other models' decode kernels.
export {
  type ConvStep,
  type DecodeLayerSizes,
  type DecodeParamsOffsets,
  type MatvecShape,
  type NormMatvecAttrs,
  type Uniform,
  elementType,
  inProjConvProgram,
  matvecShape,
  normMatvecProgram,
  outProjProgram,
  reduceWgsl,
  rowGrid,
  runDecodeLayer,
  runNormMatvec,
  shapeKey,
  sourceCache,
  u32,
  xProjSsmProgram,
  xProjSsmShape,
  xProjWgsl,
} from './webgpu/matvec';
export { type SsmStepInputs, mambaSsmStep, registerMambaKernels } from './ssm-step';
export {
  type MambaRefState,
  type MixerRefWeights,
  type RefRound,
  type SsmStepRefInputs,
  convStepRef,
  mambaRef,
  matvecRef,
  mixerStepRef,
  rmsNormRef,
  siluRef,
  softplusTorch,
  ssmStepRef,
} from './reference';
export { type SamplingOptions, Sampler, argmax, seededRandom } from './sampler';
// Language-model pieces shared with models built on this package (token id checks, the last
// positions, the argmax rows, generate()'s token loop).
export {
  type GenerateTokensOptions,
  argmaxRows,
  checkMaxNewTokens,
  checkTokenIds,
  generateTokens,
  lastPositions,
  promptRows,
} from './lm';
export {
  type ForwardOptions,
  type GenerateOptions,
  type GenerateResult,
  MambaModel,
  MambaState,
} from './model';
export {
  type MambaLayerWeights,
  type MambaWeights,
  type TensorReader,
  checkpointReader,
  type SeededInitNames,
  randomReader,
  seededInitReader,
  uploadMambaWeights,
  weightTensors,
} from './weights';
