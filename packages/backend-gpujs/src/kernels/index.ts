import { type KernelConfig, registerKernelsOnce } from '@longseq/backend';
import { binaryConfig } from './binary';
import { gatherConfig } from './gather';
import { layerNormConfig } from './layer-norm';
import { matMulConfig } from './matmul';
import { reduceConfig } from './reduce';
import { rmsNormConfig } from './rms-norm';
import { unaryConfig } from './unary';

export {
  binaryConfig,
  gatherConfig,
  layerNormConfig,
  matMulConfig,
  reduceConfig,
  rmsNormConfig,
  unaryConfig,
};

/** The seven primitives of @longseq/backend's kernels.ts, for backend kind 'gpujs'. */
export const GPUJS_KERNELS: readonly KernelConfig<never>[] = [
  matMulConfig,
  unaryConfig,
  binaryConfig,
  reduceConfig,
  gatherConfig,
  rmsNormConfig,
  layerNormConfig,
] as unknown as KernelConfig<never>[];

/** Registers the gpujs primitives (each once). Explicit: importing this package registers nothing. */
export function registerGpuJsKernels(): void {
  registerKernelsOnce(GPUJS_KERNELS);
}
