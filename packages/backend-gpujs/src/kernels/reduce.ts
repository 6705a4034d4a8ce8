import {
  type GpuJsProgram,
  type KernelConfig,
  Reduce,
  type ReduceAttrs,
  type ReduceOp,
} from '@longseq/backend';
import { runToNew } from './common';
import { isNan } from './math';

// One thread per output element [o, i] walks x[o, 0..reduceSize, i] in order, so the
// rounding matches the sequential float32 reference.

export const reduceSumKernel = /* js */ `function reduceSumKernel(x, reduceSize, inner) {
  const o = Math.floor(this.thread.x / inner);
  const base = o * reduceSize * inner + (this.thread.x - o * inner);
  let acc = 0;
  for (let r = 0; r < reduceSize; r++) {
    acc += x[base + r * inner];
  }
  return acc;
}`;

export const reduceMeanKernel = /* js */ `function reduceMeanKernel(x, reduceSize, inner, nan) {
  // the mean of nothing is 0 / 0; a GPU need not produce NaN for that, so say it
  if (reduceSize < 1) return nan;
  const o = Math.floor(this.thread.x / inner);
  const base = o * reduceSize * inner + (this.thread.x - o * inner);
  let acc = 0;
  for (let r = 0; r < reduceSize; r++) {
    acc += x[base + r * inner];
  }
  return acc / reduceSize;
}`;

export const reduceProdKernel = /* js */ `function reduceProdKernel(x, reduceSize, inner) {
  const o = Math.floor(this.thread.x / inner);
  const base = o * reduceSize * inner + (this.thread.x - o * inner);
  let acc = 1;
  for (let r = 0; r < reduceSize; r++) {
    acc *= x[base + r * inner];
  }
  return acc;
}`;

/** `init` is -Infinity (a scalar: WGSL has no infinity literal); NaN is tracked, not trusted to Math.max. */
export const reduceMaxKernel = /* js */ `function reduceMaxKernel(x, reduceSize, inner, init, nan) {
  const o = Math.floor(this.thread.x / inner);
  const base = o * reduceSize * inner + (this.thread.x - o * inner);
  let acc = init;
  let sawNan = 0;
  for (let r = 0; r < reduceSize; r++) {
    const v = x[base + r * inner];
    sawNan = Math.max(sawNan, isNan(v));
    acc = Math.max(acc, v);
  }
  if (sawNan > 0) return nan;
  return acc;
}`;

export const reduceMinKernel = /* js */ `function reduceMinKernel(x, reduceSize, inner, init, nan) {
  const o = Math.floor(this.thread.x / inner);
  const base = o * reduceSize * inner + (this.thread.x - o * inner);
  let acc = init;
  let sawNan = 0;
  for (let r = 0; r < reduceSize; r++) {
    const v = x[base + r * inner];
    sawNan = Math.max(sawNan, isNan(v));
    acc = Math.min(acc, v);
  }
  if (sawNan > 0) return nan;
  return acc;
}`;

export const reduceConfig: KernelConfig<ReduceAttrs> = {
  kernelName: Reduce,
  backendKind: 'gpujs',
  run: (backend, inputs, attrs) => {
    const [x] = inputs;
    const { reduceSize, inner } = attrs;
    const nan = Number.NaN;
    const variants: Record<ReduceOp, Pick<GpuJsProgram, 'kernel' | 'scalars' | 'functions'>> = {
      sum: { kernel: reduceSumKernel, scalars: [reduceSize, inner] },
      mean: { kernel: reduceMeanKernel, scalars: [reduceSize, inner, nan] },
      prod: { kernel: reduceProdKernel, scalars: [reduceSize, inner] },
      max: {
        kernel: reduceMaxKernel,
        scalars: [reduceSize, inner, Number.NEGATIVE_INFINITY, nan],
        functions: [isNan],
      },
      min: {
        kernel: reduceMinKernel,
        scalars: [reduceSize, inner, Number.POSITIVE_INFINITY, nan],
        functions: [isNan],
      },
    };
    return runToNew(
      backend,
      attrs.outShape,
      (output): GpuJsProgram => ({
        kind: 'gpujs',
        name: Reduce,
        cacheKey: attrs.op,
        inputs: [x!],
        output,
        ...variants[attrs.op],
      }),
    );
  },
};
