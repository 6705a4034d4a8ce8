import {
  type GpuJsProgram,
  type KernelConfig,
  RmsNorm,
  type RmsNormAttrs,
  type Tensor,
} from '@longseq/backend';
import { runToNew } from './common';

/**
 * Two kernels, since gpu.js has no workgroup memory to share a row's statistic: one thread
 * per row computes 1 / sqrt(mean(x^2) + eps), then one thread per element applies it.
 * O(rows * cols) work, where recomputing the statistic per element would be O(rows * cols^2).
 */
export const rmsNormStatsKernel = /* js */ `function rmsNormStatsKernel(x, cols, eps) {
  const base = this.thread.x * cols;
  let sumSq = 0;
  for (let c = 0; c < cols; c++) {
    const v = x[base + c];
    sumSq += v * v;
  }
  return 1 / Math.sqrt(sumSq / cols + eps);
}`;

export const rmsNormApplyKernel = /* js */ `function rmsNormApplyKernel(x, weight, inv, cols) {
  const row = Math.floor(this.thread.x / cols);
  const c = this.thread.x - row * cols;
  return x[this.thread.x] * inv[row] * weight[c];
}`;

export const rmsNormConfig: KernelConfig<RmsNormAttrs> = {
  kernelName: RmsNorm,
  backendKind: 'gpujs',
  run: async (backend, inputs, attrs) => {
    const [x, weight] = inputs;
    const { rows, cols, eps } = attrs;
    if (rows === 0) return runToNew(backend, x!.shape, (output) => noop(output, x!));
    const inv = await runToNew(
      backend,
      [rows],
      (output): GpuJsProgram => ({
        kind: 'gpujs',
        name: `${RmsNorm}.stats`,
        cacheKey: '',
        kernel: rmsNormStatsKernel,
        inputs: [x!],
        scalars: [cols, eps],
        output,
      }),
    );
    try {
      return await runToNew(
        backend,
        x!.shape,
        (output): GpuJsProgram => ({
          kind: 'gpujs',
          name: `${RmsNorm}.apply`,
          cacheKey: '',
          kernel: rmsNormApplyKernel,
          inputs: [x!, weight!, inv],
          scalars: [cols],
          output,
        }),
      );
    } finally {
      inv.dispose();
    }
  },
};

/** The kernel of `noop`: never compiled, since the backend skips a program with an empty output. */
export const emptyKernel = /* js */ `function emptyKernel() {
  return 0;
}`;

/** A program over an empty output: the backend skips it, and the op still returns a tensor. */
export function noop(output: Tensor, x: Tensor): GpuJsProgram {
  return {
    kind: 'gpujs',
    name: 'Empty',
    cacheKey: '',
    kernel: emptyKernel,
    inputs: [x],
    output,
  };
}
