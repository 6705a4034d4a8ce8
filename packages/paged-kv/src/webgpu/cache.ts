/**
 * WebGPU programs that change the KV cache in place: writing new key/value rows into their
 * slots (vLLM's reshape_and_cache) and copying whole blocks (copy-on-write, swap).
 */
import { type Backend, type Tensor, type WebGpuProgram, dispatch1d } from '@longseq/backend';

const WG = 256;

/**
 * One thread per element of the new rows: cache[slot * rowSize + e] = rows[t * rowSize + e]
 * for keys and values at once. A negative slot (padding) is skipped, as are slots past the cache.
 */
export function writeKvProgram(
  backend: Backend,
  tensors: { k: Tensor; v: Tensor; slots: Tensor; keyCache: Tensor; valueCache: Tensor },
  sizes: { tokens: number; rowSize: number; slots: number },
): WebGpuProgram {
  const count = sizes.tokens * sizes.rowSize;
  return {
    kind: 'webgpu',
    name: 'paged_write_kv',
    cacheKey: '',
    inputs: [
      { name: 'k', tensor: tensors.k },
      { name: 'v', tensor: tensors.v },
      { name: 'slots', tensor: tensors.slots },
    ],
    outputs: [
      { name: 'key_cache', tensor: tensors.keyCache },
      { name: 'value_cache', tensor: tensors.valueCache },
    ],
    uniforms: [
      { name: 'count', type: 'u32', value: count },
      { name: 'row_size', type: 'u32', value: sizes.rowSize },
      { name: 'num_slots', type: 'i32', value: sizes.slots },
    ],
    source: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * ${WG}u + lid;
  if (i >= u.count) { return; }
  let t = i / u.row_size;
  let slot = slots[t];
  if (slot < 0 || slot >= u.num_slots) { return; }
  let dst = u32(slot) * u.row_size + i % u.row_size;
  key_cache[dst] = k[i];
  value_cache[dst] = v[i];
}`,
    dispatch: dispatch1d(Math.ceil(count / WG), backend.limits.maxWorkgroupsPerDimension),
  };
}

/**
 * One thread per element of the copied blocks: dst[pair.dst block][e] = src[pair.src block][e].
 * In place (copy-on-write inside one cache) the cache is bound once, read-write: WebGPU
 * forbids binding one buffer as both read-only and writable. The op guarantees no block is
 * both a source and a destination, so the order of threads does not matter.
 */
export function copyBlocksProgram(
  backend: Backend,
  tensors: { src: Tensor; dst: Tensor; pairs: Tensor },
  sizes: { pairs: number; blockElems: number; inPlace: boolean },
): WebGpuProgram {
  const vec = sizes.blockElems % 4 === 0 ? 4 : 1;
  const type = vec === 4 ? 'vec4<f32>' : 'f32';
  const per = sizes.blockElems / vec;
  const count = sizes.pairs * per;
  const source = sizes.inPlace ? 'dst' : 'src';
  return {
    kind: 'webgpu',
    name: 'paged_copy_blocks',
    cacheKey: `${sizes.inPlace ? 'inplace' : 'cross'}:v${vec}`,
    inputs: [
      ...(sizes.inPlace ? [] : [{ name: 'src', tensor: tensors.src, elementType: type }]),
      { name: 'pairs', tensor: tensors.pairs },
    ],
    outputs: [{ name: 'dst', tensor: tensors.dst, elementType: type }],
    uniforms: [
      { name: 'count', type: 'u32', value: count },
      { name: 'per_block', type: 'u32', value: per },
    ],
    source: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * ${WG}u + lid;
  if (i >= u.count) { return; }
  let pair = i / u.per_block;
  let e = i % u.per_block;
  let from_block = u32(pairs[pair * 2u]);
  let to_block = u32(pairs[pair * 2u + 1u]);
  dst[to_block * u.per_block + e] = ${source}[from_block * u.per_block + e];
}`,
    dispatch: dispatch1d(Math.ceil(count / WG), backend.limits.maxWorkgroupsPerDimension),
  };
}
