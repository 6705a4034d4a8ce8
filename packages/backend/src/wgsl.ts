/**
 * WGSL snippets every WebGPU kernel may need, kept here (plain strings, no WebGPU import) so
 * the backend's primitives and the op packages' programs share one copy.
 */

/**
 * `exp_acc(x)`: e^x to about 1 ulp. WGSL only promises 3 + 2|x| ulp for `exp` (SwiftShader is
 * ~4 ulp off at e^4 and ~1.5e-4 relative near 0), which breaks the test rule of at most twice
 * plain float32's error. Cody-Waite range reduction x = k ln2 + r with ln2 split in two
 * (k * LN2_HI is exact), a degree-7 Taylor polynomial for e^r on |r| <= ln2/2 evaluated with
 * fma, then scaling by 2^k in two steps so neither ldexp leaves the normal range early.
 * Overflow gives +Infinity through a private variable (WGSL rejects infinite constants).
 */
export const WGSL_EXP_ACC = /* wgsl */ `
var<private> EXP_ACC_INF_BITS: u32 = 0x7f800000u;
fn exp_acc(x: f32) -> f32 {
  if (x > 88.72284) { return bitcast<f32>(EXP_ACC_INF_BITS); }
  if (x < -103.97208) { return 0.0; }
  let k = round(x * 1.4426950408889634);
  let r = fma(-k, 1.428606765330187e-6, fma(-k, 0.693145751953125, x));
  var q = 1.0 / 5040.0;
  q = fma(q, r, 1.0 / 720.0);
  q = fma(q, r, 1.0 / 120.0);
  q = fma(q, r, 1.0 / 24.0);
  q = fma(q, r, 1.0 / 6.0);
  q = fma(q, r, 0.5);
  q = fma(q, r, 1.0);
  let p = fma(q, r, 1.0);
  let ki = i32(k);
  let k1 = ki / 2;
  return ldexp(ldexp(p, k1), ki - k1);
}
`;

/**
 * `log1p_unit(y)`: log(1 + y) for 0 <= y <= 1 to a few ulp relative, without WGSL's `log`.
 * WGSL (and NVIDIA's lg2 behind it) bounds `log`'s error near 1 only in absolute terms
 * (2^-21), so log(1 + y) for a small y, even with Goldberg's correction, carries a large
 * relative error: softplus(x) for negative x and tanh(x) near 0 are exactly such values.
 * Instead: log(1 + y) = 2 atanh(s) with s = y / (2 + y) <= 1/3, an odd series in s up to
 * s^15 (the next term is below 2^-28 of the sum).
 */
export const WGSL_LOG1P_UNIT = /* wgsl */ `
fn log1p_unit(y: f32) -> f32 {
  let s = y / (2.0 + y);
  let s2 = s * s;
  var p = 1.0 / 15.0;
  p = fma(p, s2, 1.0 / 13.0);
  p = fma(p, s2, 1.0 / 11.0);
  p = fma(p, s2, 1.0 / 9.0);
  p = fma(p, s2, 1.0 / 7.0);
  p = fma(p, s2, 1.0 / 5.0);
  p = fma(p, s2, 1.0 / 3.0);
  return 2.0 * fma(s * s2, p, s);
}
`;

/**
 * `softplus_acc(x)`: PyTorch's softplus (threshold 20: x itself above it) in the overflow-free
 * form max(x, 0) + log1p(e^-|x|), whose log argument stays in (1, 2]. Needs `WGSL_EXP_ACC`.
 */
export const WGSL_SOFTPLUS_ACC = /* wgsl */ `${WGSL_LOG1P_UNIT}
fn softplus_acc(x: f32) -> f32 {
  if (x > 20.0) { return x; }
  return max(x, 0.0) + log1p_unit(exp_acc(-abs(x)));
}
`;

/**
 * `expm1_small(z)`: e^z - 1 for |z| <= 1 to about 1 ulp relative: its Taylor polynomial to
 * z^11 (1/12! is below 2^-28), so no cancellation and no `log` (see WGSL_LOG1P_UNIT).
 */
export const WGSL_EXPM1_SMALL = /* wgsl */ `
fn expm1_small(z: f32) -> f32 {
  var q = 1.0 / 39916800.0;
  q = fma(q, z, 1.0 / 3628800.0);
  q = fma(q, z, 1.0 / 362880.0);
  q = fma(q, z, 1.0 / 40320.0);
  q = fma(q, z, 1.0 / 5040.0);
  q = fma(q, z, 1.0 / 720.0);
  q = fma(q, z, 1.0 / 120.0);
  q = fma(q, z, 1.0 / 24.0);
  q = fma(q, z, 1.0 / 6.0);
  q = fma(q, z, 0.5);
  return fma(z * z, q, z);
}
`;
