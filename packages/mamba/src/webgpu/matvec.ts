/**
 * The matrix-vector machinery of the fused decode kernels, shared by Mamba's (./fused-decode)
 * and @longseq/jamba's: how a product is spread over workgroups (`matvecShape`, `rowGrid`),
 * the lanes/rows reduction in workgroup memory (`reduceWgsl`), the norm + matvec program
 * (in_proj with the conv step, or a final norm + LM head), the out_proj program, the x_proj
 * head of the x_proj + SSM kernels, and the small helpers around them (source caches,
 * uniforms).
 *
 * The products read each row as vec4s, the lanes of a row taking consecutive 16-byte chunks
 * (coalesced), and reduce their partial sums in workgroup memory. Decoding reads every weight
 * once per token, so these products are bandwidth-bound.
 */
import type { Backend, Tensor, WebGpuProgram } from '@longseq/backend';
import { WGSL_EXP_ACCURATE } from './ssm-step';

/**
 * How a matrix-vector product is spread: `lanes` threads per row, `rows` rows per workgroup
 * (workgroup size lanes * rows), and `vec` floats per load. With `vec` 4 a row is read as
 * vec4s, lane i taking vec4 i, i + lanes, ...: the lanes of a row read consecutive 16-byte
 * chunks, so each step of a row group is one fully used run of memory.
 *
 * Decoding reads every weight once per token with ~2 flops per 4 bytes, so the products are
 * bandwidth-bound: what matters is many wide loads in flight on every SM. On a GPU (subgroups
 * of 16 or more) rows get one or two subgroups of lanes (32 up to 256 vec4 per row, then 64)
 * and as many rows per workgroup (up to 256 threads) as keep at least TARGET_WORKGROUPS
 * workgroups, so small products (out_proj's 768 rows) still spread over every SM. On a CPU
 * pretending to be a GPU (SwiftShader, subgroups of 4), where every workgroup barrier is
 * expensive, rows get 8 lanes (3 reduction levels) in workgroups of 64.
 */
export interface MatvecShape {
  readonly lanes: number;
  readonly rows: number;
  readonly wg: number;
  readonly vec: 1 | 4;
}

/** Workgroups a product should at least have: two per SM of a large GPU (an H100 has 132). */
const TARGET_WORKGROUPS = 264;

/**
 * The shape of a product of `rows` rows of `width`. `lanesOverride` (a power of two, 8..256)
 * forces the lanes, so tests run the GPU shapes on any device; 0 picks by device.
 */
export function matvecShape(backend: Backend, width: number, rows: number, lanesOverride = 0): MatvecShape {
  const vec: 1 | 4 = width % 4 === 0 ? 4 : 1;
  const maxWg = Math.min(256, backend.limits.maxWorkgroupInvocations);
  if (lanesOverride === 0 && backend.limits.subgroupSize < 16) return { lanes: 8, rows: 8, wg: 64, vec };
  const lanes = lanesOverride > 0 ? lanesOverride : width / vec <= 256 ? 32 : 64;
  let perGroup = Math.max(1, Math.floor(maxWg / lanes));
  while (perGroup > 1 && Math.ceil(rows / perGroup) < TARGET_WORKGROUPS) perGroup >>= 1;
  return { lanes, rows: perGroup, wg: lanes * perGroup, vec };
}

/**
 * The shape of a kernel whose workgroup computes a few rows of `width` in full (the x_proj of
 * the x_proj + SSM kernels, Jamba's MoE router) and then works on its own: LANES per row, the
 * workgroup as wide as the device allows (one channel per thread afterwards).
 */
export function xProjSsmShape(backend: Backend, width: number, lanesOverride: number): MatvecShape {
  const vec: 1 | 4 = width % 4 === 0 ? 4 : 1;
  if (lanesOverride === 0 && backend.limits.subgroupSize < 16) return { lanes: 8, rows: 8, wg: 64, vec };
  const lanes = lanesOverride > 0 ? lanesOverride : 32;
  const wg = Math.max(lanes, Math.min(256, backend.limits.maxWorkgroupInvocations));
  return { lanes, rows: wg / lanes, wg, vec };
}

/** Workgroups for `rows` rows: x up to the per-dimension limit, the rest on z; batch on y. */
export function rowGrid(
  backend: Backend,
  rows: number,
  shape: MatvecShape,
  batch: number,
): [number, number, number] {
  const groups = Math.ceil(rows / shape.rows);
  const max = backend.limits.maxWorkgroupsPerDimension;
  const z = Math.ceil(groups / max);
  return [Math.ceil(groups / z), batch, z];
}

