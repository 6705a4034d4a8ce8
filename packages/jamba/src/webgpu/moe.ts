/**
 * WebGPU programs of the mixture of experts: the combine (one thread per output element) and
 * the copy of one expert's weights out of the stacked ones (one thread per vec4, or per
 * element where a block is not a multiple of 4).
 */
import { type Backend, type Tensor, dispatch1d } from '@longseq/backend';
import { type JambaMoeAccumulateAttrs, expertCopyKernel, moeAccumulateKernel } from '../contract';

const WG = 256;

const source = (hasAcc: boolean) => /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= u.total) { return; }
  let t = i / u.width;
  let m = i - t * u.width;
  var v = ${hasAcc ? 'acc[i]' : '0.0'};
  let r = row_of[t];
  if (r >= 0) {
    v = v + weight[t] * y[u32(r) * u.width + m];
  }
  out[i] = v;
}`;

async function write(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: JambaMoeAccumulateAttrs,
  output: Tensor,
): Promise<void> {
  const [acc, y, rowOf, weight] = inputs as Tensor[];
  const total = attrs.tokens * attrs.width;
  if (total === 0) return;
  await backend.run({
    kind: 'webgpu',
    name: 'jamba_moe_accumulate',
    cacheKey: attrs.hasAcc ? 'acc' : 'first',
    inputs: [
      ...(attrs.hasAcc ? [{ name: 'acc', tensor: acc! }] : []),
      { name: 'y', tensor: y! },
      { name: 'row_of', tensor: rowOf! },
      { name: 'weight', tensor: weight! },
    ],
    outputs: [{ name: 'out', tensor: output }],
    uniforms: [
      { name: 'total', type: 'u32', value: total },
      { name: 'width', type: 'u32', value: attrs.width },
    ],
    source: source(attrs.hasAcc),
    dispatch: dispatch1d(Math.ceil(total / WG), backend.limits.maxWorkgroupsPerDimension),
  });
}

export const moeAccumulateWebGpuKernel = moeAccumulateKernel('webgpu', write);

const copySource = /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= u.count) { return; }
  out[i] = stacked[u.expert * u.count + i];
}`;

/** Inputs [stacked [E * R, C], out [R, C]] (written in place); see JambaExpertCopy. */
export const expertCopyWebGpuKernel = expertCopyKernel('webgpu', async (backend, stacked, out, attrs) => {
  // vec4 loads where a block is whole vec4s (then every expert's block starts on one)
  const vec = attrs.size % 4 === 0 ? 4 : 1;
  const elementType = vec === 4 ? { elementType: 'vec4<f32>' } : {};
  const count = attrs.size / vec;
  await backend.run({
    kind: 'webgpu',
    name: 'jamba_expert_copy',
    cacheKey: `v${vec}`,
    inputs: [{ name: 'stacked', tensor: stacked, ...elementType }],
    outputs: [{ name: 'out', tensor: out, ...elementType }],
    uniforms: [
      { name: 'count', type: 'u32', value: count },
      { name: 'expert', type: 'u32', value: attrs.expert },
    ],
    source: copySource,
    dispatch: dispatch1d(Math.ceil(count / WG), backend.limits.maxWorkgroupsPerDimension),
  });
});
