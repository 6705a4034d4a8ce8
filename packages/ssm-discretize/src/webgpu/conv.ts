/**
 * WebGPU programs of the causal long convolution y = K * u, per channel, through an FFT of
 * length M = the power of two >= 2L (zero padding to 2L makes the circular convolution
 * causal: no tail wraps into the first L outputs).
 *
 * Steps (z, spectra and results are [H, M] complex, interleaved):
 * 1. pack: z = u + i K, zero-padded (one complex FFT transforms both real signals).
 * 2. FFT(z): radix-2 Stockham (self-sorting, ping-pong buffers). When M fits workgroup memory
 *    (two buffers of M complex values), one workgroup per channel runs every stage there
 *    with barriers between stages; otherwise one global pass per stage, one thread per
 *    butterfly. Stage Ns = 1, 2, ..., M/2 reads j and j + M/2, twists the second by
 *    e^{-2 pi i (j mod Ns) / 2Ns} and writes (j div Ns) 2Ns + (j mod Ns) and that + Ns.
 * 3. multiply: U_k = (Z_k + conj Z_{M-k}) / 2, Kf_k = (Z_k - conj Z_{M-k}) / 2i, and
 *    conj(U_k Kf_k) is written, so the inverse FFT is the forward one: IFFT(Y) = conj(FFT(conj Y)) / M.
 * 4. FFT again, 5. unpack: y = Re(result) / M for the first L entries.
 * The float64 reference is `causalConvRef` in ../reference.ts. 'direct' is one thread per
 * output summing its L terms (O(L^2) per channel), kept as a cross-check.
 */
import { type Backend, type Tensor, type WebGpuProgram, dispatch1d } from '@longseq/backend';
import { CausalConv, type CausalConvAttrs, convShape, singleOutputKernel, twiddles } from '../contract';

const WG = 64;

const LINEAR_ID = /* wgsl */ `
fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * ${WG}u;
}
fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}`;

const PACK = /* wgsl */ `${LINEAR_ID}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= u.count) { return; }
  let h = i / u.m;
  let t = i % u.m;
  var z = vec2<f32>(0.0, 0.0);
  if (t < u.len) { z = vec2<f32>(u_in[h * u.len + t], K[h * u.len + t]); }
  z_out[i] = z;
}`;

const STAGE = /* wgsl */ `${LINEAR_ID}
// One radix-2 Stockham stage of span ns, one thread per butterfly.
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= u.count) { return; }
  let half_m = u.m / 2u;
  let base = (i / half_m) * u.m;
  let j = i % half_m;
  let k = j % u.ns;
  let a0 = src[base + j];
  let a1 = cmul(src[base + j + half_m], tw[k * (half_m / u.ns)]);
  let o = base + (j / u.ns) * 2u * u.ns + k;
  dst[o] = a0 + a1;
  dst[o + u.ns] = a0 - a1;
}`;

function localSource(capacity: number, wg: number): string {
  return /* wgsl */ `${LINEAR_ID}
const CAP: u32 = ${capacity}u;
const LWG: u32 = ${wg}u;
var<workgroup> buf_a: array<vec2<f32>, CAP>;
var<workgroup> buf_b: array<vec2<f32>, CAP>;

// Every stage of one channel's FFT in workgroup memory: one workgroup per channel.
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let h = wid.x + wid.y * nwg.x;
  if (h >= u.h) { return; }
  let m = u.m;
  let half_m = m / 2u;
  let base = h * m;
  for (var t = lid.x; t < m; t += LWG) { buf_a[t] = src[base + t]; }
  workgroupBarrier();
  var ns = 1u;
  var in_a = true;
  while (ns < m) {
    for (var j = lid.x; j < half_m; j += LWG) {
      let k = j % ns;
      var a0: vec2<f32>;
      var a1: vec2<f32>;
      if (in_a) { a0 = buf_a[j]; a1 = buf_a[j + half_m]; } else { a0 = buf_b[j]; a1 = buf_b[j + half_m]; }
      a1 = cmul(a1, tw[k * (half_m / ns)]);
      let o = (j / ns) * 2u * ns + k;
      if (in_a) { buf_b[o] = a0 + a1; buf_b[o + ns] = a0 - a1; } else { buf_a[o] = a0 + a1; buf_a[o + ns] = a0 - a1; }
    }
    workgroupBarrier();
    in_a = !in_a;
    ns = ns * 2u;
  }
  for (var t = lid.x; t < m; t += LWG) {
    if (in_a) { dst[base + t] = buf_a[t]; } else { dst[base + t] = buf_b[t]; }
  }
}`;
}