/** The WGSL type of one load, and the binding option that reads a buffer as it. */
const vecType = (vec: 1 | 4) => (vec === 4 ? 'vec4<f32>' : 'f32');
export const elementType = (vec: 1 | 4) => (vec === 4 ? { elementType: 'vec4<f32>' } : {});

/** A shape as a cache key. */
export const shapeKey = (s: MatvecShape) => `${s.lanes}x${s.rows}v${s.vec}`;

/**
 * Row-group reduction shared by the matrix-vector kernels, and the row this thread works on:
 * `reduce_lanes` sums `sums` values per thread at once (2: a product and the norm's sum of
 * squares; 4: two products, the sum of squares and a spare).
 */
export const reduceWgsl = ({ lanes, rows, wg, vec }: MatvecShape, sums: 2 | 4 = 2) => /* wgsl */ `
const WG: u32 = ${wg}u;
const LANES: u32 = ${lanes}u;
const ROWS: u32 = ${rows}u;
alias VT = ${vecType(vec)};
fn dotv(a: VT, b: VT) -> f32 { return ${vec === 4 ? 'dot(a, b)' : 'a * b'}; }
var<workgroup> partial: array<vec${sums}<f32>, ${wg}>;
// The first row of this workgroup: groups run along x, then z.
fn group_row(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return (wid.x + wid.z * nwg.x) * ROWS; }
// Sums the lanes of each row group into partial[group * LANES] (${sums === 2 ? 'two' : 'four'} sums at once). Every thread calls it.
fn reduce_lanes(li: u32, value: vec${sums}<f32>) {
  partial[li] = value;
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
    if (li % LANES < s) { partial[li] = partial[li] + partial[li + s]; }
    workgroupBarrier();
  }
}`;

/**
 * A cache of generated WGSL by variant, one per module (keys need only be unique within it):
 * a decode step records ~100 dispatches, and rebuilding each program's source string every
 * time is host time the GPU waits for.
 */
export function sourceCache(): (key: string, build: () => string) => string {
  const sources = new Map<string, string>();
  return (key, build) => {
    let source = sources.get(key);
    if (source === undefined) {
      source = build();
      sources.set(key, source);
    }
    return source;
  };
}

const cachedSource = sourceCache();

/** One uniform of a program. */
export type Uniform = { name: string; type: 'u32' | 'f32'; value: number };
export const u32 = (name: string, value: number): Uniform => ({ name, type: 'u32', value });

/** SiLU with the accurate exp (torch's). */
export const WGSL_SILU_ACC = /* wgsl */ `
fn silu_acc(x: f32) -> f32 { return x / (1.0 + exp_acc(-x)); }`;

/**
 * out[b, r] = W_r . (h[b] * inv_rms(h[b]) * norm_w) (+ bias_r), rows r < rows0 from w0 and
 * the next rows1 from w1 (in_proj's x and z halves; the LM head uses w0 only). With `conv`
 * (in_proj), row c < rows0 is channel c's x: the thread that finishes it also runs the conv
 * step on it (the channel's conv state is its alone: shifted in place) and writes
 * u = silu(conv) instead of x, so later kernels read u without recomputing the conv.
 */
