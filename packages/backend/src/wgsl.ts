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
