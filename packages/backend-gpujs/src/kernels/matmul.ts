import { type GpuJsProgram, type KernelConfig, MatMul, type MatMulAttrs } from '@longseq/backend';
import { runToNew } from './common';

/**
 * One output element per thread: a dot product of length k. Transposes are strides
 * (scalars), so all four layouts share one compiled kernel. A(i, p) = a[aBase + p * sAp],
 * B(p, j) = b[bBase + p * sBp].
 */
export const matmulKernel = /* js */ `function matmulKernel(a, b, m, k, n, batchStrideA, batchStrideB, sAi, sAp, sBp, sBj) {
  const mn = m * n;
  const bt = Math.floor(this.thread.x / mn);
  const rem = this.thread.x - bt * mn;
  const i = Math.floor(rem / n);
  const j = rem - i * n;
  const aBase = bt * batchStrideA + i * sAi;
  const bBase = bt * batchStrideB + j * sBj;
  let acc = 0;
  for (let p = 0; p < k; p++) {
    acc += a[aBase + p * sAp] * b[bBase + p * sBp];
  }
  return acc;
}`;

export const matMulConfig: KernelConfig<MatMulAttrs> = {
  kernelName: MatMul,
  backendKind: 'gpujs',
  run: (backend, inputs, attrs) => {
    const [a, b] = inputs;
    const { m, k, n } = attrs;
    const [sAi, sAp] = attrs.transposeA ? [1, m] : [k, 1];
    const [sBp, sBj] = attrs.transposeB ? [1, k] : [n, 1];
    return runToNew(
      backend,
      attrs.outShape,
      (output): GpuJsProgram => ({
        kind: 'gpujs',
        name: MatMul,
        cacheKey: '',
        kernel: matmulKernel,
        inputs: [a!, b!],
        scalars: [m, k, n, attrs.batchStrideA, attrs.batchStrideB, sAi, sAp, sBp, sBj],
        output,
      }),
    );
  },
};