const normMatvecWgsl = (
  shape: MatvecShape,
  conv: boolean,
) => /* wgsl */ `${WGSL_EXP_ACCURATE}${WGSL_SILU_ACC}${reduceWgsl(shape)}
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = wid.y;
  let base = b * u.nvec;
  let lane = li % LANES;
  let r = group_row(wid, nwg) + li / LANES;
  let rows = u.rows0 + u.rows1;
  // Each row group sums h^2 (for its own copy of the RMS) alongside its dot product.
  var acc = vec2<f32>(0.0, 0.0);
  if (r < u.rows0) {
    let row = r * u.nvec;
    for (var k = lane; k < u.nvec; k = k + LANES) {
      let h = hidden[base + k];
      acc = acc + vec2<f32>(dotv(w0[row + k], h * norm_w[k]), dotv(h, h));
    }
  } else if (r < rows) {
    let row = (r - u.rows0) * u.nvec;
    for (var k = lane; k < u.nvec; k = k + LANES) {
      let h = hidden[base + k];
      acc = acc + vec2<f32>(dotv(w1[row + k], h * norm_w[k]), dotv(h, h));
    }
  }
  reduce_lanes(li, acc);
  if (lane == 0u && r < rows) {
    let sums = partial[li];
    var v = sums.x / sqrt(sums.y / f32(u.width) + u.eps);
    ${
      conv
        ? 'if (u.has_bias == 1u) { v = v + params[u.off_in_b + r]; }'
        : 'if (u.has_bias == 1u) { v = v + select(bias1[r - u.rows0], bias0[r], r < u.rows0); }'
    }
    ${
      conv
        ? `if (r < u.rows0) {
      // The conv step of channel r: the K-1 past inputs, then this token's x.
      let past = u.conv_width - 1u;
      let st = (b * u.rows0 + r) * past;
      var a = 0.0;
      if (u.has_conv_bias == 1u) { a = params[u.off_conv_b + r]; }
      for (var j = 0u; j < past; j = j + 1u) {
        a = a + params[u.off_conv_w + r * u.conv_width + j] * conv_state[st + j];
      }
      a = a + params[u.off_conv_w + r * u.conv_width + past] * v;
      for (var j = 0u; j + 1u < past; j = j + 1u) { conv_state[st + j] = conv_state[st + j + 1u]; }
      if (past > 0u) { conv_state[st + past - 1u] = v; }
      v = silu_acc(a);
    }`
        : ''
    }
    out[b * rows + r] = v;
  }
}`;

/**
 * The conv step's extra bindings and sizes in `norm_in_proj_conv` (a layer's first kernel).
 * `uniforms` give the offsets into params: off_in_b, conv_width, has_conv_bias, off_conv_w,
 * off_conv_b.
 */
export interface ConvStep {
  readonly convState: Tensor;
  readonly params: Tensor;
  /** Whether params holds an in_proj bias (at off_in_b). */
  readonly hasBias: boolean;
  readonly uniforms: readonly Uniform[];
}

/**
 * `norm + matvec` program: out [B, rows0 + rows1]; with `conv`, the x half becomes
 * u = silu(conv(x)). Absent biases are stood in by the norm weight. `prefix` names the
 * program (`<prefix>_norm_matvec`, `<prefix>_norm_in_proj_conv`).
 */
export function normMatvecProgram(
  backend: Backend,
  hidden: Tensor,
  normW: Tensor,
  w0: Tensor,
  w1: Tensor,
  bias0: Tensor | undefined,
  bias1: Tensor | undefined,
  out: Tensor,
  sizes: { batch: number; width: number; rows0: number; rows1: number; eps: number; lanes: number },
  conv?: ConvStep,
  prefix = 'mamba',
): WebGpuProgram {
  const shape = matvecShape(backend, sizes.width, sizes.rows0 + sizes.rows1, sizes.lanes);
  const v = elementType(shape.vec);
  return {
    kind: 'webgpu',
    name: conv ? `${prefix}_norm_in_proj_conv` : `${prefix}_norm_matvec`,
    cacheKey: shapeKey(shape),
    inputs: [
      { name: 'hidden', tensor: hidden, ...v },
      { name: 'norm_w', tensor: normW, ...v },
      { name: 'w0', tensor: w0, ...v },
      { name: 'w1', tensor: w1, ...v },
      // The conv variant reads its bias from params (9 bindings would pass WebGPU's guaranteed 8).
      ...(conv
        ? [{ name: 'params', tensor: conv.params }]
        : [
            { name: 'bias0', tensor: bias0 ?? normW },
            { name: 'bias1', tensor: bias1 ?? normW },
          ]),
    ],
    outputs: [
      { name: 'out', tensor: out },
      ...(conv ? [{ name: 'conv_state', tensor: conv.convState }] : []),
    ],
    uniforms: [
      u32('width', sizes.width),
      u32('nvec', sizes.width / shape.vec),
      u32('rows0', sizes.rows0),
      u32('rows1', sizes.rows1),
      u32('has_bias', bias0 || conv?.hasBias ? 1 : 0),
      { name: 'eps', type: 'f32', value: sizes.eps },
      ...(conv?.uniforms ?? []),
    ],
    source: cachedSource(`norm${conv ? '_conv' : ''}:${shapeKey(shape)}`, () =>
      normMatvecWgsl(shape, conv !== undefined),
    ),
    dispatch: rowGrid(backend, sizes.rows0 + sizes.rows1, shape, sizes.batch),
  };
}

