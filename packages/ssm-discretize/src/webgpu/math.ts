import { WGSL_EXP_ACC } from '@longseq/backend';

/**
 * Accurate float32 elementary functions in WGSL. WGSL's built-in exp, sin, cos, log and atan2
 * have loose error bounds, and SwiftShader's are about 1.5e-4 relative off near 0 (measured:
 * exp(-0.04)), which would fail the test rule many times over. Each function here reduces
 * its argument exactly (Cody-Waite splits of ln 2 and pi / 2) and evaluates a short
 * polynomial with fma, to a few ulp.
 */
export const WGSL_MATH = /* wgsl */ `
${WGSL_EXP_ACC}
// (cos x, sin x): x = k pi/2 + r with pi/2 in three parts, |r| <= pi/4, then the quadrant.
fn sincos_acc(x: f32) -> vec2<f32> {
  let k = round(x * 0.63661977236758134);
  var r = fma(-k, 1.5703125, x);
  r = fma(-k, 4.8375129699707031e-4, r);
  r = fma(-k, 7.5497899548918821e-8, r);
  let r2 = r * r;
  var s = -1.0 / 39916800.0;
  s = fma(s, r2, 1.0 / 362880.0);
  s = fma(s, r2, -1.0 / 5040.0);
  s = fma(s, r2, 1.0 / 120.0);
  s = fma(s, r2, -1.0 / 6.0);
  let sin_r = fma(s * r2, r, r);
  var c = 1.0 / 479001600.0;
  c = fma(c, r2, -1.0 / 3628800.0);
  c = fma(c, r2, 1.0 / 40320.0);
  c = fma(c, r2, -1.0 / 720.0);
  c = fma(c, r2, 1.0 / 24.0);
  c = fma(c, r2, -0.5);
  let cos_r = fma(c, r2, 1.0);
  let q = i32(k) & 3;
  if (q == 0) { return vec2<f32>(cos_r, sin_r); }
  if (q == 1) { return vec2<f32>(-sin_r, cos_r); }
  if (q == 2) { return vec2<f32>(-cos_r, -sin_r); }
  return vec2<f32>(sin_r, -cos_r);
}

// log x for x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh((m - 1) / (m + 1)).
fn log_acc(x: f32) -> f32 {
  let parts = frexp(x);
  var m = parts.fract;
  var e = f32(parts.exp);
  if (m < 0.70710678) { m = m * 2.0; e = e - 1.0; }
  let s = (m - 1.0) / (m + 1.0);
  let s2 = s * s;
  var p = 1.0 / 11.0;
  p = fma(p, s2, 1.0 / 9.0);
  p = fma(p, s2, 1.0 / 7.0);
  p = fma(p, s2, 1.0 / 5.0);
  p = fma(p, s2, 1.0 / 3.0);
  let log_m = 2.0 * fma(p * s2, s, s);
  return fma(e, 1.4286068e-6, fma(e, 0.693145751953125, log_m));
}

// atan t for |t| <= 1: reduced by atan t = pi/6 + atan((sqrt3 t - 1) / (t + sqrt3)) above tan(pi/12).
fn atan_unit(t: f32) -> f32 {
  var x = abs(t);
  var offset = 0.0;
  if (x > 0.26794919) {
    x = (1.7320508 * x - 1.0) / (x + 1.7320508);
    offset = 0.52359878;
  }
  let x2 = x * x;
  var p = -1.0 / 15.0;
  p = fma(p, x2, 1.0 / 13.0);
  p = fma(p, x2, -1.0 / 11.0);
  p = fma(p, x2, 1.0 / 9.0);
  p = fma(p, x2, -1.0 / 7.0);
  p = fma(p, x2, 1.0 / 5.0);
  p = fma(p, x2, -1.0 / 3.0);
  let a = offset + fma(p * x2, x, x);
  return select(a, -a, t < 0.0);
}

fn atan2_acc(y: f32, x: f32) -> f32 {
  if (x == 0.0 && y == 0.0) { return 0.0; }
  var a: f32;
  if (abs(y) <= abs(x)) {
    a = atan_unit(y / x);
    if (x < 0.0) { a = a + select(-3.14159265, 3.14159265, y >= 0.0); }
  } else {
    a = select(-1.57079633, 1.57079633, y > 0.0) - atan_unit(x / y);
  }
  return a;
}
`;
