import { type Backend, type Tensor, type WebGpuProgram, dispatch1d } from '@longseq/backend';

const WORKGROUP = 256;

/**
 * A plain copy of `src` into `dst`: one read and one write of every element, the most any
 * memory-bound kernel of the same tensor can hope for. Reads vec4s when the size allows
 * (wider loads are how real kernels reach peak bandwidth), else scalars.
 */
export function copyProgram(backend: Backend, src: Tensor, dst: Tensor): WebGpuProgram {
  const vec4 = src.size % 4 === 0;
  const count = vec4 ? src.size / 4 : src.size;
  const elementType = vec4 ? 'vec4<f32>' : 'f32';
  return {
    kind: 'webgpu',
    name: 'bench_copy',
    cacheKey: vec4 ? 'vec4' : 'scalar',
    inputs: [{ name: 'src', tensor: src, elementType }],
    outputs: [{ name: 'dst', tensor: dst, elementType }],
    uniforms: [{ name: 'count', type: 'u32', value: count }],
    source: /* wgsl */ `
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  // dispatch1d may fold a long grid into x and y; recover the linear workgroup id.
  let i = (wid.x + wid.y * nwg.x) * ${WORKGROUP}u + lid;
  if (i < u.count) {
    dst[i] = src[i];
  }
}`,
    dispatch: dispatch1d(Math.ceil(count / WORKGROUP), backend.limits.maxWorkgroupsPerDimension),
  };
}
