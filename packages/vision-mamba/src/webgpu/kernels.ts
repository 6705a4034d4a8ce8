/**
 * WebGPU programs of the Vim kernels: one thread per output element. All three move data
 * (a gather, the token assembly, the merge of K scans), so the simple form is the right one;
 * neighbouring threads write neighbouring elements.
 */
import { type Backend, type Tensor, type WgslUniform, dispatch1d } from '@longseq/backend';
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

/**
 * Runs one of the programs above: a thread per element of `out`, the tensors bound by name in
 * order, then `out`, and the uniforms after `total` (the element count).
 */
function runPerElement(
  backend: Backend,
  name: string,
  source: string,
  inputs: Readonly<Record<string, Tensor>>,
  out: Tensor,
  uniforms: readonly WgslUniform[],
): Promise<void> {
  return backend.run({
    kind: 'webgpu',
    name,
    cacheKey: '',
    inputs: Object.entries(inputs).map(([binding, tensor]) => ({ name: binding, tensor })),
    outputs: [{ name: 'out', tensor: out }],
    uniforms: [{ name: 'total', type: 'u32', value: out.size }, ...uniforms],
    source,
    dispatch: dispatch1d(Math.ceil(out.size / WG), backend.limits.maxWorkgroupsPerDimension),
  });
}

async function writeGather(backend: Backend, inputs: readonly Tensor[], a: VimGatherAttrs, out: Tensor) {
  const [x, index] = inputs as [Tensor, Tensor];
  await runPerElement(backend, 'vim_gather', GATHER, { x, index }, out, [
    { name: 'count', type: 'u32', value: a.count },
    { name: 'inner', type: 'u32', value: a.inner },
  ]);
}

async function writeTokens(backend: Backend, inputs: readonly Tensor[], a: VimTokensAttrs, out: Tensor) {
  const [patches, bias, cls, pos] = inputs as [Tensor, Tensor, Tensor, Tensor];
  await runPerElement(backend, 'vim_tokens', TOKENS, { patches, bias, cls, pos }, out, [
    { name: 'embed', type: 'u32', value: a.embed },
    { name: 'length', type: 'u32', value: a.length },
    { name: 'patches', type: 'u32', value: a.patches },
    { name: 'cls_index', type: 'i32', value: a.clsIndex },
    { name: 'has_pos', type: 'u32', value: a.hasPos ? 1 : 0 },
  ]);
}

async function writeMerge(backend: Backend, inputs: readonly Tensor[], a: VimScanMergeAttrs, out: Tensor) {
  const [y, inverse] = inputs as [Tensor, Tensor];
  await runPerElement(backend, 'vim_scan_merge', MERGE, { y, inverse }, out, [
    { name: 'length', type: 'u32', value: a.length },
    { name: 'channels', type: 'u32', value: a.channels },
    { name: 'directions', type: 'u32', value: a.directions },
    { name: 'scale', type: 'f32', value: a.scale },
    { name: 'token_major', type: 'u32', value: a.tokenMajor ? 1 : 0 },
  ]);
}

export const vimGatherWebGpuKernel = singleOutputKernel(VimGather, 'webgpu', gatherShape, writeGather);
export const vimTokensWebGpuKernel = singleOutputKernel(VimTokens, 'webgpu', tokensShape, writeTokens);
export const vimScanMergeWebGpuKernel = singleOutputKernel(VimScanMerge, 'webgpu', mergeShape, writeMerge);