/**
 * Sizes of one fused decode layer (Mamba's and Jamba's): batch B, model width M, channels D,
 * states N, dt rank R, conv width K, and which biases the layer has.
 */
export interface DecodeLayerSizes {
  readonly batch: number;
  readonly dModel: number;
  readonly dInner: number;
  readonly dState: number;
  readonly dtRank: number;
  readonly dConv: number;
  readonly eps: number;
  readonly hasInBias: boolean;
  readonly hasConvBias: boolean;
  readonly hasOutBias: boolean;
  /** Threads per matrix row (a power of two, 8..256); 0 lets `matvecShape` choose for the device. */
  readonly lanes: number;
}

/** Attributes of a final norm + LM head: logits [batch, rows] from hidden [batch, width]. */
export interface NormMatvecAttrs {
  readonly batch: number;
  readonly width: number;
  readonly rows: number;
  readonly eps: number;
  readonly lanes: number;
}

/** Offsets into a layer's packed params that the shared programs read. */
export interface DecodeParamsOffsets {
  readonly convW: number;
  readonly convB: number;
  readonly dtB: number;
  readonly dSkip: number;
  readonly a: number;
  readonly inB: number;
}

/**
 * A layer's first kernel: xz [B, 2D] = in_proj(rmsNorm(h)), the x half through the conv step
 * (conv state shifted in place): u = silu(conv(x)). The in_proj and conv biases come from
 * params. Named `<prefix>_norm_in_proj_conv`.
 */
export function inProjConvProgram(
  backend: Backend,
  t: {
    hidden: Tensor;
    norm: Tensor;
    inX: Tensor;
    inZ: Tensor;
    xz: Tensor;
    convState: Tensor;
    params: Tensor;
  },
  a: DecodeLayerSizes,
  off: DecodeParamsOffsets,
  prefix = 'mamba',
): WebGpuProgram {
  return normMatvecProgram(
    backend,
    t.hidden,
    t.norm,
    t.inX,
    t.inZ,
    undefined,
    undefined,
    t.xz,
    { batch: a.batch, width: a.dModel, rows0: a.dInner, rows1: a.dInner, eps: a.eps, lanes: a.lanes },
    {
      convState: t.convState,
      params: t.params,
      hasBias: a.hasInBias,
      uniforms: [
        u32('off_in_b', off.inB),
        u32('conv_width', a.dConv),
        u32('has_conv_bias', a.hasConvBias ? 1 : 0),
        u32('off_conv_w', off.convW),
        u32('off_conv_b', off.convB),
      ],
    },
    prefix,
  );
}

/**
 * Runs the final norm and LM head of a decode step: returns logits [B, rows] = W .
 * rmsNorm(h) from inputs hidden [B, width], norm [width], W [rows, width].
 */
export async function runNormMatvec(
  backend: Backend,
  inputs: readonly Tensor[],
  a: NormMatvecAttrs,
  prefix = 'mamba',
): Promise<Tensor> {
  const [hidden, norm, w] = inputs as Tensor[];
  const out = backend.empty([a.batch, a.rows]);
  try {
    await backend.run(
      normMatvecProgram(
        backend,
        hidden!,
        norm!,
        w!,
        w!,
        undefined,
        undefined,
        out,
        { batch: a.batch, width: a.width, rows0: a.rows, rows1: 0, eps: a.eps, lanes: a.lanes },
        undefined,
        prefix,
      ),
    );
  } catch (err) {
    out.dispose();
    throw err;
  }
  return out;
}

/**
 * The head of an x_proj + SSM kernel (after the caller's math functions): every workgroup
 * computes all of xdbl[b] = x_proj . u[b] (dt_low, B, C: `xRows` = R + 2N rows, few, and every
 * channel needs them) into workgroup memory `xd`, ROWS rows at a time with LANES lanes each;
 * then each thread takes channel `c` (returning past the last). The caller appends the
 * per-channel step and closes `main`. Bindings: xz (u then z per sequence), w_dt, w_b, w_c;
 * uniforms nvec, dt_rank, states, channels.
 */
