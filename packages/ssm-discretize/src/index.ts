export {
  DISCRETIZATION_METHODS,
  type DiscreteStateSpace,
  type DiscretizationMethod,
  type DiscretizeOptions,
  MAX_DENSE_STATE,
  type StateSpace,
  discretize,
} from './discretize';
export {
  type ComplexVector,
  type DiagonalDiscrete,
  type DiagonalDiscretizeOptions,
  type RealVectorLike,
  type VectorLike,
  discretizeDiagonal,
} from './diagonal';
export {
  type ComplexMatrix,
  type Matrix,
  type MatrixLike,
  eighHermitian,
  expm,
  identity,
  matmul,
  toMatrix,
  toRows,
} from './linalg';
export {
  HIPPO_MEASURES,
  type HippoMeasure,
  type LegsNplr,
  MAX_INIT_STATE,
  S4D_INITS,
  type S4DInit,
  hippo,
  nplrLegs,
  s4dInit,
} from './init';
export {
  type DiagonalSsmHost,
  type RefOptions,
  causalConvFftRef,
  causalConvRef,
  denseKernelRef,
  denseScan,
  denseStep,
  diagonalKernelRef,
  diagonalScanRef,
  impulseResponse,
} from './reference';
export {
  type CausalConvOptions,
  type DiagonalSsm,
  MAX_SEQUENCE_LENGTH,
  type SsmGpuOptions,
  causalConv,
  diagonalScan,
  fftLength,
  registerSsmKernels,
  ssmKernel,
} from './ops';
export {
  type CausalConvAlgorithm,
  type FftVariant,
  CausalConv,
  SsmDiscretize,
  SsmScan,
  SsmVandermonde,
} from './contract';
export { MAX_SCAN_STATES } from './webgpu/ssm';
export { FUSED_CHUNK_BYTES, fusedFftSplit, localFftCapacity } from './webgpu/conv';
