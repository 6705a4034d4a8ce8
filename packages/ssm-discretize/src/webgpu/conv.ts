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

/**
 * Points of one workgroup's FFTs (T): the batch of transforms a workgroup holds in workgroup
 * memory, T / 4 threads each running one radix-4 butterfly per stage. 0: the fused path is
 * unavailable and every FFT runs in global passes.
 */
export function localFftCapacity(backend: Backend): number {
  // One buffer of T + T / 4 vec2<f32> (rows padded by one against bank conflicts).
  const byMemory = Math.floor(backend.limits.maxWorkgroupStorageSize / 10);
  const fit = Math.min(4096, 4 * backend.limits.maxWorkgroupInvocations, byMemory);
  return fit >= 4 ? 2 ** Math.floor(Math.log2(fit)) : 0;
}

/**
 * The split M = M1 M2 of the fused path (index n = n1 + M1 n2 in time, k = k2 + M2 k1 in
 * frequency), or undefined when M is too long for two workgroup passes. M <= T: M2 = 1
 * (one transform of length M per workgroup). Else M1 <= T / 2, so that the passes over
 * columns hold at least two columns (a column and its mirror, see FUSED_COMMON); M2 at
 * least T / 16 so that the passes over n1 move 16 consecutive values per row.
 */
export function fusedFftSplit(M: number, capacity: number): { m1: number; m2: number } | undefined {
  if (capacity < 4) return undefined;
  if (M <= capacity) return { m1: M, m2: 1 };
  const m2 = Math.max((2 * M) / capacity, capacity / 16);
  if (m2 > capacity) return undefined;
  return { m1: M / m2, m2 };
}

/**
 * Shared by the fused passes. A workgroup holds u.g transforms of length u.p in `sh`, row r
 * at r * row_stride(): a row stride of p + 1 keeps a warp reading one element of each of
 * several rows off a single memory bank. Stage twiddles come from tws (the p-point table
 * at u.tw_off), the four-step twists from tw[t] = e^{-2 pi i t / M}, t < M. Every length is a
 * power of two, so index math is shifts and masks (u.lp = log2 p, u.lg = log2 g): integer
 * division by a runtime value costs tens of instructions on a GPU.
 */