const MULTIPLY = /* wgsl */ `${LINEAR_ID}
// Splits Z = FFT(u + iK) into U and Kf by conjugate symmetry and writes conj(U Kf).
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= u.count) { return; }
  let base = (i / u.m) * u.m;
  let k = i % u.m;
  let zk = src[i];
  let zr = src[base + (u.m - k) % u.m];
  let zr_conj = vec2<f32>(zr.x, -zr.y);
  let spec_u = 0.5 * (zk + zr_conj);
  let d = zk - zr_conj;
  let spec_k = 0.5 * vec2<f32>(d.y, -d.x);
  let prod = cmul(spec_u, spec_k);
  dst[i] = vec2<f32>(prod.x, -prod.y);
}`;

const UNPACK = /* wgsl */ `${LINEAR_ID}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= u.count) { return; }
  let h = i / u.len;
  y[i] = src[h * u.m + i % u.len].x * u.inv_m;
}`;

const DIRECT = /* wgsl */ `${LINEAR_ID}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= u.count) { return; }
  let base = (i / u.len) * u.len;
  let k = i % u.len;
  var acc = 0.0;
  for (var j = 0u; j <= k; j++) { acc += K[base + j] * u_in[base + k - j]; }
  y[i] = acc;
}`;

/** The longest FFT one workgroup runs in workgroup memory on this backend (0: none). */
export function localFftCapacity(backend: Backend): number {
  const bytes = backend.limits.maxWorkgroupStorageSize;
  const fit = Math.floor(bytes / 16); // two buffers of vec2<f32>
  return fit >= 2 ? Math.min(4096, 2 ** Math.floor(Math.log2(fit))) : 0;
}

function grid(backend: Backend, threads: number): [number, number, number] {
  return dispatch1d(Math.ceil(threads / WG), backend.limits.maxWorkgroupsPerDimension);
}

const vec2 = 'vec2<f32>';

/** The FFT of every channel of `src` ([H, M] complex) into `dst`; `scratch` is clobbered. */
async function fft(
  backend: Backend,
  attrs: CausalConvAttrs,
  tw: Tensor,
  src: Tensor,
  dst: Tensor,
  scratch: Tensor,
): Promise<void> {
  const { H, M } = attrs;
  const capacity = localFftCapacity(backend);
  if (attrs.fft !== 'global' && M <= capacity) {
    const wg = Math.min(256, backend.limits.maxWorkgroupInvocations);
    await backend.run({
      kind: 'webgpu',
      name: 'ssm_fft_local',
      cacheKey: `cap${capacity}_wg${wg}`,
      inputs: [
        { name: 'src', tensor: src, elementType: vec2 },
        { name: 'tw', tensor: tw, elementType: vec2 },
      ],
      outputs: [{ name: 'dst', tensor: dst, elementType: vec2 }],
      uniforms: [
        { name: 'h', type: 'u32', value: H },
        { name: 'm', type: 'u32', value: M },
      ],
      source: localSource(capacity, wg),
      dispatch: dispatch1d(H, backend.limits.maxWorkgroupsPerDimension),
    });
    return;
  }
  // Global stages ping-pong so that the last one lands in dst.
  const stages = Math.log2(M);
  let from = src;
  for (let s = 0; s < stages; s++) {
    const to = (stages - 1 - s) % 2 === 0 ? dst : scratch;
    const program: WebGpuProgram = {
      kind: 'webgpu',
      name: 'ssm_fft_stage',
      cacheKey: '',
      inputs: [
        { name: 'src', tensor: from, elementType: vec2 },
        { name: 'tw', tensor: tw, elementType: vec2 },
      ],
      outputs: [{ name: 'dst', tensor: to, elementType: vec2 }],
      uniforms: [
        { name: 'count', type: 'u32', value: (H * M) / 2 },
        { name: 'm', type: 'u32', value: M },
        { name: 'ns', type: 'u32', value: 2 ** s },
      ],
      source: STAGE,
      dispatch: grid(backend, (H * M) / 2),
    };
    await backend.run(program);
    from = to;
  }
}

