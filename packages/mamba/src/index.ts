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
  type SsmStepRefInputs,
  mambaRef,
  softplusTorch,
  ssmStepRef,
} from './reference';
export { type SamplingOptions, Sampler, argmax, seededRandom } from './sampler';
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
  randomReader,
  uploadMambaWeights,
  weightTensors,
} from './weights';
