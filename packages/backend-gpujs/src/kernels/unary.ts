// biome-ignore-all lint/complexity/useArrowFunction: gpu.js parses helpers as function expressions; arrows are not part of the subset this package relies on
import { type GpuJsProgram, type KernelConfig, Unary, type UnaryAttrs, type UnaryOp } from '@longseq/backend';
import { type Flat, type KernelThis, named, runToNew } from './common';
import { expAccurate, log1pStable, tanhStable } from './math';

/** Each op is a helper named `unaryOp`; the kernel calls it, so one kernel body serves all ops. */
// biome-ignore lint/complexity/noBannedTypes: gpu.js takes any function source
const OPS: Record<UnaryOp, Function> = {
  neg: named('unaryOp', function (x: number) {
    return -x;
  }),
  abs: named('unaryOp', function (x: number) {
    return Math.abs(x);
  }),
  exp: named('unaryOp', function (x: number) {
    return expAccurate(x);
  }),
  log: named('unaryOp', function (x: number) {
    return Math.log(x);
  }),
  sqrt: named('unaryOp', function (x: number) {
    return Math.sqrt(x);
  }),
  rsqrt: named('unaryOp', function (x: number) {
    return 1 / Math.sqrt(x);
  }),
  square: named('unaryOp', function (x: number) {
    return x * x;
  }),
  reciprocal: named('unaryOp', function (x: number) {
    return 1 / x;
  }),
  relu: named('unaryOp', function (x: number) {
    if (x > 0) return x;
    return 0;
  }),
  sigmoid: named('unaryOp', function (x: number) {
    return 1 / (1 + Math.exp(-x));
  }),
  silu: named('unaryOp', function (x: number) {
    return x * (1 / (1 + Math.exp(-x)));
  }),
  // max(x, 0) + log1p(e^-|x|): never overflows, keeps small values (see reference.ts)
  softplus: named('unaryOp', function (x: number) {
    return Math.max(x, 0) + log1pStable(Math.exp(-Math.abs(x)));
  }),
  tanh: named('unaryOp', function (x: number) {
    return tanhStable(x);
  }),
  // the tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  gelu: named('unaryOp', function (x: number) {
    const inner = 0.7978845608028654 * (x + 0.044715 * (x * (x * x)));
    return 0.5 * (x * (1 + tanhStable(inner)));
  }),
};

// biome-ignore lint/complexity/noBannedTypes: gpu.js takes any function source
const HELPERS: Partial<Record<UnaryOp, Function[]>> = {
  exp: [expAccurate],
  softplus: [log1pStable],
  tanh: [tanhStable],
  gelu: [tanhStable],
};

export function unaryKernel(this: KernelThis, x: Flat) {
  return unaryOp(x[this.thread.x]!);
}
declare function unaryOp(x: number): number;

export const unaryConfig: KernelConfig<UnaryAttrs> = {
  kernelName: Unary,
  backendKind: 'gpujs',
  run: (backend, inputs, attrs) => {
    const [x] = inputs;
    return runToNew(
      backend,
      x!.shape,
      (output): GpuJsProgram => ({
        kind: 'gpujs',
        name: Unary,
        cacheKey: attrs.op,
        kernel: unaryKernel,
        inputs: [x!],
        output,
        functions: [OPS[attrs.op], ...(HELPERS[attrs.op] ?? [])],
      }),
    );
  },
};