function fusedCommon(capacity: number): string {
  return /* wgsl */ `
const NT: u32 = ${capacity / 4}u;
var<workgroup> sh: array<vec2<f32>, ${capacity + capacity / 4}>;

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
fn conj(a: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x, -a.y); }
fn row_stride() -> u32 { return select(u.p, u.p + 1u, u.p >= 4u); }
fn linear_wg(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }

// u.g Stockham FFTs of length u.p in sh (inverse: the sign of the exponent flipped, no 1 / p).
// Mixed radix: one radix-2 stage first when log2 p is odd (span 1: no twiddles), then radix-4
// stages of span ns = 1 or 2, then times 4: butterfly j (k = j mod ns) reads j + r p / 4,
// twists input r by e^{-+2 pi i r k / 4 ns} and writes (j div ns) 4 ns + k + q ns. Every value
// is read into registers before the barrier and written after it, so one buffer suffices.
fn fft_rows(lid: u32, inverse: bool) {
  let p = u.p;
  let lp = u.lp;
  let rs = row_stride();
  var ns = 1u;
  var lns = 0u;
  if ((lp & 1u) == 1u) {
    let half = p >> 1u;
    let count = u.g * half;
    var v: array<vec2<f32>, 4>;
    for (var q = 0u; q < 2u; q++) {
      let jj = lid + q * NT;
      if (jj < count) {
        let at = (jj >> (lp - 1u)) * rs + (jj & (half - 1u));
        v[2u * q] = sh[at];
        v[2u * q + 1u] = sh[at + half];
      }
    }
    workgroupBarrier();
    for (var q = 0u; q < 2u; q++) {
      let jj = lid + q * NT;
      if (jj < count) {
        let o = (jj >> (lp - 1u)) * rs + 2u * (jj & (half - 1u));
        sh[o] = v[2u * q] + v[2u * q + 1u];
        sh[o + 1u] = v[2u * q] - v[2u * q + 1u];
      }
    }
    workgroupBarrier();
    ns = 2u;
    lns = 1u;
  }
  let quarter = p >> 2u;
  let busy = lid < u.g * quarter;
  while (ns < p) {
    var a0 = vec2<f32>(0.0);
    var a1 = vec2<f32>(0.0);
    var a2 = vec2<f32>(0.0);
    var a3 = vec2<f32>(0.0);
    var o = 0u;
    if (busy) {
      let row = (lid >> (lp - 2u)) * rs;
      let j = lid & (quarter - 1u);
      let k = j & (ns - 1u);
      a0 = sh[row + j];
      a1 = sh[row + j + quarter];
      a2 = sh[row + j + 2u * quarter];
      a3 = sh[row + j + 3u * quarter];
      // e^{-2 pi i r k / 4 ns} = the P-point table at r k p / 4 ns.
      let step = k << (lp - 2u - lns);
      var w1 = tws[u.tw_off + step];
      var w2 = tws[u.tw_off + 2u * step];
      var w3 = tws[u.tw_off + 3u * step];
      if (inverse) { w1 = conj(w1); w2 = conj(w2); w3 = conj(w3); }
      a1 = cmul(a1, w1);
      a2 = cmul(a2, w2);
      a3 = cmul(a3, w3);
      o = row + ((j >> lns) << (lns + 2u)) + k;
    }
    workgroupBarrier();
    if (busy) {
      let b0 = a0 + a2;
      let b1 = a0 - a2;
      let b2 = a1 + a3;
      let b3 = a1 - a3;
      // Forward: y1 = b1 - i b3, y3 = b1 + i b3; the inverse swaps them.
      let mib3 = select(vec2<f32>(b3.y, -b3.x), vec2<f32>(-b3.y, b3.x), inverse);
      sh[o] = b0 + b2;
      sh[o + ns] = b1 + mib3;
      sh[o + 2u * ns] = b0 - b2;
      sh[o + 3u * ns] = b1 - mib3;
    }
    workgroupBarrier();
    ns = ns * 4u;
    lns = lns + 2u;
  }
}

// The columns k2 of a row pass: slots s < g / 2 take k2 = w g / 2 + s, the others their mirrors
// M2 - k2 (M2 / 2 in place of the mirror of 0), so every spectrum value's conjugate-symmetric
// partner Z_{M-k} lies in the same workgroup.
fn column(w: u32, s: u32) -> u32 {
  if (u.g == 1u) { return 0u; }
  let half = u.g / 2u;
  if (s < half) { return w * half + s; }
  let t = w * half + s - half;
  return select(u.m2 - t, u.m2 / 2u, t == 0u);
}
fn mirror_slot(w: u32, s: u32) -> u32 {
  if (u.g == 1u) { return 0u; }
  let half = u.g / 2u;
  let t = w * half + (s & (half - 1u));
  if (t == 0u) { return s; }
  return select(s - half, s + half, s < half);
}`;
}

/**
 * The fused passes' sources by (capacity, mode), built once: a call at L = 65536 runs 160
 * dispatches, and the pipeline cache only needs the key, not a freshly generated source.
 */
const fusedSources = new Map<string, string>();

function fusedSource(capacity: number, mode: FusedMode): string {
  const key = `${capacity}:${mode}`;
  let source = fusedSources.get(key);
  if (source === undefined) {
    source = buildFusedSource(capacity, mode);
    fusedSources.set(key, source);
  }
  return source;
}

type FusedMode = 'columns' | 'spectrum' | 'conv' | 'inverse';

