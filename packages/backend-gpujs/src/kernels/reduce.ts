import {
  type GpuJsProgram,
  type KernelConfig,
  Reduce,
  type ReduceAttrs,
  type ReduceOp,
} from '@longseq/backend';
import { type Flat, type KernelThis, runToNew } from './common';
import { isNan } from './math';

// One thread per output element [o, i] walks x[o, 0..reduceSize, i] in order, so the
// rounding matches the sequential float32 reference.

export function reduceSumKernel(this: KernelThis, x: Flat, reduceSize: number, inner: number) {
  const o = Math.floor(this.thread.x / inner);
  const base = o * reduceSize * inner + (this.thread.x - o * inner);
  let acc = 0;
  for (let r = 0; r < reduceSize; r++) {
    acc += x[base + r * inner]!;
  }
  return acc;
}

export function reduceMeanKernel(this: KernelThis, x: Flat, reduceSize: number, inner: number, nan: number) {
  // the mean of nothing is 0 / 0; a GPU need not produce NaN for that, so say it
  if (reduceSize < 1) return nan;
  const o = Math.floor(this.thread.x / inner);
  const base = o * reduceSize * inner + (this.thread.x - o * inner);
  let acc = 0;
  for (let r = 0; r < reduceSize; r++) {
    acc += x[base + r * inner]!;
  }
  return acc / reduceSize;
}

export function reduceProdKernel(this: KernelThis, x: Flat, reduceSize: number, inner: number) {
  const o = Math.floor(this.thread.x / inner);
  const base = o * reduceSize * inner + (this.thread.x - o * inner);
  let acc = 1;
  for (let r = 0; r < reduceSize; r++) {
    acc *= x[base + r * inner]!;
  }
  return acc;
}

/** `init` is -Infinity (a scalar: WGSL has no infinity literal); NaN is tracked, not trusted to Math.max. */
export function reduceMaxKernel(
  this: KernelThis,
  x: Flat,
  reduceSize: number,
  inner: number,
  init: number,
  nan: number,
) {
  const o = Math.floor(this.thread.x / inner);
  const base = o * reduceSize * inner + (this.thread.x - o * inner);
  let acc = init;
  let sawNan = 0;
  for (let r = 0; r < reduceSize; r++) {
    const v = x[base + r * inner]!;
    sawNan = Math.max(sawNan, isNan(v));
    acc = Math.max(acc, v);
  }
  if (sawNan > 0) return nan;
  return acc;
}

export function reduceMinKernel(
  this: KernelThis,
  x: Flat,
  reduceSize: number,
  inner: number,
  init: number,
  nan: number,
) {
  const o = Math.floor(this.thread.x / inner);
  const base = o * reduceSize * inner + (this.thread.x - o * inner);
  let acc = init;
  let sawNan = 0;
  for (let r = 0; r < reduceSize; r++) {
    const v = x[base + r * inner]!;
    sawNan = Math.max(sawNan, isNan(v));
    acc = Math.min(acc, v);
  }
  if (sawNan > 0) return nan;
  return acc;
}

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
