import { type GpuJsProgram, type KernelConfig, LayerNorm, type LayerNormAttrs } from '@longseq/backend';
import { runToNew } from './common';
import { noop } from './rms-norm';

/**
 * Row statistics, two outputs per row: stats[2 r] = mean, stats[2 r + 1] = 1 / sqrt(var + eps)
 * with the biased variance taken around the mean (two passes, as the reference does).
 * A source string (see math.ts): a minifier renamed `c` and `c2` to one short name here,
 * which collides in gpu.js' single scope of loop counters ("'user_de' : redefinition").
 */
export const layerNormStatsKernel = /* js */ `function layerNormStatsKernel(x, cols, eps) {
  const row = Math.floor(this.thread.x / 2);
  const which = this.thread.x - row * 2;
  const base = row * cols;
  let sum = 0;
  for (let c = 0; c < cols; c++) {
    sum += x[base + c];
  }
  const mean = sum / cols;
  if (which < 0.5) return mean;
  let sq = 0;
  // a new counter name: gpu.js declares loop counters in the enclosing scope, so two loops
  // with the same 'let c' collide in the generated WGSL/GLSL
  for (let c2 = 0; c2 < cols; c2++) {
    const d = x[base + c2] - mean;
    sq += d * d;
  }
  return 1 / Math.sqrt(sq / cols + eps);
}`;

export const layerNormApplyKernel = /* js */ `function layerNormApplyKernel(x, weight, bias, stats, cols) {
  const row = Math.floor(this.thread.x / cols);
  const c = this.thread.x - row * cols;
  const mean = stats[row * 2];
  const inv = stats[row * 2 + 1];
  return (x[this.thread.x] - mean) * inv * weight[c] + bias[c];
}`;

export const layerNormConfig: KernelConfig<LayerNormAttrs> = {
  kernelName: LayerNorm,
  backendKind: 'gpujs',
  run: async (backend, inputs, attrs) => {
    const [x, weight, bias] = inputs;
    const { rows, cols, eps } = attrs;
    if (rows === 0) return runToNew(backend, x!.shape, (output) => noop(output, x!));
    const stats = await runToNew(
      backend,
      [rows, 2],
      (output): GpuJsProgram => ({
        kind: 'gpujs',
        name: `${LayerNorm}.stats`,
        cacheKey: '',
        kernel: layerNormStatsKernel,
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
          name: `${LayerNorm}.apply`,
          cacheKey: '',
          kernel: layerNormApplyKernel,
          inputs: [x!, weight!, bias!, stats],
          scalars: [cols],
          output,
        }),
      );
    } finally {
      stats.dispose();
    }
  },
};