function buildFusedSource(capacity: number, mode: FusedMode): string {
  const common = fusedCommon(capacity);
  if (mode === 'columns')
    return /* wgsl */ `${common}
// Forward pass 1: channels 2c and 2c + 1 of x as one complex row, zero-padded to M (read
// straight from x; n >= L is zero without a load). For u.g consecutive n1, the M2-point FFT
// over n2 of z[n1 + M1 n2], times e^{-2 pi i n1 k2 / M}, to dst[c M + k2 M1 + n1].
@compute @workgroup_size(NT)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let per_row = u.m1 / u.g;
  let linear = linear_wg(wid, nwg);
  if (linear >= u.rows * per_row) { return; }
  let c = linear / per_row;
  let n1_0 = (linear % per_row) * u.g;
  let rs = row_stride();
  let count = u.g * u.p;
  let xa = 2u * (u.row0 + c) * u.len;
  let has_b = 2u * (u.row0 + c) + 1u < u.h;
  for (var e = lid.x; e < count; e += NT) {
    let gi = (e & (u.g - 1u));
    let n = n1_0 + gi + u.m1 * ((e >> u.lg));
    var z = vec2<f32>(0.0);
    if (n < u.len) {
      z.x = x[xa + n];
      if (has_b) { z.y = x[xa + u.len + n]; }
    }
    sh[gi * rs + (e >> u.lg)] = z;
  }
  workgroupBarrier();
  fft_rows(lid.x, false);
  for (var e = lid.x; e < count; e += NT) {
    let gi = (e & (u.g - 1u));
    let k2 = (e >> u.lg);
    let n1 = n1_0 + gi;
    dst[c * u.m + k2 * u.m1 + n1] = cmul(sh[gi * rs + k2], tw[(n1 * k2) & (u.m - 1u)]);
  }
}`;
  const loadColumns = /* wgsl */ `
  let per_row = u.m2 / u.g;
  let linear = linear_wg(wid, nwg);
  if (linear >= u.rows * per_row) { return; }
  let base = (linear / per_row) * u.m;
  let w = linear % per_row;
  let rs = row_stride();
  let count = u.g * u.p;
  for (var e = lid.x; e < count; e += NT) {
    let s = (e >> u.lp);
    sh[s * rs + (e & (u.p - 1u))] = data[base + column(w, s) * u.m1 + (e & (u.p - 1u))];
  }
  workgroupBarrier();
  fft_rows(lid.x, false);`;
  if (mode === 'spectrum')
    return /* wgsl */ `${common}
// Forward pass 2, in place: for each column k2, the M1-point FFT over n1; the spectrum value
// Z_k, k = k2 + M2 k1, lands at c M + k2 M1 + k1.
@compute @workgroup_size(NT)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {${loadColumns}
  for (var e = lid.x; e < count; e += NT) {
    let s = (e >> u.lp);
    data[base + column(w, s) * u.m1 + (e & (u.p - 1u))] = sh[s * rs + (e & (u.p - 1u))];
  }
}`;
  if (mode === 'conv')
    return /* wgsl */ `${common}
// Row c packs two channels: X_2c = (Z_k + conj Z_{M-k}) / 2, X_2c+1 = (Z_k - conj Z_{M-k}) / 2i.
fn split(zk: vec2<f32>, zr: vec2<f32>) -> array<vec2<f32>, 2> {
  let d = zk - conj(zr);
  return array<vec2<f32>, 2>(0.5 * (zk + conj(zr)), 0.5 * vec2<f32>(d.y, -d.x));
}

// Forward pass 2 of u, the product with K's spectrum and inverse pass 1, in place: per column
// k2, the M1-point FFT over n1; Y = U Kf per channel, packed Y_2c + i Y_2c+1 (its inverse
// transform is y_2c + i y_2c+1, both real); the inverse M1-point FFT over k1, times
// e^{+2 pi i n1 k2 / M}, back to the same slots.
@compute @workgroup_size(NT)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {${loadColumns}
  var y: array<vec2<f32>, 4>;
  for (var q = 0u; q < 4u; q++) {
    let e = lid.x + q * NT;
    if (e < count) {
      let s = (e >> u.lp);
      let k1 = (e & (u.p - 1u));
      let k2 = column(w, s);
      let ms = mirror_slot(w, s);
      // The index of M - k: k2' = (M2 - k2) mod M2 and k1' = (M1 - k1 - [k2 > 0]) mod M1.
      let k1m = select(u.p - 1u - k1, (u.p - k1) & (u.p - 1u), k2 == 0u);
      let su = split(sh[s * rs + k1], sh[ms * rs + k1m]);
      let sk = split(kf[base + k2 * u.m1 + k1], kf[base + column(w, ms) * u.m1 + k1m]);
      let y1 = cmul(su[1], sk[1]);
      y[q] = cmul(su[0], sk[0]) + vec2<f32>(-y1.y, y1.x);
    }
  }
  workgroupBarrier();
  for (var q = 0u; q < 4u; q++) {
    let e = lid.x + q * NT;
    if (e < count) { sh[((e >> u.lp)) * rs + (e & (u.p - 1u))] = y[q]; }
  }
  workgroupBarrier();
  fft_rows(lid.x, true);
  for (var e = lid.x; e < count; e += NT) {
    let s = (e >> u.lp);
    let n1 = (e & (u.p - 1u));
    let k2 = column(w, s);
    data[base + k2 * u.m1 + n1] = cmul(sh[s * rs + n1], conj(tw[(n1 * k2) & (u.m - 1u)]));
  }
}`;
  return /* wgsl */ `${common}
// Inverse pass 2: for u.g consecutive n1, the inverse M2-point FFT over k2 of src[c M + k2 M1
// + n1]; z[n1 + M1 n2] / M = y_2c + i y_2c+1 for the first L positions.
@compute @workgroup_size(NT)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let per_row = u.m1 / u.g;
  let linear = linear_wg(wid, nwg);
  if (linear >= u.rows * per_row) { return; }
  let c = linear / per_row;
  let n1_0 = (linear % per_row) * u.g;
  let rs = row_stride();
  let count = u.g * u.p;
  for (var e = lid.x; e < count; e += NT) {
    let gi = (e & (u.g - 1u));
    sh[gi * rs + (e >> u.lg)] = src[c * u.m + ((e >> u.lg)) * u.m1 + n1_0 + gi];
  }
  workgroupBarrier();
  fft_rows(lid.x, true);
  let ya = 2u * (u.row0 + c) * u.len;
  let has_b = 2u * (u.row0 + c) + 1u < u.h;
  for (var e = lid.x; e < count; e += NT) {
    let gi = (e & (u.g - 1u));
    let n = n1_0 + gi + u.m1 * ((e >> u.lg));
    if (n < u.len) {
      let v = sh[gi * rs + (e >> u.lg)] * u.inv_m;
      y[ya + n] = v.x;
      if (has_b) { y[ya + u.len + n] = v.y; }
    }
  }
}`;
}

