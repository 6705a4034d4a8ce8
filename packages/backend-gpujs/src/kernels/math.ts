/**
 * Helper functions for kernels, in gpu.js' JS subset (passed as a program's `functions`).
 * They exist where a backend's built-in is not good enough to meet the float64 references.
 *
 * Every kernel and helper in this package is a JavaScript source string, not a function:
 * gpu.js compiles from source, and an application's minifier rewrites function bodies
 * (comma expressions, reused short names) into code gpu.js cannot translate. Strings pass
 * through bundlers untouched. Each source starts with `function <name>(`, the name the
 * backend registers it under.
 */
import { GPUJS_LOG1P_ACC } from '@longseq/backend';

/**
 * 1 when x is NaN, else 0. `x !== x` does not work: WGSL lets implementations assume no
 * NaNs, and Dawn on SwiftShader folds it to false; ordered comparisons still answer false
 * for NaN, so "neither <= 0 nor > 0" survives.
 */
export const isNan = /* js */ `function isNan(x) {
  if (x <= 0) return 0;
  if (x > 0) return 0;
  return 1;
}`;

/**
 * log(1 + y) to a few ulp relative, for any y: `GPUJS_LOG1P_ACC` of @longseq/backend (an
 * atanh series where y is in [-1/2, 1], the plain log elsewhere), shared with the op
 * packages' gpu.js programs. The shader `log` near 1 is only absolutely accurate, so
 * Goldberg's `Math.log(1 + y) * (y / ((1 + y) - 1))` was up to 0.33 off relatively for the
 * small y of softplus(x), x in [-16, -1], on gpu.js' WebGPU mode.
 */
export const log1pAcc: string = GPUJS_LOG1P_ACC;

/**
 * tanh that is finite for any finite x and accurate near 0. Dawn on SwiftShader returns
 * NaN for tanh(inf) and is off by 20% near 1e-7; this uses exp(-2|x|), which cannot
 * overflow, and a Taylor series where 1 - exp(-2|x|) would cancel.
 */
export const tanhStable = /* js */ `function tanhStable(x) {
  const ax = Math.abs(x);
  if (ax < 0.0625) {
    const x2 = x * x;
    return x * (1 + x2 * (-0.3333333333333333 + x2 * (0.13333333333333333 + x2 * -0.05396825396825397)));
  }
  const t = Math.exp(-2 * ax);
  const r = (1 - t) / (1 + t);
  if (x < 0) return -r;
  return r;
}`;

/**
 * e^x to about half an ulp. WGSL only promises exp to 3 + 2|x| ulp, and Dawn on SwiftShader
 * is off by ~3 ulp at e^4, more than the test rule allows. Cody-Waite reduction
 * x = k ln2 + r (ln2 split so k * LN2_HI is exact), then 1 + q with q = e^r - 1 from a
 * degree-7 Taylor polynomial (|r| <= ln2/2, truncation < 1e-8): Horner's rounding errors
 * stay relative to q, so only the final add rounds at the scale of the result. 2^k is exact.
 * 1.4426950408889634 is log2(e), a literal since kernels cannot read Math.LOG2E; Math.pow,
 * not `**`, because gpu.js translates only the former.
 */
export const expAccurate = /* js */ `function expAccurate(x) {
  // outside the f32 range (and NaN): the built-in already gives 0 / Infinity
  if (x > 88) return Math.exp(x);
  if (x < -87) return Math.exp(x);
  const k = Math.floor(x * 1.4426950408889634 + 0.5);
  const r = x - k * 0.693145751953125 - k * 1.4286068203094173e-6;
  const q =
    r *
    (1 +
      r *
        (0.5 +
          r *
            (0.16666666666666666 +
              r *
                (0.041666666666666664 +
                  r * (0.008333333333333333 + r * (0.001388888888888889 + r * 0.0001984126984126984))))));
  return (1 + q) * Math.pow(2, k);
}`;
