/**
 * WebGPU programs for the causal depthwise conv1d: one thread per output element. The
 * conv is memory-bound (K multiply-adds per element read), so the simple form is the
 * right one: neighbouring threads read neighbouring x, and the K reads of a thread hit the
 * same cache lines as its neighbours'.
 */
import { type Backend, type Tensor, type WebGpuProgram, dispatch1d } from '@longseq/backend';
import {
  type CausalConv1dAttrs,
  type CausalConv1dStepAttrs,
  causalConv1dKernel,
  causalConv1dStepKernel,
} from '../contract';

const WG = 64;

/** x at padded position p of channel row bc: the state for p < past, x after it. */
const INPUT_AT = /* wgsl */ `
fn input_at(bc: u32, p: u32) -> f32 {
  if (p >= u.past) { return x[bc * u.length + p - u.past]; }
  if (u.has_state == 1u) { return state[bc * u.past + p]; }
  return 0.0;
}`;

const CONV = /* wgsl */ `${INPUT_AT}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= u.total) { return; }
  let bc = i / u.length;
  let t = i - bc * u.length;
  let c = bc % u.channels;
  var acc = 0.0;
  if (u.has_bias == 1u) { acc = bias[c]; }
  for (var j = 0u; j <= u.past; j++) {
    acc = acc + weight[c * (u.past + 1u) + j] * input_at(bc, t + j);
  }
  out[i] = acc;
}`;

const FINAL_STATE = /* wgsl */ `${INPUT_AT}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= u.total) { return; }
  let bc = i / u.past;
  let p = i - bc * u.past;
  final_state[i] = input_at(bc, u.length + p);
}`;

/** One thread per (b, c): the output from the old state and x, and the shifted state. */
const STEP = /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let bc = gid.x + gid.y * nwg.x * ${WG}u;
  if (bc >= u.total) { return; }
  let c = bc % u.channels;
  let xv = x[bc];
  var acc = 0.0;
  if (u.has_bias == 1u) { acc = bias[c]; }
  for (var j = 0u; j < u.past; j++) {
    acc = acc + weight[c * (u.past + 1u) + j] * state[bc * u.past + j];
  }
  acc = acc + weight[c * (u.past + 1u) + u.past] * xv;
  out[bc] = acc;
  for (var j = 0u; j + 1u < u.past; j++) {
    new_state[bc * u.past + j] = state[bc * u.past + j + 1u];
  }
  new_state[bc * u.past + u.past - 1u] = xv;
}`;

function grid(backend: Backend, threads: number): [number, number, number] {
  return dispatch1d(Math.ceil(threads / WG), backend.limits.maxWorkgroupsPerDimension);
}

async function writeConv(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: CausalConv1dAttrs,
  outputs: Tensor[],
): Promise<void> {
  const [x, weight, bias, state] = inputs as [Tensor, Tensor, Tensor, Tensor];
  const past = attrs.kernelSize - 1;
  const common = (total: number) => [
    { name: 'total', type: 'u32' as const, value: total },
    { name: 'length', type: 'u32' as const, value: attrs.length },
    { name: 'channels', type: 'u32' as const, value: attrs.channels },
    { name: 'past', type: 'u32' as const, value: past },
    { name: 'has_bias', type: 'u32' as const, value: attrs.hasBias ? 1 : 0 },
    { name: 'has_state', type: 'u32' as const, value: attrs.hasState ? 1 : 0 },
  ];
  const out = outputs[0]!;
  if (out.size > 0) {
    const program: WebGpuProgram = {
      kind: 'webgpu',
      name: 'causal_conv1d',
      cacheKey: '',
      inputs: [
        { name: 'x', tensor: x },
        { name: 'weight', tensor: weight },
        { name: 'bias', tensor: bias },
        { name: 'state', tensor: state },
      ],
      outputs: [{ name: 'out', tensor: out }],
      uniforms: common(out.size),
      source: CONV,
      dispatch: grid(backend, out.size),
    };
    await backend.run(program);
  }
  const finalState = outputs[1];
  if (finalState && finalState.size > 0) {
    await backend.run({
      kind: 'webgpu',
      name: 'causal_conv1d_final_state',
      cacheKey: '',
      inputs: [
        { name: 'x', tensor: x },
        { name: 'state', tensor: state },
      ],
      outputs: [{ name: 'final_state', tensor: finalState }],
      uniforms: common(finalState.size),
      source: FINAL_STATE,
      dispatch: grid(backend, finalState.size),
    });
  }
}

async function writeStep(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: CausalConv1dStepAttrs,
  outputs: Tensor[],
): Promise<void> {
  const [x, state, weight, bias] = inputs as [Tensor, Tensor, Tensor, Tensor];
  const [out, newState] = outputs as [Tensor, Tensor];
  const total = attrs.batch * attrs.channels;
  if (total === 0) return;
  await backend.run({
    kind: 'webgpu',
    name: 'causal_conv1d_step',
    cacheKey: '',
    inputs: [
      { name: 'x', tensor: x },
      { name: 'state', tensor: state },
      { name: 'weight', tensor: weight },
      { name: 'bias', tensor: bias },
    ],
    outputs: [
      { name: 'out', tensor: out },
      { name: 'new_state', tensor: newState },
    ],
    uniforms: [
      { name: 'total', type: 'u32', value: total },
      { name: 'channels', type: 'u32', value: attrs.channels },
      { name: 'past', type: 'u32', value: attrs.kernelSize - 1 },
      { name: 'has_bias', type: 'u32', value: attrs.hasBias ? 1 : 0 },
    ],
    source: STEP,
    dispatch: grid(backend, total),
  });
}

export const causalConv1dWebGpuKernel = causalConv1dKernel('webgpu', writeConv);
export const causalConv1dStepWebGpuKernel = causalConv1dStepKernel('webgpu', writeStep);
