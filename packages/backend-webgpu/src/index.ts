export {
  type AcquiredDevice,
  type TimingResult,
  type WebGpuAdapterInfo,
  WebGpuBackend,
  type WebGpuBackendConfig,
  type WebGpuDebug,
  type WebGpuHandle,
  type WebGpuStats,
} from './backend';
export { createWebGpuBackend, type WebGpuBackendOptions } from './create';
export {
  binaryConfig,
  gatherConfig,
  layerNormConfig,
  matmulConfig,
  reduceConfig,
  registerWebGpuKernels,
  rmsNormConfig,
  unaryConfig,
  webgpuKernels,
} from './kernels/index';
export { MIN_BUFFER_BYTES, sizeClass } from './pool';