async function writeConv(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: CausalConvAttrs,
  y: Tensor,
): Promise<void> {
  const [u, K] = inputs as [Tensor, Tensor];
  const { H, L, M } = attrs;
  if (H * L === 0) return;
  if (attrs.algorithm === 'direct') {
    await backend.run({
      kind: 'webgpu',
      name: 'ssm_conv_direct',
      cacheKey: '',
      inputs: [
        { name: 'u_in', tensor: u },
        { name: 'K', tensor: K },
      ],
      outputs: [{ name: 'y', tensor: y }],
      uniforms: [
        { name: 'count', type: 'u32', value: H * L },
        { name: 'len', type: 'u32', value: L },
      ],
      source: DIRECT,
      dispatch: grid(backend, H * L),
    });
    return;
  }
  const tw = backend.tensor(twiddles(M), [Math.max(1, M / 2), 2]);
  const a = backend.empty([H, M, 2]);
  const b = backend.empty([H, M, 2]);
  const c = backend.empty([H, M, 2]);
  try {
    await backend.run({
      kind: 'webgpu',
      name: 'ssm_fft_pack',
      cacheKey: '',
      inputs: [
        { name: 'u_in', tensor: u },
        { name: 'K', tensor: K },
      ],
      outputs: [{ name: 'z_out', tensor: a, elementType: vec2 }],
      uniforms: [
        { name: 'count', type: 'u32', value: H * M },
        { name: 'm', type: 'u32', value: M },
        { name: 'len', type: 'u32', value: L },
      ],
      source: PACK,
      dispatch: grid(backend, H * M),
    });
    await fft(backend, attrs, tw, a, b, c);
    await backend.run({
      kind: 'webgpu',
      name: 'ssm_fft_multiply',
      cacheKey: '',
      inputs: [{ name: 'src', tensor: b, elementType: vec2 }],
      outputs: [{ name: 'dst', tensor: a, elementType: vec2 }],
      uniforms: [
        { name: 'count', type: 'u32', value: H * M },
        { name: 'm', type: 'u32', value: M },
      ],
      source: MULTIPLY,
      dispatch: grid(backend, H * M),
    });
    await fft(backend, attrs, tw, a, b, c);
    await backend.run({
      kind: 'webgpu',
      name: 'ssm_fft_unpack',
      cacheKey: '',
      inputs: [{ name: 'src', tensor: b, elementType: vec2 }],
      outputs: [{ name: 'y', tensor: y }],
      uniforms: [
        { name: 'count', type: 'u32', value: H * L },
        { name: 'm', type: 'u32', value: M },
        { name: 'len', type: 'u32', value: L },
        { name: 'inv_m', type: 'f32', value: 1 / M },
      ],
      source: UNPACK,
      dispatch: grid(backend, H * L),
    });
  } finally {
    tw.dispose();
    a.dispose();
    b.dispose();
    c.dispose();
  }
}

export const causalConvWebGpuKernel = singleOutputKernel<CausalConvAttrs>(
  CausalConv,
  'webgpu',
  convShape,
  writeConv,
);
