import { type Backend, dispatch1d, type Tensor, WGSL_EXP_ACC, type WebGpuProgram } from '@longseq/backend';

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

/** e^x to about 1 ulp (`exp_acc`): the shared snippet of @longseq/backend. */
export const WGSL_EXP = WGSL_EXP_ACC;

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