function grid(backend: Backend, threads: number): [number, number, number] {
  return dispatch1d(Math.ceil(threads / WG), backend.limits.maxWorkgroupsPerDimension);
}

const vec2 = 'vec2<f32>';

/** Host twiddle tables by M (computing one costs M sines and cosines; calls repeat M). */
const fullTables = new Map<number, Float32Array>();

/** e^{-2 pi i t / M} for every t < M, in float64 rounded once (the fused path's table). */
function fullTwiddles(M: number): Float32Array {
  let table = fullTables.get(M);
  if (!table) {
    table = new Float32Array(2 * M);
    for (let t = 0; t < M; t++) {
      const angle = (-2 * Math.PI * t) / M;
      table[2 * t] = Math.cos(angle);
      table[2 * t + 1] = Math.sin(angle);
    }
    if (fullTables.size >= 8) fullTables.delete(fullTables.keys().next().value!);
    fullTables.set(M, table);
  }
  return table;
}

/**
 * The stages' tables: e^{-2 pi i t / m1} for t < m1, then e^{-2 pi i t / m2} for t < m2 (small
 * enough to stay in the L1 cache, unlike the M-point table of the twists).
 */
function splitTwiddles(m1: number, m2: number): Float32Array {
  const out = new Float32Array(2 * (m1 + m2));
  for (const [offset, P] of [
    [0, m1],
    [m1, m2],
  ] as const) {
    for (let t = 0; t < P; t++) {
      const angle = (-2 * Math.PI * t) / P;
      out[2 * (offset + t)] = Math.cos(angle);
      out[2 * (offset + t) + 1] = Math.sin(angle);
    }
  }
  return out;
}

/**
 * Bytes of each of the fused path's two work buffers. Channel pairs go through the passes in
 * chunks of this size, so the work buffers stay small whatever H and L are: they come back
 * from the backend's pool on the next call instead of being allocated (and zero-filled) anew,
 * and a chunk's buffers fit the GPU's L2 cache between one pass and the next.
 */
export const FUSED_CHUNK_BYTES = 16 * 1024 * 1024;

/**
 * The fused path: five passes per chunk of channel pairs over two [chunk, M] complex buffers.
 * K: columns(K) -> kb, spectrum in place. u: columns(u) -> ub, conv (forward pass 2, product,
 * inverse pass 1) in place, inverse(ub) -> y. Each pass reads and writes global memory once.
 */
