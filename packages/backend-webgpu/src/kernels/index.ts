import { type KernelConfig, registerKernelsOnce } from '@longseq/backend';
import { binaryConfig } from './binary';
import { gatherConfig } from './gather';
import { layerNormConfig } from './layer-norm';
import { matmulConfig } from './matmul';
import { reduceConfig } from './reduce';
import { rmsNormConfig } from './rms-norm';
import { unaryConfig } from './unary';

export {
  binaryConfig,
  gatherConfig,
  layerNormConfig,
  matmulConfig,
  reduceConfig,
  rmsNormConfig,
  unaryConfig,
};

/** The WGSL implementations of the primitive kernels of @longseq/backend. */
export const webgpuKernels: readonly KernelConfig<never>[] = [
  matmulConfig,
  unaryConfig,
  binaryConfig,
  reduceConfig,
  gatherConfig,
  rmsNormConfig,
  layerNormConfig,
];

/**
 * Registers the primitive kernels for the 'webgpu' kind (those not registered yet).
 * Explicit, not an import side effect; createWebGpuBackend calls it.
 */
export function registerWebGpuKernels(): void {
  registerKernelsOnce(webgpuKernels);
}
