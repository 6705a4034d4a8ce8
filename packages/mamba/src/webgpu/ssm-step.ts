/**
 * WebGPU program of the one-token SSM update: one thread per (batch, channel) holding its
 * N states, reading them once and writing them once. O(N) work per channel per token.
 */
import { type Backend, type Tensor, WGSL_EXP_ACC, WGSL_SOFTPLUS_ACC, dispatch1d } from '@longseq/backend';
import { type MambaSsmStepAttrs, mambaSsmStepKernel } from '../contract';

const WG = 64;

/**
 * The backend's accurate e^x (`exp_acc`; WGSL's exp may be off by 3 + 2|x| ulp, Dawn on
 * SwiftShader by ~3), the backend's softplus (log1p by a series: WGSL's `log` near 1 is only
 * absolutely accurate) and SiLU built on it.
 */
export const WGSL_EXP_ACCURATE = /* wgsl */ `
${WGSL_EXP_ACC}
${WGSL_SOFTPLUS_ACC}
fn silu_accurate(x: f32) -> f32 {
  return x / (1.0 + exp_acc(-x));
}`;

const SOURCE = /* wgsl */ `${WGSL_EXP_ACCURATE}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let bc = gid.x + gid.y * nwg.x * ${WG}u;
  if (bc >= u.total) { return; }
  let b = bc / u.channels;
  let c = bc - b * u.channels;
  let dt = softplus_acc(dt_in[bc] + dt_bias[c]);
  let x = u_in[bc];
  let dtx = dt * x;
  var acc = 0.0;
  for (var j = 0u; j < u.states; j++) {
    let h = exp_acc(dt * a[c * u.states + j]) * state[bc * u.states + j] + dtx * b_in[b * u.states + j];
    new_state[bc * u.states + j] = h;
    acc = acc + c_in[b * u.states + j] * h;
  }
  y[bc] = (acc + d_skip[c] * x) * silu_accurate(z[bc]);
}`;

async function writeStep(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: MambaSsmStepAttrs,
  outputs: Tensor[],
): Promise<void> {
  const [u, dt, A, B, C, D, z, dtBias, state] = inputs as Tensor[];
  const total = attrs.batch * attrs.channels;
  if (total === 0) return;
  await backend.run({
    kind: 'webgpu',
    name: 'mamba_ssm_step',
    cacheKey: '',
    inputs: [
      { name: 'u_in', tensor: u! },
      { name: 'dt_in', tensor: dt! },
      { name: 'a', tensor: A! },
      { name: 'b_in', tensor: B! },
      { name: 'c_in', tensor: C! },
      { name: 'd_skip', tensor: D! },
      { name: 'z', tensor: z! },
      { name: 'dt_bias', tensor: dtBias! },
      { name: 'state', tensor: state! },
    ],
    outputs: [
      { name: 'y', tensor: outputs[0]! },
      { name: 'new_state', tensor: outputs[1]! },
    ],
    uniforms: [
      { name: 'total', type: 'u32', value: total },
      { name: 'channels', type: 'u32', value: attrs.channels },
      { name: 'states', type: 'u32', value: attrs.states },
    ],
    source: SOURCE,
    dispatch: dispatch1d(Math.ceil(total / WG), backend.limits.maxWorkgroupsPerDimension),
  });
}

export const mambaSsmStepWebGpuKernel = mambaSsmStepKernel('webgpu', writeStep);