async function fusedConv(
  backend: Backend,
  u: Tensor,
  K: Tensor,
  attrs: CausalConvAttrs,
  split: { m1: number; m2: number },
  y: Tensor,
): Promise<void> {
  const { H, L, M } = attrs;
  const { m1, m2 } = split;
  const capacity = localFftCapacity(backend);
  const rows = Math.ceil(H / 2);
  const chunk = Math.min(rows, Math.max(1, Math.floor(FUSED_CHUNK_BYTES / (M * 8))));
  const g1 = Math.min(capacity / m2, m1);
  const g2 = Math.min(capacity / m1, m2);
  const tw = backend.tensor(fullTwiddles(M), [M, 2]);
  const tws = backend.tensor(splitTwiddles(m1, m2), [m1 + m2, 2]);
  const ub = backend.empty([chunk, M, 2]);
  const kb = backend.empty([chunk, M, 2]);
  const maxDim = backend.limits.maxWorkgroupsPerDimension;
  try {
    for (let row0 = 0; row0 < rows; row0 += chunk) {
      const n = Math.min(chunk, rows - row0);
      // The passes over columns (p = m2) use the m2-point table at offset m1 of tws.
      const uniforms = (p: number, g: number) => [
        { name: 'h', type: 'u32' as const, value: H },
        { name: 'row0', type: 'u32' as const, value: row0 },
        { name: 'rows', type: 'u32' as const, value: n },
        { name: 'len', type: 'u32' as const, value: L },
        { name: 'm', type: 'u32' as const, value: M },
        { name: 'm1', type: 'u32' as const, value: m1 },
        { name: 'm2', type: 'u32' as const, value: m2 },
        { name: 'p', type: 'u32' as const, value: p },
        { name: 'g', type: 'u32' as const, value: g },
        { name: 'lp', type: 'u32' as const, value: Math.log2(p) },
        { name: 'lg', type: 'u32' as const, value: Math.log2(g) },
        { name: 'tw_off', type: 'u32' as const, value: p === m1 ? 0 : m1 },
        { name: 'inv_m', type: 'f32' as const, value: 1 / M },
      ];
      const columns = (x: Tensor, dst: Tensor) =>
        backend.run({
          kind: 'webgpu',
          name: 'ssm_fft_columns',
          cacheKey: `t${capacity}`,
          inputs: [
            { name: 'x', tensor: x },
            { name: 'tw', tensor: tw, elementType: vec2 },
            { name: 'tws', tensor: tws, elementType: vec2 },
          ],
          outputs: [{ name: 'dst', tensor: dst, elementType: vec2 }],
          uniforms: uniforms(m2, g1),
          source: fusedSource(capacity, 'columns'),
          dispatch: dispatch1d(n * (m1 / g1), maxDim),
        });
      await columns(K, kb);
      await backend.run({
        kind: 'webgpu',
        name: 'ssm_fft_spectrum',
        cacheKey: `t${capacity}`,
        inputs: [{ name: 'tws', tensor: tws, elementType: vec2 }],
        outputs: [{ name: 'data', tensor: kb, elementType: vec2 }],
        uniforms: uniforms(m1, g2),
        source: fusedSource(capacity, 'spectrum'),
        dispatch: dispatch1d(n * (m2 / g2), maxDim),
      });
      await columns(u, ub);
      await backend.run({
        kind: 'webgpu',
        name: 'ssm_fft_conv',
        cacheKey: `t${capacity}`,
        inputs: [
          { name: 'tw', tensor: tw, elementType: vec2 },
          { name: 'tws', tensor: tws, elementType: vec2 },
          { name: 'kf', tensor: kb, elementType: vec2 },
        ],
        outputs: [{ name: 'data', tensor: ub, elementType: vec2 }],
        uniforms: uniforms(m1, g2),
        source: fusedSource(capacity, 'conv'),
        dispatch: dispatch1d(n * (m2 / g2), maxDim),
      });
      await backend.run({
        kind: 'webgpu',
        name: 'ssm_fft_inverse',
        cacheKey: `t${capacity}`,
        inputs: [
          { name: 'src', tensor: ub, elementType: vec2 },
          { name: 'tw', tensor: tw, elementType: vec2 },
          { name: 'tws', tensor: tws, elementType: vec2 },
        ],
        outputs: [{ name: 'y', tensor: y }],
        uniforms: uniforms(m2, g1),
        source: fusedSource(capacity, 'inverse'),
        dispatch: dispatch1d(n * (m1 / g1), maxDim),
      });
    }
  } finally {
    tw.dispose();
    tws.dispose();
    ub.dispose();
    kb.dispose();
  }
}

/** The FFT of every row of `src` ([rows, M] complex) into `dst` in global radix-2 passes; `scratch` is clobbered. */
async function globalFft(
  backend: Backend,
  attrs: CausalConvAttrs,
  tw: Tensor,
  src: Tensor,
  dst: Tensor,
  scratch: Tensor,
): Promise<void> {
  const { H, M } = attrs;
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
  const split = attrs.fft === 'global' ? undefined : fusedFftSplit(M, localFftCapacity(backend));
  if (split) {
    await fusedConv(backend, u, K, attrs, split, y);
    return;
  }
  // Global passes: channels in pairs, row c of each buffer holds channels 2c and 2c + 1.
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
    await globalFft(backend, pairAttrs, tw, a, c, d); // U pairs -> c
    await globalFft(backend, pairAttrs, tw, b, a, d); // K pairs -> a
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
    await globalFft(backend, pairAttrs, tw, b, c, d);
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
