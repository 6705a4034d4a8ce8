export { DEFAULT_LOOP_MAX_ITERATIONS, GpuJsBackend, MAX_F32_EXACT_ELEMENTS } from './backend';
export type { GpuJsBackendStats, GpuJsHandle } from './backend';
export { createGpuJsBackend } from './create';
export type { CreateGpuJsBackendOptions } from './create';
export { GPUJS_MODES } from './gpu-js';
export type { GlTexture, GpuJsMode, KernelResult, WebGpuBufferResult } from './gpu-js';
export {
  GPUJS_KERNELS,
  binaryConfig,
  gatherConfig,
  layerNormConfig,
  matMulConfig,
  reduceConfig,
  registerGpuJsKernels,
  rmsNormConfig,
  unaryConfig,
} from './kernels';
