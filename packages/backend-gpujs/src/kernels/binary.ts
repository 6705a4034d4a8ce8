import {
  Binary,
  type BinaryAttrs,
  type BinaryOp,
  type GpuJsProgram,
  type KernelConfig,
  MAX_BROADCAST_RANK,
} from '@longseq/backend';
import { runToNew } from './common';
import { isNan } from './math';

/**
 * Each op is a helper source named `binaryOp(x, y, nan, inf)`; the kernel calls it, so one
 * kernel body serves all ops (the op is part of the cache key). NaN and Infinity come in as
 * scalars because WGSL has no literal for either (gpu.js writes Infinity as the largest
 * finite f32). Sources, not functions: see math.ts.
 */
export const BINARY_OP_SOURCES: Readonly<Record<BinaryOp, string>> = {
  add: /* js */ `function binaryOp(x, y, nan, inf) {
  return x + y;
}`,
  sub: /* js */ `function binaryOp(x, y, nan, inf) {
  return x - y;
}`,
  mul: /* js */ `function binaryOp(x, y, nan, inf) {
  return x * y;
}`,
  div: /* js */ `function binaryOp(x, y, nan, inf) {
  return x / y;
}`,
  // Math.max is implementation-defined for NaN on the GPU; the reference propagates it
  max: /* js */ `function binaryOp(x, y, nan, inf) {
  if (isNan(x) + isNan(y) > 0) return nan;
  return Math.max(x, y);
}`,
  min: /* js */ `function binaryOp(x, y, nan, inf) {
  if (isNan(x) + isNan(y) > 0) return nan;
  return Math.min(x, y);
}`,
  // JS `x ** y`: GPU pow(x, y) is exp2(y * log2(x)), undefined for x <= 0, so the sign of a
  // negative base with an integer exponent is restored here, and the rest follows JS.
  // Math.pow, not `**`: gpu.js translates only the former
  pow: /* js */ `function binaryOp(x, y, nan, inf) {
  if (y === 0) return 1;
  if (isNan(x) + isNan(y) > 0) return nan;
  if (x === 0) {
    if (y > 0) return 0;
    return inf;
  }
  const m = Math.pow(Math.abs(x), y);
  if (x > 0) return m;
  if (Math.floor(y) !== y) return nan;
  const half = y * 0.5;
  if (Math.floor(half) === half) return m;
  return -m;
}`,
};

/**
 * out[t] = op(a[t . aStrides], b[t . bStrides]) over the output shape padded to rank 6:
 * the coordinates of t are peeled from the innermost dim out; broadcast dims have stride 0.
 */
export const binaryKernel = /* js */ `function binaryKernel(
  a, b,
  d1, d2, d3, d4, d5,
  as0, as1, as2, as3, as4, as5,
  bs0, bs1, bs2, bs3, bs4, bs5,
  nan, inf
) {
  const q5 = Math.floor(this.thread.x / d5);
  const c5 = this.thread.x - q5 * d5;
  const q4 = Math.floor(q5 / d4);
  const c4 = q5 - q4 * d4;
  const q3 = Math.floor(q4 / d3);
  const c3 = q4 - q3 * d3;
  const q2 = Math.floor(q3 / d2);
  const c2 = q3 - q2 * d2;
  const q1 = Math.floor(q2 / d1);
  const c1 = q2 - q1 * d1;
  // what is left is the outermost coordinate
  const ia = q1 * as0 + c1 * as1 + c2 * as2 + c3 * as3 + c4 * as4 + c5 * as5;
  const ib = q1 * bs0 + c1 * bs1 + c2 * bs2 + c3 * bs3 + c4 * bs4 + c5 * bs5;
  return binaryOp(a[ia], b[ib], nan, inf);
}`;

/** Pads a per-dim list on the left to MAX_BROADCAST_RANK dims. */
function pad(values: readonly number[], fill: number): number[] {
  return [...new Array<number>(MAX_BROADCAST_RANK - values.length).fill(fill), ...values];
}

export const binaryConfig: KernelConfig<BinaryAttrs> = {
  kernelName: Binary,
  backendKind: 'gpujs',
  run: (backend, inputs, attrs) => {
    const [a, b] = inputs;
    const dims = pad(attrs.outShape, 1);
    const as = pad(attrs.aStrides, 0);
    const bs = pad(attrs.bStrides, 0);
    return runToNew(
      backend,
      attrs.outShape,
      (output): GpuJsProgram => ({
        kind: 'gpujs',
        name: Binary,
        cacheKey: attrs.op,
        kernel: binaryKernel,
        inputs: [a!, b!],
        // dim 0 is never divided by: its coordinate is whatever remains
        scalars: [...dims.slice(1), ...as, ...bs, Number.NaN, Number.POSITIVE_INFINITY],
        output,
        functions: [BINARY_OP_SOURCES[attrs.op], isNan],
      }),
    );
  },
};
