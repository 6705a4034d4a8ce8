/**
 * WebGPU programs of the causal long convolution y = K * u, per channel, through an FFT of
 * length M = the power of two >= 2L (zero padding to 2L makes the circular convolution
 * causal: no tail wraps into the first L outputs).
 *
 * Steps (z, spectra and results are [H, M] complex, interleaved):
 * 1. pack: channels in pairs, z = x_2c + i x_2c+1, zero-padded, for u and for K (one complex
 *    FFT transforms two real channels; pairing channels rather than u with K keeps both
 *    halves of similar size, so splitting them does not lose the smaller one).
 * 2. FFT(z): radix-2 Stockham (self-sorting, ping-pong buffers). When M fits workgroup memory
 *    (two buffers of M complex values), one workgroup per channel runs every stage there
 *    with barriers between stages; otherwise one global pass per stage, one thread per
 *    butterfly. Stage Ns = 1, 2, ..., M/2 reads j and j + M/2, twists the second by
 *    e^{-2 pi i (j mod Ns) / 2Ns} and writes (j div Ns) 2Ns + (j mod Ns) and that + Ns.
 * 3. multiply: split each pair by conjugate symmetry (X_2c = (Z_k + conj Z_{M-k}) / 2,
 *    X_2c+1 = (Z_k - conj Z_{M-k}) / 2i), Y = U Kf per channel, pack Y_2c + i Y_2c+1 and write
 *    its conjugate, so the inverse FFT is the forward one: IFFT(Y) = conj(FFT(conj Y)) / M.
 * 4. FFT again, 5. unpack: y_2c = Re / M, y_2c+1 = -Im / M for the first L entries.
 * Three FFTs per two channels; four [ceil(H/2), M] complex buffers.
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
// Channels 2c and 2c + 1 of x as the real and imaginary parts of row c, zero-padded to M
// (a missing last channel of an odd H is zero).
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= u.count) { return; }
  let c = i / u.m;
  let t = i % u.m;
  var z = vec2<f32>(0.0, 0.0);
  if (t < u.len) {
    z.x = x[2u * c * u.len + t];
    if (2u * c + 1u < u.h) { z.y = x[(2u * c + 1u) * u.len + t]; }
  }
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

// Element (g, i) of this workgroup's G transforms of length P, in global memory: input
// i of batch b at in_bstride b + in_stride i, output k at out_bstride b + out_stride k,
// within the channel's M values. Whichever of the two strides is 1 varies fastest across
// threads, so loads and stores stay contiguous.
fn slot(e: u32, unit_batch: bool) -> vec2<u32> {
  if (unit_batch) { return vec2<u32>(e % u.g, e / u.g); }
  return vec2<u32>(e / u.p, e % u.p);
}

// G independent radix-2 Stockham FFTs of length P per workgroup, every stage in workgroup
// memory; with twiddle = 1, output k of batch b is multiplied by e^{-2 pi i b k / M} (the
// four-step FFT's twist between its two passes).
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let groups = u.batches / u.g;
  let linear = wid.x + wid.y * nwg.x;
  if (linear >= u.h * groups) { return; }
  let base = (linear / groups) * u.m;
  let b0 = (linear % groups) * u.g;
  let p = u.p;
  let half_p = p / 2u;
  let count = u.g * p;
  for (var e = lid.x; e < count; e += LWG) {
    let gi = slot(e, u.in_bstride == 1u);
    buf_a[gi.x * p + gi.y] = src[base + (b0 + gi.x) * u.in_bstride + gi.y * u.in_stride];
  }
  workgroupBarrier();
  var ns = 1u;
  var in_a = true;
  while (ns < p) {
    for (var jj = lid.x; jj < u.g * half_p; jj += LWG) {
      let row = (jj / half_p) * p;
      let j = jj % half_p;
      let k = j % ns;
      var a0: vec2<f32>;
      var a1: vec2<f32>;
      if (in_a) { a0 = buf_a[row + j]; a1 = buf_a[row + j + half_p]; } else { a0 = buf_b[row + j]; a1 = buf_b[row + j + half_p]; }
      // e^{-2 pi i k / 2ns} from the M-point table.
      a1 = cmul(a1, tw[k * (u.m / (2u * ns))]);
      let o = row + (j / ns) * 2u * ns + k;
      if (in_a) { buf_b[o] = a0 + a1; buf_b[o + ns] = a0 - a1; } else { buf_a[o] = a0 + a1; buf_a[o + ns] = a0 - a1; }
    }
    workgroupBarrier();
    in_a = !in_a;
    ns = ns * 2u;
  }
  for (var e = lid.x; e < count; e += LWG) {
    let gk = slot(e, u.out_bstride == 1u);
    var v: vec2<f32>;
    if (in_a) { v = buf_a[gk.x * p + gk.y]; } else { v = buf_b[gk.x * p + gk.y]; }
    if (u.twiddle == 1u) {
      // e^{-2 pi i t / M} for t = b k mod M; the table holds t < M/2, and W^(t + M/2) = -W^t.
      let t = ((b0 + gk.x) * gk.y) % u.m;
      let w = tw[t % (u.m / 2u)];
      v = cmul(v, select(w, -w, t >= u.m / 2u));
    }
    dst[base + (b0 + gk.x) * u.out_bstride + gk.y * u.out_stride] = v;
  }
}`;
}

const MULTIPLY = /* wgsl */ `${LINEAR_ID}
// Row c of fu and fk holds the spectra of two channels packed as x_2c + i x_2c+1. Split each
// by conjugate symmetry (X_2c = (Z_k + conj Z_-k) / 2, X_2c+1 = (Z_k - conj Z_-k) / 2i),
// multiply channel by channel, pack the two products as Y_2c + i Y_2c+1 (their inverse
// transforms are real) and write its conjugate, so the forward FFT inverts it.
fn split(zk: vec2<f32>, zr: vec2<f32>) -> array<vec2<f32>, 2> {
  let zr_conj = vec2<f32>(zr.x, -zr.y);
  let s = 0.5 * (zk + zr_conj);
  let d = zk - zr_conj;
  return array<vec2<f32>, 2>(s, 0.5 * vec2<f32>(d.y, -d.x));
}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= u.count) { return; }
  let base = (i / u.m) * u.m;
  let mirror = base + (u.m - i % u.m) % u.m;
  let su = split(fu[i], fu[mirror]);
  let sk = split(fk[i], fk[mirror]);
  let y0 = cmul(su[0], sk[0]);
  let y1 = cmul(su[1], sk[1]);
  let z = y0 + vec2<f32>(-y1.y, y1.x);
  dst[i] = vec2<f32>(z.x, -z.y);
}`;

