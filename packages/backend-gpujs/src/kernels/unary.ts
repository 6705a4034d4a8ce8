import { type GpuJsProgram, type KernelConfig, Unary, type UnaryAttrs, type UnaryOp } from '@longseq/backend';
import { runToNew } from './common';
import { expAccurate, log1pAcc, tanhStable } from './math';

/**
 * Each op is a helper source named `unaryOp`; the kernel calls it, so one kernel body serves
 * all ops (the op is part of the cache key). Sources, not functions: see math.ts.
 */
export const UNARY_OP_SOURCES: Readonly<Record<UnaryOp, string>> = {
  neg: /* js */ `function unaryOp(x) {
  return -x;
}`,
  abs: /* js */ `function unaryOp(x) {
  return Math.abs(x);
}`,
  exp: /* js */ `function unaryOp(x) {
  return expAccurate(x);
}`,
  log: /* js */ `function unaryOp(x) {
  return Math.log(x);
}`,
  sqrt: /* js */ `function unaryOp(x) {
  return Math.sqrt(x);
}`,
  rsqrt: /* js */ `function unaryOp(x) {
  return 1 / Math.sqrt(x);
}`,
  square: /* js */ `function unaryOp(x) {
  return x * x;
}`,
  reciprocal: /* js */ `function unaryOp(x) {
  return 1 / x;
}`,
  relu: /* js */ `function unaryOp(x) {
  if (x > 0) return x;
  return 0;
}`,
  sigmoid: /* js */ `function unaryOp(x) {
  return 1 / (1 + Math.exp(-x));
}`,
  silu: /* js */ `function unaryOp(x) {
  return x * (1 / (1 + Math.exp(-x)));
}`,
  // max(x, 0) + log1p(e^-|x|): never overflows, keeps small values (see reference.ts); the
  // accurate exp too, since the result is e^x itself for very negative x
  softplus: /* js */ `function unaryOp(x) {
  return Math.max(x, 0) + log1pAcc(expAccurate(-Math.abs(x)));
}`,
  tanh: /* js */ `function unaryOp(x) {
  return tanhStable(x);
}`,
  // the tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  gelu: /* js */ `function unaryOp(x) {
  const inner = 0.7978845608028654 * (x + 0.044715 * (x * (x * x)));
  return 0.5 * (x * (1 + tanhStable(inner)));
}`,
};

/** The helpers an op's `unaryOp` calls. */
const HELPERS: Partial<Record<UnaryOp, readonly string[]>> = {
  exp: [expAccurate],
  softplus: [log1pAcc, expAccurate],
  tanh: [tanhStable],
  gelu: [tanhStable],
};

export const unaryKernel = /* js */ `function unaryKernel(x) {
  return unaryOp(x[this.thread.x]);
}`;

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
        functions: [UNARY_OP_SOURCES[attrs.op], ...(HELPERS[attrs.op] ?? [])],
      }),
    );
  },
};