export const xProjWgsl = (shape: MatvecShape, xRows: number) => /* wgsl */ `${reduceWgsl(shape)}
const XROWS: u32 = ${xRows}u;
var<workgroup> xd: array<f32, ${xRows}>;
fn xz_at(i: u32) -> f32 { return ${shape.vec === 4 ? 'xz[i >> 2u][i & 3u]' : 'xz[i]'}; }
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y;
  let lane = li % LANES;
  let group = li / LANES;
  // u of sequence b: the first half of its xz row (2 * nvec loads wide).
  let ub = b * 2u * u.nvec;
  for (var r0 = 0u; r0 < XROWS; r0 = r0 + ROWS) {
    let r = r0 + group;
    var acc = 0.0;
    if (r < u.dt_rank) {
      for (var k = lane; k < u.nvec; k = k + LANES) { acc = acc + dotv(w_dt[r * u.nvec + k], xz[ub + k]); }
    } else if (r < u.dt_rank + u.states) {
      let row = (r - u.dt_rank) * u.nvec;
      for (var k = lane; k < u.nvec; k = k + LANES) { acc = acc + dotv(w_b[row + k], xz[ub + k]); }
    } else if (r < XROWS) {
      let row = (r - u.dt_rank - u.states) * u.nvec;
      for (var k = lane; k < u.nvec; k = k + LANES) { acc = acc + dotv(w_c[row + k], xz[ub + k]); }
    }
    reduce_lanes(li, vec2<f32>(acc, 0.0));
    if (lane == 0u && r < XROWS) { xd[r] = partial[li].x; }
    workgroupBarrier();
  }
  let c = wid.x * WG + li;
  if (c >= u.channels) { return; }`;

/**
 * An x_proj + SSM program (`name`): ssm_state (in place) and y [B, D] from xz [B, 2D], x_proj
 * (w_dt [R, D], w_b [N, D], w_c [N, D]), dt_proj [D, R] and params, one channel per thread.
 * `source` builds the kernel (on `xProjWgsl`) for a shape and R + 2N x_proj rows; `uniforms`
 * are its own beyond nvec, channels, states, dt_rank, off_dt_b, off_d and off_a.
 */
export function xProjSsmProgram(
  backend: Backend,
  name: string,
  t: {
    xz: Tensor;
    wDt: Tensor;
    wB: Tensor;
    wC: Tensor;
    dtProj: Tensor;
    params: Tensor;
    ssmState: Tensor;
    y: Tensor;
  },
  a: DecodeLayerSizes,
  off: DecodeParamsOffsets,
  source: (shape: MatvecShape, xRows: number) => string,
  uniforms: readonly Uniform[] = [],
): WebGpuProgram {
  const { batch: B, dInner: D, dState: N, dtRank: R } = a;
  const shape = xProjSsmShape(backend, D, a.lanes);
  const v = elementType(shape.vec);
  const key = `${shapeKey(shape)}r${R + 2 * N}`;
  return {
    kind: 'webgpu',
    name,
    cacheKey: key,
    inputs: [
      { name: 'xz', tensor: t.xz, ...v },
      { name: 'w_dt', tensor: t.wDt, ...v },
      { name: 'w_b', tensor: t.wB, ...v },
      { name: 'w_c', tensor: t.wC, ...v },
      { name: 'dt_proj', tensor: t.dtProj },
      { name: 'params', tensor: t.params },
    ],
    outputs: [
      { name: 'ssm_state', tensor: t.ssmState },
      { name: 'y', tensor: t.y },
    ],
    uniforms: [
      u32('nvec', D / shape.vec),
      u32('channels', D),
      u32('states', N),
      u32('dt_rank', R),
      u32('off_dt_b', off.dtB),
      u32('off_d', off.dSkip),
      u32('off_a', off.a),
      ...uniforms,
    ],
    source: cachedSource(`${name}:${key}`, () => source(shape, R + 2 * N)),
    dispatch: [Math.ceil(D / shape.wg), B, 1],
  };
}

/** h[b, m] += out_proj_m . y[b] (+ bias_m), in place. */
const outProjWgsl = (shape: MatvecShape) => /* wgsl */ `${reduceWgsl(shape)}
@compute @workgroup_size(${shape.wg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = wid.y;
  let lane = li % LANES;
  let m = group_row(wid, nwg) + li / LANES;
  var acc = 0.0;
  if (m < u.width) {
    for (var k = lane; k < u.nvec; k = k + LANES) { acc = acc + dotv(w_out[m * u.nvec + k], y[b * u.nvec + k]); }
  }
  reduce_lanes(li, vec2<f32>(acc, 0.0));
  if (lane == 0u && m < u.width) {
    var v = partial[li].x;
    if (u.has_bias == 1u) { v = v + bias[m]; }
    hidden[b * u.width + m] = hidden[b * u.width + m] + v;
  }
}`;

