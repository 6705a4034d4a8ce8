/**
 * WebGPU programs of the Vim kernels: one thread per output element. All three move data
 * (a gather, the token assembly, the merge of K scans), so the simple form is the right one;
 * neighbouring threads write neighbouring elements.
 */
import { type Backend, type Tensor, type WebGpuProgram, dispatch1d } from '@longseq/backend';
import {
  VimGather,
  type VimGatherAttrs,
  VimScanMerge,
  type VimScanMergeAttrs,
  VimTokens,
  type VimTokensAttrs,
  gatherShape,
  mergeShape,
  singleOutputKernel,
  tokensShape,
} from '../contract';

const WG = 256;

const INDEX = /* wgsl */ `
fn thread_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * ${WG}u; }`;

const GATHER = /* wgsl */ `${INDEX}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = thread_index(gid, nwg);
  if (i >= u.total) { return; }
  let b = i / u.count;
  let src = index[i - b * u.count];
  if (src < 0) { out[i] = 0.0; return; }
  out[i] = x[b * u.inner + u32(src)];
}`;

const TOKENS = /* wgsl */ `${INDEX}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = thread_index(gid, nwg);
  if (i >= u.total) { return; }
  let m = i % u.embed;
  let bl = i / u.embed;
  let l = bl % u.length;
  let b = bl / u.length;
  var v: f32;
  if (i32(l) == u.cls_index) {
    v = cls[m];
  } else {
    var p = l;
    if (u.cls_index >= 0 && i32(l) > u.cls_index) { p = l - 1u; }
    v = patches[(b * u.patches + p) * u.embed + m] + bias[m];
  }
  if (u.has_pos == 1u) { v = v + pos[l * u.embed + m]; }
  out[i] = v;
}`;

const MERGE = /* wgsl */ `${INDEX}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = thread_index(gid, nwg);
  if (i >= u.total) { return; }
  var l: u32;
  var c: u32;
  var b: u32;
  if (u.token_major == 1u) {
    c = i % u.channels;
    let bl = i / u.channels;
    l = bl % u.length;
    b = bl / u.length;
  } else {
    l = i % u.length;
    let bc = i / u.length;
    c = bc % u.channels;
    b = bc / u.channels;
  }
  var acc = 0.0;
  for (var k = 0u; k < u.directions; k++) {
    let t = u32(inverse[k * u.length + l]);
    acc = acc + y[((b * u.directions + k) * u.channels + c) * u.length + t];
  }
  out[i] = acc * u.scale;
}`;

function grid(backend: Backend, threads: number): [number, number, number] {
  return dispatch1d(Math.ceil(threads / WG), backend.limits.maxWorkgroupsPerDimension);
}

async function writeGather(backend: Backend, inputs: readonly Tensor[], a: VimGatherAttrs, out: Tensor) {
  const [x, index] = inputs as [Tensor, Tensor];
  const program: WebGpuProgram = {
    kind: 'webgpu',
    name: 'vim_gather',
    cacheKey: '',
    inputs: [
      { name: 'x', tensor: x },
      { name: 'index', tensor: index },
    ],
    outputs: [{ name: 'out', tensor: out }],
    uniforms: [
      { name: 'total', type: 'u32', value: out.size },
      { name: 'count', type: 'u32', value: a.count },
      { name: 'inner', type: 'u32', value: a.inner },
    ],
    source: GATHER,
    dispatch: grid(backend, out.size),
  };
  await backend.run(program);
}

async function writeTokens(backend: Backend, inputs: readonly Tensor[], a: VimTokensAttrs, out: Tensor) {
  const [patches, bias, cls, pos] = inputs as [Tensor, Tensor, Tensor, Tensor];
  await backend.run({
    kind: 'webgpu',
    name: 'vim_tokens',
    cacheKey: '',
    inputs: [
      { name: 'patches', tensor: patches },
      { name: 'bias', tensor: bias },
      { name: 'cls', tensor: cls },
      { name: 'pos', tensor: pos },
    ],
    outputs: [{ name: 'out', tensor: out }],
    uniforms: [
      { name: 'total', type: 'u32', value: out.size },
      { name: 'embed', type: 'u32', value: a.embed },
      { name: 'length', type: 'u32', value: a.length },
      { name: 'patches', type: 'u32', value: a.patches },
      { name: 'cls_index', type: 'i32', value: a.clsIndex },
      { name: 'has_pos', type: 'u32', value: a.hasPos ? 1 : 0 },
    ],
    source: TOKENS,
    dispatch: grid(backend, out.size),
  });
}

async function writeMerge(backend: Backend, inputs: readonly Tensor[], a: VimScanMergeAttrs, out: Tensor) {
  const [y, inverse] = inputs as [Tensor, Tensor];
  await backend.run({
    kind: 'webgpu',
    name: 'vim_scan_merge',
    cacheKey: '',
    inputs: [
      { name: 'y', tensor: y },
      { name: 'inverse', tensor: inverse },
    ],
    outputs: [{ name: 'out', tensor: out }],
    uniforms: [
      { name: 'total', type: 'u32', value: out.size },
      { name: 'length', type: 'u32', value: a.length },
      { name: 'channels', type: 'u32', value: a.channels },
      { name: 'directions', type: 'u32', value: a.directions },
      { name: 'scale', type: 'f32', value: a.scale },
      { name: 'token_major', type: 'u32', value: a.tokenMajor ? 1 : 0 },
    ],
    source: MERGE,
    dispatch: grid(backend, out.size),
  });
}

export const vimGatherWebGpuKernel = singleOutputKernel(VimGather, 'webgpu', gatherShape, writeGather);
export const vimTokensWebGpuKernel = singleOutputKernel(VimTokens, 'webgpu', tokensShape, writeTokens);
export const vimScanMergeWebGpuKernel = singleOutputKernel(VimScanMerge, 'webgpu', mergeShape, writeMerge);
