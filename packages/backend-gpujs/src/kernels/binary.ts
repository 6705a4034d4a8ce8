// biome-ignore-all lint/complexity/useArrowFunction: gpu.js parses helpers as function expressions; arrows are not part of the subset this package relies on
import {
  Binary,
  type BinaryAttrs,
  type BinaryOp,
  type GpuJsProgram,
  type KernelConfig,
  MAX_BROADCAST_RANK,
} from '@longseq/backend';
import { type Flat, type KernelThis, named, runToNew } from './common';
import { isNan } from './math';

/**
 * Each op is a helper named `binaryOp(x, y, nan, inf)`. NaN and Infinity come in as scalars
 * because WGSL has no literal for either (gpu.js writes Infinity as the largest finite f32).
 */
// biome-ignore lint/complexity/noBannedTypes: gpu.js takes any function source
const OPS: Record<BinaryOp, Function> = {
  add: named('binaryOp', function (x: number, y: number, _nan: number, _inf: number) {
    return x + y;
  }),
  sub: named('binaryOp', function (x: number, y: number, _nan: number, _inf: number) {
    return x - y;
  }),
  mul: named('binaryOp', function (x: number, y: number, _nan: number, _inf: number) {
    return x * y;
  }),
  div: named('binaryOp', function (x: number, y: number, _nan: number, _inf: number) {
    return x / y;
  }),
  // Math.max is implementation-defined for NaN on the GPU; the reference propagates it
  max: named('binaryOp', function (x: number, y: number, nan: number, _inf: number) {
    if (isNan(x) + isNan(y) > 0) return nan;
    return Math.max(x, y);
  }),
  min: named('binaryOp', function (x: number, y: number, nan: number, _inf: number) {
    if (isNan(x) + isNan(y) > 0) return nan;
    return Math.min(x, y);
  }),
  // JS `x ** y`: GPU pow(x, y) is exp2(y * log2(x)), undefined for x <= 0, so the sign of a
  // negative base with an integer exponent is restored here, and the rest follows JS
  pow: named('binaryOp', function (x: number, y: number, nan: number, inf: number) {
    if (y === 0) return 1;
    if (isNan(x) + isNan(y) > 0) return nan;
    if (x === 0) {
      if (y > 0) return 0;
      return inf;
    }
    // biome-ignore lint/style/useExponentiationOperator: gpu.js translates Math.pow, not **
    const m = Math.pow(Math.abs(x), y);
    if (x > 0) return m;
    if (Math.floor(y) !== y) return nan;
    const half = y * 0.5;
    if (Math.floor(half) === half) return m;
    return -m;
  }),
};

/**
 * out[t] = op(a[t . aStrides], b[t . bStrides]) over the output shape padded to rank 6:
 * the coordinates of t are peeled from the innermost dim out; broadcast dims have stride 0.
 */
export function binaryKernel(
  this: KernelThis,
  a: Flat,
  b: Flat,
  d1: number,
  d2: number,
  d3: number,
  d4: number,
  d5: number,
  as0: number,
  as1: number,
  as2: number,
  as3: number,
  as4: number,
  as5: number,
  bs0: number,
  bs1: number,
  bs2: number,
  bs3: number,
  bs4: number,
  bs5: number,
  nan: number,
  inf: number,
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
  return binaryOp(a[ia]!, b[ib]!, nan, inf);
}
declare function binaryOp(x: number, y: number, nan: number, inf: number): number;

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
        functions: [OPS[attrs.op], isNan],
      }),
    );
  },
};