const UNPACK = /* wgsl */ `${LINEAR_ID}
// The forward FFT of conj(Y) is M conj(y_2c + i y_2c+1): y_2c = Re / M, y_2c+1 = -Im / M.
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= u.count) { return; }
  let h = i / u.len;
  let r = src[(h / 2u) * u.m + i % u.len];
  y[i] = select(r.x, -r.y, h % 2u == 1u) * u.inv_m;
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
interface LocalPass {
  /** Transform length P and how many transforms each channel has. */
  readonly p: number;
  readonly batches: number;
  readonly inStride: number;
  readonly inBatchStride: number;
  readonly outStride: number;
  readonly outBatchStride: number;
  readonly twiddle: boolean;
}

async function localPass(
  backend: Backend,
  attrs: CausalConvAttrs,
  tw: Tensor,
  src: Tensor,
  dst: Tensor,
  pass: LocalPass,
): Promise<void> {
  const capacity = localFftCapacity(backend);
  const wg = Math.min(256, backend.limits.maxWorkgroupInvocations);
  // Transforms per workgroup: as many as fit workgroup memory (powers of two divide evenly).
  const g = Math.min(pass.batches, Math.max(1, capacity / pass.p));
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
      { name: 'h', type: 'u32', value: attrs.H },
      { name: 'm', type: 'u32', value: attrs.M },
      { name: 'p', type: 'u32', value: pass.p },
      { name: 'batches', type: 'u32', value: pass.batches },
      { name: 'g', type: 'u32', value: g },
      { name: 'in_stride', type: 'u32', value: pass.inStride },
      { name: 'in_bstride', type: 'u32', value: pass.inBatchStride },
      { name: 'out_stride', type: 'u32', value: pass.outStride },
      { name: 'out_bstride', type: 'u32', value: pass.outBatchStride },
      { name: 'twiddle', type: 'u32', value: pass.twiddle ? 1 : 0 },
    ],
    source: localSource(capacity, wg),
    dispatch: dispatch1d(attrs.H * (pass.batches / g), backend.limits.maxWorkgroupsPerDimension),
  });
}

/**
 * The FFT of every channel of `src` ([H, M] complex) into `dst`; `scratch` is clobbered.
 * - M fits workgroup memory: one pass, every stage in workgroup memory.
 * - M <= capacity^2: the four-step FFT in two such passes. With M = M1 M2 and n = n1 + M1 n2,
 *   k = k2 + M2 k1: (1) for each n1, an M2-point FFT over n2, times e^{-2 pi i n1 k2 / M},
 *   into scratch[n1 M2 + k2]; (2) for each k2, an M1-point FFT over n1 into dst[k2 + M2 k1].
 * - otherwise (or with fft: 'global'): one global pass per radix-2 stage.
 */
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
    const single = {
      p: M,
      batches: 1,
      inStride: 1,
      inBatchStride: M,
      outStride: 1,
      outBatchStride: M,
      twiddle: false,
    };
    await localPass(backend, attrs, tw, src, dst, single);
    return;
  }
  if (attrs.fft !== 'global' && M <= capacity * capacity) {
    const m2 = 2 ** Math.ceil(Math.log2(M) / 2);
    const m1 = M / m2;
    await localPass(backend, attrs, tw, src, scratch, {
      p: m2,
      batches: m1,
      inStride: m1,
      inBatchStride: 1,
      outStride: 1,
      outBatchStride: m2,
      twiddle: true,
    });
    await localPass(backend, attrs, tw, scratch, dst, {
      p: m1,
      batches: m2,
      inStride: m2,
      inBatchStride: 1,
      outStride: m2,
      outBatchStride: 1,
      twiddle: false,
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
  // Channels go in pairs: row c of each buffer holds channels 2c and 2c + 1.
  const rows = Math.ceil(H / 2);
  const pairAttrs = { ...attrs, H: rows };
  const tw = backend.tensor(twiddles(M), [Math.max(1, M / 2), 2]);
  const buffers = [0, 1, 2, 3].map(() => backend.empty([rows, M, 2]));
  const [a, b, c, d] = buffers as [Tensor, Tensor, Tensor, Tensor];
  const pack = (x: Tensor, out: Tensor) =>
    backend.run({
      kind: 'webgpu',
      name: 'ssm_fft_pack',
      cacheKey: '',
      inputs: [{ name: 'x', tensor: x }],
      outputs: [{ name: 'z_out', tensor: out, elementType: vec2 }],
      uniforms: [
        { name: 'count', type: 'u32', value: rows * M },
        { name: 'm', type: 'u32', value: M },
        { name: 'len', type: 'u32', value: L },
        { name: 'h', type: 'u32', value: H },
      ],
      source: PACK,
      dispatch: grid(backend, rows * M),
    });
  try {
    await pack(u, a);
    await pack(K, b);
    await fft(backend, pairAttrs, tw, a, c, d); // U pairs -> c
    await fft(backend, pairAttrs, tw, b, a, d); // K pairs -> a
    await backend.run({
      kind: 'webgpu',
      name: 'ssm_fft_multiply',
      cacheKey: '',
      inputs: [
        { name: 'fu', tensor: c, elementType: vec2 },
        { name: 'fk', tensor: a, elementType: vec2 },
      ],
      outputs: [{ name: 'dst', tensor: b, elementType: vec2 }],
      uniforms: [
        { name: 'count', type: 'u32', value: rows * M },
        { name: 'm', type: 'u32', value: M },
      ],
      source: MULTIPLY,
      dispatch: grid(backend, rows * M),
    });
    await fft(backend, pairAttrs, tw, b, c, d);
    await backend.run({
      kind: 'webgpu',
      name: 'ssm_fft_unpack',
      cacheKey: '',
      inputs: [{ name: 'src', tensor: c, elementType: vec2 }],
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
    for (const t of buffers) t.dispose();
  }
}

export const causalConvWebGpuKernel = singleOutputKernel<CausalConvAttrs>(
  CausalConv,
  'webgpu',
  convShape,
  writeConv,
);
