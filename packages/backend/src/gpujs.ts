/**
 * gpu.js helper sources every gpu.js kernel may need, kept here (plain strings, no gpu.js
 * import) so the gpu.js backend's primitives and the op packages' programs share one copy,
 * as `./wgsl.ts` does for WGSL. Pass them in a program's `functions`.
 *
 * Each is a JavaScript source string starting with `function <name>(` (gpu.js compiles from
 * source, and a minifier would rewrite a function's body into code gpu.js cannot translate).
 * Their locals carry a prefix of the helper's name: gpu.js' shader modes declare a helper's
 * variables next to those of the kernel that calls it, and a clash (a local `s` beside the
 * kernel's `s`) broke a kernel before.
 */

/**
 * `log1pAcc(y)`: log(1 + y) to a few float32 ulp relative, for any y. gpu.js compiles
 * `Math.log` to the shader's `log`, whose error near 1 WGSL (and NVIDIA's lg2, and
 * SwiftShader) bound only in absolute terms (2^-21); so log(1 + y) for a small y, even with
 * Goldberg's correction `log(w) * (y / (w - 1))`, can be off by a large relative amount
 * (softplus of x in [-16, -1] came out 0.33 off on gpu.js' WebGPU mode on SwiftShader).
 * Instead, as in `WGSL_LOG1P_UNIT`: log(1 + y) = 2 atanh(s) with s = y / (2 + y), an odd
 * series in s up to s^15 where |s| <= 1/3 (y in [-1/2, 1]; the next term is below 2^-28 of
 * the sum), and the plain log elsewhere, where |log(1 + y)| >= log(3/2) and the log's
 * absolute error is small relative to the result. NaN gives NaN (SwiftShader's WGSL log of NaN
 * is 89); y <= -1 gives the shader's log of 0 or of a negative number (JS: -Infinity, NaN;
 * WGSL leaves both to the implementation: SwiftShader gives -88 and log |1 + y|).
 */
export const GPUJS_LOG1P_ACC = /* js */ `function log1pAcc(l1pY) {
  if (l1pY > 1) return Math.log(1 + l1pY);
  if (l1pY >= -0.5) {
    const l1pS = l1pY / (2 + l1pY);
    const l1pS2 = l1pS * l1pS;
    let l1pP = 0.06666666666666667;
    l1pP = 0.07692307692307693 + l1pS2 * l1pP;
    l1pP = 0.09090909090909091 + l1pS2 * l1pP;
    l1pP = 0.1111111111111111 + l1pS2 * l1pP;
    l1pP = 0.14285714285714285 + l1pS2 * l1pP;
    l1pP = 0.2 + l1pS2 * l1pP;
    l1pP = 0.3333333333333333 + l1pS2 * l1pP;
    return 2 * (l1pS + l1pS * l1pS2 * l1pP);
  }
  if (l1pY > -1) return Math.log(1 + l1pY);
  if (l1pY <= -1) return Math.log(1 + l1pY);
  // NaN, which fails every comparison (the shader log of NaN is not NaN everywhere)
  return l1pY;
}`;
