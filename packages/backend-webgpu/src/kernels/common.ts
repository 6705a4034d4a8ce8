import { type Backend, dispatch1d, type Tensor, type WebGpuProgram } from '@longseq/backend';

/**
 * The largest power-of-two workgroup size up to `preferred` that the device allows.
 * SwiftShader allows 256 invocations; WebGPU's compatibility mode only 128.
 */
export function workgroupSize(backend: Backend, preferred = 256): number {
  const limit = Math.min(preferred, backend.limits.maxWorkgroupInvocations);
  return 2 ** Math.floor(Math.log2(Math.max(1, limit)));
}

/** Workgroups for a 1-D grid, folded into (x, y) past the per-dimension limit. */
export function grid1d(backend: Backend, workgroups: number): [number, number, number] {
  return dispatch1d(workgroups, backend.limits.maxWorkgroupsPerDimension);
}

/**
 * Entry-point parameters and the linear workgroup id for grids made by `grid1d`.
 * Workgroups past the real count must be ignored by the kernel.
 */
export const MAIN_PARAMS =
  '@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32';
export const LINEAR_WORKGROUP = 'let group = wid.x + wid.y * nwg.x;';

/**
 * NaN and infinities as runtime values. WGSL rejects them in constant expressions, so the
 * bit patterns live in private variables, which the compiler cannot treat as constants.
 */
export const WGSL_F32_SPECIALS = `
var<private> F32_NAN_BITS: u32 = 0x7fc00000u;
var<private> F32_INF_BITS: u32 = 0x7f800000u;
fn nan_f32() -> f32 { return bitcast<f32>(F32_NAN_BITS); }
fn inf_f32() -> f32 { return bitcast<f32>(F32_INF_BITS); }
// WGSL has no isNan, and compilers may fold x != x to false: test the bits.
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
// max/min that propagate NaN, as the reference (and PyTorch) do; WGSL's max is free to drop it.
fn max_nan(a: f32, b: f32) -> f32 { if (is_nan(a) || is_nan(b)) { return nan_f32(); } return max(a, b); }
fn min_nan(a: f32, b: f32) -> f32 { if (is_nan(a) || is_nan(b)) { return nan_f32(); } return min(a, b); }
`;

/**
 * e^x to about 1 ulp. WGSL only promises 3 + 2|x| ulp for exp (SwiftShader is ~4 ulp off
 * at e^4), which breaks the test rule of at most twice plain float32's error. Cody-Waite
 * range reduction x = k ln2 + r with ln2 split in two (k * LN2_HI is exact), a Taylor
 * polynomial for e^r on |r| <= ln2/2 evaluated with fma, then scaling by 2^k in two steps
 * so neither ldexp leaves the normal range early.
 */
export const WGSL_EXP = `
fn exp_acc(x: f32) -> f32 {
  if (x > 88.72284) { return inf_f32(); }
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

/** Runs a program writing `out`, and disposes `out` if the run fails so a failed kernel leaks nothing. */
export async function runInto(backend: Backend, out: Tensor, program: WebGpuProgram): Promise<Tensor> {
  try {
    await backend.run(program);
  } catch (err) {
    out.dispose();
    throw err;
  }
  return out;
}