/**
 * `out_proj` program: hidden [B, M] += out_proj [M, D] . y [B, D] (+ bias [M] with
 * `hasBias`; without, `bias` is any stand-in tensor), in place. Named `<prefix>_out_proj`.
 */
export function outProjProgram(
  backend: Backend,
  t: { y: Tensor; wOut: Tensor; bias: Tensor; hidden: Tensor },
  sizes: { batch: number; width: number; inner: number; lanes: number; hasBias: boolean },
  prefix = 'mamba',
): WebGpuProgram {
  const shape = matvecShape(backend, sizes.inner, sizes.width, sizes.lanes);
  const v = elementType(shape.vec);
  return {
    kind: 'webgpu',
    name: `${prefix}_out_proj`,
    cacheKey: shapeKey(shape),
    inputs: [
      { name: 'y', tensor: t.y, ...v },
      { name: 'w_out', tensor: t.wOut, ...v },
      { name: 'bias', tensor: t.bias },
    ],
    outputs: [{ name: 'hidden', tensor: t.hidden }],
    uniforms: [
      u32('width', sizes.width),
      u32('nvec', sizes.inner / shape.vec),
      u32('has_bias', sizes.hasBias ? 1 : 0),
    ],
    source: cachedSource(`out_proj:${shapeKey(shape)}`, () => outProjWgsl(shape)),
    dispatch: rowGrid(backend, sizes.width, shape, sizes.batch),
  };
}

/**
 * Runs one fused decode layer in three dispatches: norm_in_proj_conv, the model's x_proj +
 * SSM kernel (`xProjSsm`: its program name, source and extra uniforms), out_proj. Programs
 * are named `<prefix>_...`. Inputs (in order): hidden [B, M] (updated in place), norm [M],
 * in_proj x [D, M], in_proj z [D, M], conv state [B, D, K-1] (in place), params (packed),
 * x_proj dt [R, D], x_proj B [N, D], x_proj C [N, D], dt_proj [D, R], ssm state [B, D, N]
 * (in place), out_proj [M, D], out bias [M] (read with `hasOutBias` only). The results are
 * the updated hidden and states.
 */
export async function runDecodeLayer(
  backend: Backend,
  inputs: readonly Tensor[],
  a: DecodeLayerSizes,
  off: DecodeParamsOffsets,
  prefix: string,
  xProjSsm: {
    readonly name: string;
    readonly source: (shape: MatvecShape, xRows: number) => string;
    readonly uniforms?: readonly Uniform[];
  },
): Promise<void> {
  const [hidden, norm, inX, inZ, convState, params, wDt, wB, wC, dtProj, ssmState, outProj, outBias] =
    inputs as Tensor[];
  const { batch: B, dModel: M, dInner: D } = a;
  const xz = backend.empty([B, 2 * D]);
  const y = backend.empty([B, D]);
  try {
    // 1. xz = in_proj(rmsNorm(h)), the x half through the conv step: u = silu(conv(x)).
    await backend.run(
      inProjConvProgram(
        backend,
        {
          hidden: hidden!,
          norm: norm!,
          inX: inX!,
          inZ: inZ!,
          xz,
          convState: convState!,
          params: params!,
        },
        a,
        off,
        prefix,
      ),
    );
    // 2. xdbl = x_proj(u) (per workgroup), then dt, the SSM state update and the gated y.
    await backend.run(
      xProjSsmProgram(
        backend,
        xProjSsm.name,
        { xz, wDt: wDt!, wB: wB!, wC: wC!, dtProj: dtProj!, params: params!, ssmState: ssmState!, y },
        a,
        off,
        xProjSsm.source,
        xProjSsm.uniforms,
      ),
    );
    // 3. h += out_proj(y).
    await backend.run(
      outProjProgram(
        backend,
        { y, wOut: outProj!, bias: a.hasOutBias ? outBias! : norm!, hidden: hidden! },
        { batch: B, width: M, inner: D, lanes: a.lanes, hasBias: a.hasOutBias },
        prefix,
      ),
    );
  } finally {
    // Released now, reused by the next layer: the pool hands the same buffers back.
    xz.dispose();
    y.dispose();
  }
}
