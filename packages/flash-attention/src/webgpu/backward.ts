/**
 * WebGPU programs for the FlashAttention backward.
 *
 * Backward (FlashAttention-2's recomputation from the saved logsumexp, no stored P):
 *   pass 1: D_i = dO_i . O_i per query row,
 *   pass 2: one workgroup per key block (K, V in workgroup memory, dK, dV in registers)
 *           streams the query blocks of every head of its group that see the keys
 *           (Q, dO, lse, D), recomputes P and dS, and accumulates dV += P^T dO, dK += dS^T Q,
 *   pass 3: one workgroup per query block (Q, dO in workgroup memory, dQ in registers)
 *           streams its visible key blocks and accumulates dQ += dS K.
 * WGSL has no float atomics, so dQ has its own pass instead of atomic adds.
 *
 * Tiles (backwardTile): blocks of BQ query rows by BK keys, chosen per head-dim capacity
 * from the device's workgroup memory and invocations (the first of DKDV_BLOCKS / DQ_BLOCKS
 * that fits). At d = 64 the H100 (48 KiB) takes 32 x 32 blocks in both passes with 128
 * threads, each a 4 x 2 micro-tile of S = Q K^T and dP = dO V^T in registers (5.3 FMAs per
 * workgroup-memory read, 3.2 before), P and dS through workgroup memory as vec4s along the
 * owned rows, and each thread accumulating 4 owned rows x 1 vec4 column of dK, dV or dQ
 * (8 FMAs per read). The streamed block is loaded into registers while the previous one is
 * computed; with d % 4 = 0 the loads are vec4s. Three barriers per block. On the H100 at
 * bh 16, N 4096, d 64 this took the backward from 24.6 to 15.4 ms (causal 13.0 to 7.93);
 * 4 x 4 micro-tiles (64 threads: 31.3 ms), 2 x 2 (256 threads: 16.3 ms), 16 x 32 blocks
 * (17.5 ms), a 64-row dQ block (15.5 ms) and a fully unrolled score epilogue (15.9 ms; it
 * also compiles for minutes on SwiftShader) were slower. SwiftShader (32 KiB) takes the
 * 32 x 32 blocks up to d = 32 and 16 x 32 / 32 x 16 at d = 64.
 *
 * Special values follow the forward (attention.ts).
 */
import { type Backend, DeviceLimitError, type Tensor, type WgslBinding } from '@longseq/backend';
import {
  type FlashAttentionAttrs,
  type FlashAttentionGradOutputs,
  flashAttentionBackwardKernel,
} from '../contract';
import { SPAN_FIELDS } from '../layout';
import {
  capacity,
  commonUniforms,
  commonWgsl,
  d4Decl,
  d4Init,
  d4Key,
  pairs,
  ROW_WG,
  spanBinding,
  unroll,
} from './common';

// ---------------------------------------------------------------------------------------
// Backward

/** Binding numbers read4 takes: 0 q, 1 k, 2 v, 3 o_in, 4 d_out (only those a pass binds). */
const READ4_NAMES = ['q', 'k', 'v', 'o_in', 'd_out'] as const;

function backwardCommon(
  d4: number,
  bound: readonly (typeof READ4_NAMES)[number][],
  cap = capacity(d4),
): string {
  const cases = bound
    .map((name) => `        case ${READ4_NAMES.indexOf(name)}u: { r[comp] = ${name}[at]; }`)
    .join('\n');
  return /* wgsl */ `
${commonWgsl()}
${d4Decl(d4, cap)}
fn read4(which: u32, base: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var comp = 0u; comp < 4u; comp++) {
    let e = c * 4u + comp;
    if (e < u.d) {
      let at = base + e;
      switch which {
${cases}
        default: {}
      }
    }
  }
  return r;
}
// Non-finite components as 0, for the streamed tiles that accumulate (Q in the dK/dV pass,
// K in the dQ pass): a masked pair's zero weight times a NaN elsewhere in the tile would
// poison rows and keys that never see it. Pairs that do see a non-finite Q or K belong to a
// row whose lse is NaN, and grad_pair makes those NaN itself. (dO is not cleaned: a NaN
// there can still reach dv of keys its row does not see, in that column.)
fn finite_or_zero(x: vec4<f32>) -> vec4<f32> {
  let special = (bitcast<vec4<u32>>(x) & vec4<u32>(0x7f800000u)) == vec4<u32>(0x7f800000u);
  return select(x, vec4<f32>(0.0), special);
}
// dS / (P (dP - D)) for one score: softcap's tanh derivative, times scale.
fn grad_factor(dot: f32) -> f32 {
  if (u.softcap > 0.0) {
    let t = tanh_stable(dot * u.scale / u.softcap);
    return (1.0 - t * t) * u.scale;
  }
  return u.scale;
}
`;
}

function backwardDotSource(d4: number): string {
  return /* wgsl */ `
${backwardCommon(d4, ['o_in', 'd_out'])}
// D_i = dO_i . O_i, stored like the logsumexp.
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  ${d4Init(d4, capacity(d4))}
  let seq = wid.z;
  let head = wid.y;
  let i = gid.x;
  if (i >= spans[seq * ${SPAN_FIELDS}u + 1u]) { return; }
  let row = spans[seq * ${SPAN_FIELDS}u] + head * u.q_head_stride + i * u.q_token_stride;
  var acc = 0.0;
  for (var c = 0u; c < D4; c++) { acc += dot(read4(3u, row, c), read4(4u, row, c)); }
  let at = spans[seq * ${SPAN_FIELDS}u + 4u] + head * u.lse_head_stride + i;
  stats[at] = vec2<f32>(lse[at], acc);
}
`;
}

/** A backward block: BQ query rows by BK keys, each thread a TR x TC micro-tile of its scores. */
interface BackwardBlock {
  readonly bq: number;
  readonly bk: number;
  readonly tr: number;
  readonly tc: number;
}

/**
 * Blocks tried in order for the dK/dV pass (BK keys owned, query blocks of BQ rows streamed)
 * and the dQ pass (BQ query rows owned, key blocks of BK streamed): the first that fits the
 * device's workgroup memory and invocations for the head-dim capacity wins. On the H100
 * (48 KiB) d = 64 takes 32 x 32 blocks; SwiftShader (32 KiB) takes them for d <= 32 and
 * the halved ones at d = 64.
 */
const DKDV_BLOCKS: readonly BackwardBlock[] = [
  { bq: 32, bk: 64, tr: 4, tc: 4 },
  { bq: 32, bk: 32, tr: 4, tc: 2 },
  { bq: 16, bk: 32, tr: 2, tc: 2 },
  { bq: 16, bk: 16, tr: 2, tc: 1 },
  { bq: 8, bk: 16, tr: 1, tc: 1 },
  { bq: 8, bk: 8, tr: 1, tc: 1 },
  { bq: 4, bk: 8, tr: 1, tc: 1 },
  { bq: 4, bk: 4, tr: 1, tc: 1 },
  { bq: 2, bk: 2, tr: 1, tc: 1 },
  { bq: 1, bk: 1, tr: 1, tc: 1 },
];
const DQ_BLOCKS: readonly BackwardBlock[] = [
  { bq: 64, bk: 32, tr: 4, tc: 4 },
  { bq: 32, bk: 32, tr: 4, tc: 2 },
  { bq: 32, bk: 16, tr: 2, tc: 2 },
  { bq: 16, bk: 16, tr: 1, tc: 2 },
  { bq: 16, bk: 8, tr: 1, tc: 1 },
  { bq: 8, bk: 8, tr: 1, tc: 1 },
  { bq: 8, bk: 4, tr: 1, tc: 1 },
  { bq: 4, bk: 4, tr: 1, tc: 1 },
  { bq: 2, bk: 2, tr: 1, tc: 1 },
  { bq: 1, bk: 1, tr: 1, tc: 1 },
];

/**
 * Backward tile shape (FlashAttention-2's loop order). Scores are [query rows, keys]; thread
 * (ty, tx) = (lid / NTX, lid % NTX) computes rows ty + a * NTY (a < TR) by keys tx + b * NTX
 * (b < TC). The accumulators (dK, dV or dQ: own x D4CAP vec4s) are dealt as thread
 * (rt, ct) = (lid / NC, lid % NC) owning rows rt * KA + k (k < KA) and vec4 columns
 * ct + j * NC (j < CA).
 */
interface BackwardTile extends BackwardBlock {
  readonly pass: 'dkdv' | 'dq';
  /** vec4s per head row the tiles hold (a power of two) and the padded row stride. */
  readonly d4cap: number;
  readonly stride: number;
  readonly ntx: number;
  readonly nty: number;
  readonly wg: number;
  /** Rows whose gradients the workgroup accumulates (keys for dK/dV, queries for dQ), and rows streamed. */
  readonly own: number;
  readonly stream: number;
  readonly ka: number;
  readonly nc: number;
  readonly ca: number;
  /** Row stride (vec4s along the owned rows, odd) of P and dS in workgroup memory. */
  readonly ps: number;
  readonly bytes: number;
}

/**
 * Head-row capacity of the tiled backward passes: at least 8 vec4s, so head dims up to 32
 * share one program (SwiftShader takes seconds to compile each, and tests run many dims).
 */
function backwardCap(d4: number): number {
  return Math.max(8, capacity(d4));
}

function backwardShape(b: BackwardBlock, d4cap: number, pass: 'dkdv' | 'dq'): BackwardTile | undefined {
  const own = pass === 'dkdv' ? b.bk : b.bq;
  const stream = pass === 'dkdv' ? b.bq : b.bk;
  const ntx = b.bk / b.tc;
  const nty = b.bq / b.tr;
  const wg = ntx * nty;
  if (!Number.isInteger(ntx) || !Number.isInteger(nty) || (own * d4cap) % wg !== 0) return undefined;
  const acc = (own * d4cap) / wg;
  const ka = Math.min(4, own, acc);
  const nr = own / ka;
  if (!Number.isInteger(nr) || wg % nr !== 0) return undefined;
  const nc = wg / nr;
  if (d4cap % nc !== 0) return undefined;
  const ca = d4cap / nc;
  const stride = d4cap + 1;
  const own4 = Math.ceil(own / 4);
  const ps = own4 % 2 === 0 ? own4 + 1 : own4;
  // Q, dO, K, V tiles; P and dS (dQ needs only dS) as vec4s along the owned rows; lse and D.
  const bytes =
    16 * stride * 2 * (b.bq + b.bk) + 16 * stream * ps * (pass === 'dkdv' ? 2 : 1) + 8 * b.bq + 64;
  return { ...b, pass, d4cap, stride, ntx, nty, wg, own, stream, ka, nc, ca, ps, bytes };
}

function backwardTile(d4: number, pass: 'dkdv' | 'dq', maxBytes: number, maxThreads: number): BackwardTile {
  const d4cap = backwardCap(d4);
  const shapes = (pass === 'dkdv' ? DKDV_BLOCKS : DQ_BLOCKS)
    .map((b) => backwardShape(b, d4cap, pass))
    .filter((t): t is BackwardTile => t !== undefined);
  return shapes.find((t) => t.bytes <= maxBytes && t.wg <= maxThreads) ?? shapes.at(-1)!;
}

/** WGSL shared by the two tiled backward passes: row loaders, tiles and the score/gradient step. */
function backwardTiledCommon(d4: number, t: BackwardTile, vec4In: boolean): string {
  const { tr, tc } = t;
  const loader = (fn: string, name: string, which: number) =>
    vec4In
      ? `fn ${fn}(row: u32, c: u32) -> vec4<f32> { return ${name}[(row >> 2u) + c]; }`
      : `fn ${fn}(row: u32, c: u32) -> vec4<f32> { return read4(${which}u, row, c); }`;
  return /* wgsl */ `
${backwardCommon(d4, vec4In ? [] : ['q', 'k', 'v', 'd_out'], t.d4cap)}
const WG: u32 = ${t.wg}u;
const NTX: u32 = ${t.ntx}u;
const NTY: u32 = ${t.nty}u;
const NC: u32 = ${t.nc}u;
const KA: u32 = ${t.ka}u;
const D4CAP: u32 = ${t.d4cap}u;
const BQ: u32 = ${t.bq}u;
const BK: u32 = ${t.bk}u;
const LOG2E: f32 = 1.4426950408889634;
// Query-side tiles (Q, dO) and key-side tiles (K, V), rows padded to an odd vec4 stride.
var<workgroup> q_s: array<array<vec4<f32>, ${t.stride}>, BQ>;
var<workgroup> do_s: array<array<vec4<f32>, ${t.stride}>, BQ>;
var<workgroup> k_s: array<array<vec4<f32>, ${t.stride}>, BK>;
var<workgroup> v_s: array<array<vec4<f32>, ${t.stride}>, BK>;
var<workgroup> lse_s: array<f32, BQ>;
var<workgroup> delta_s: array<f32, BQ>;
var<workgroup> span_shared: array<u32, ${SPAN_FIELDS}>;

// Vec4 column c (< D4) of the head row starting at element row.
${loader('load_q', 'q', 0)}
${loader('load_k', 'k', 1)}
${loader('load_v', 'v', 2)}
${loader('load_do', 'd_out', 4)}

// P and dS of one (query row, key) pair from its score and dP: (0, 0) outside the row's keys.
fn grad_pair(dot: f32, dp: f32, row_lse: f32, row_delta: f32, row_nan: f32, head: u32, pos: i32, key: i32, row_ok: bool, k_len: u32) -> vec2<f32> {
  if (!(row_ok && key < i32(k_len) && key >= pos - u.window_left && key <= pos + u.window_right)) {
    return vec2<f32>(0.0);
  }
  // row_nan is NaN for a poisoned row (lse NaN or +inf: a non-finite Q row or a visible
  // non-finite K row), else 0: its gradients are NaN, as the reference's, even where exp2 of
  // NaN is not NaN (SwiftShader's is finite).
  let p = exp2((finish_score(dot, head, pos, key) - row_lse) * LOG2E) + row_nan;
  return vec2<f32>(p, p * (dp - row_delta) * grad_factor(dot));
}

// P and dS of the block (query rows i0.., keys j0..), recomputed from lse: the thread's
// TR x TC micro-tile, S = Q K^T and dP = dO V^T in registers, then store_grad per pair.
fn scores(ty: u32, tx: u32, head: u32, i0: u32, q_len: u32, j0: u32, k_len: u32, offset: i32) {
  // Accumulated at constant indices (registers); the epilogue is a loop, so SwiftShader
  // compiles one copy of the score function rather than TR x TC (it compiles the unrolled
  // form for minutes).
  var s: array<f32, ${tr * tc}>;
  var dp: array<f32, ${tr * tc}>;
  ${unroll(tr * tc, (i) => `s[${i}] = 0.0;\n  dp[${i}] = 0.0;`, '\n  ')}
  for (var e = 0u; e < D4; e++) {
    ${unroll(tc, (b) => `let kv_${b} = k_s[tx + ${b * t.ntx}u][e];\n    let vv_${b} = v_s[tx + ${b * t.ntx}u][e];`, '\n    ')}
    ${unroll(tr, (a) => `let qv_${a} = q_s[ty + ${a * t.nty}u][e];\n    let gv_${a} = do_s[ty + ${a * t.nty}u][e];`, '\n    ')}
    ${pairs(
      tr,
      tc,
      (a, b) =>
        `s[${a * tc + b}] = fma(qv_${a}.w, kv_${b}.w, fma(qv_${a}.z, kv_${b}.z, fma(qv_${a}.y, kv_${b}.y, fma(qv_${a}.x, kv_${b}.x, s[${a * tc + b}]))));\n    ` +
        `dp[${a * tc + b}] = fma(gv_${a}.w, vv_${b}.w, fma(gv_${a}.z, vv_${b}.z, fma(gv_${a}.y, vv_${b}.y, fma(gv_${a}.x, vv_${b}.x, dp[${a * tc + b}]))));`,
      '\n    ',
    )}
  }
  for (var a = 0u; a < ${tr}u; a++) {
    let r = ty + a * NTY;
    let pos = i32(i0 + r) + offset;
    let row_lse = lse_s[r];
    let row_delta = delta_s[r];
    let row_ok = i0 + r < q_len && !is_neg_inf(row_lse);
    let row_nan = select(0.0, nan(), poisons(row_lse));
    for (var b = 0u; b < ${tc}u; b++) {
      let c = tx + b * NTX;
      let g = grad_pair(s[a * ${tc}u + b], dp[a * ${tc}u + b], row_lse, row_delta, row_nan, head, pos, i32(j0 + c), row_ok, k_len);
      store_grad(r, c, g.x, g.y);
    }
  }
}
`;
}

/** The owned-row expressions of accumulator row k: a vec4 read when KA is 4 (rows 4 * rt..). */
function ownedRead(t: BackwardTile, tile: string, at: string, k: number): string {
  return t.ka === 4
    ? `${tile}_${at}[${k}]`
    : `${tile}[${at}][(rt * KA + ${k}u) / 4u][(rt * KA + ${k}u) % 4u]`;
}

function ownedLoads(t: BackwardTile, tile: string, at: string): string {
  return t.ka === 4 ? `let ${tile}_${at} = ${tile}[${at}][rt];` : '';
}

/** Stores accumulator `name` (rows base(rt * KA + k), vec4 columns ct + j * NC) to global memory. */
function storeAccumulators(
  t: BackwardTile,
  names: readonly string[],
  row0: string,
  len: string,
  head: string,
  stride: string,
): string {
  return pairs(
    t.ka,
    t.ca,
    (k, j) => `{
    let o = rt * KA + ${k}u;
    let col = ct + ${j * t.nc}u;
    if (${row0} + o < ${len} && col < D4) {
      let base = ${head} + (${row0} + o) * ${stride};
      for (var comp = 0u; comp < 4u; comp++) {
        let e = col * 4u + comp;
        if (e < u.d) {
          ${names.map((n) => `${n}[base + e] = ${n}_${k}_${j}[comp];`).join('\n          ')}
        }
      }
    }
  }`,
    '\n  ',
  );
}

/**
 * dK and dV, tiled: one workgroup per (block of BK keys, kv head, sequence). K and V of the
 * block sit in workgroup memory and dK, dV in registers; every query head of the group and
 * every query block that sees the keys streams through (Q, dO, lse, D; the next block is
 * loaded into registers while the current one is computed), P and dS are recomputed per
 * block into workgroup memory, then dV += P^T dO and dK += dS^T Q. Query blocks outside the
 * causal / window band are not visited. Three barriers per block.
 */
function backwardDkvSource(d4: number, t: BackwardTile, vec4In: boolean): string {
  const loads = Math.ceil((t.bq * t.d4cap) / t.wg);
  const statLoads = Math.ceil(t.bq / t.wg);
  const fetch = (i0: string, qHead: string, statBase: string) =>
    [
      unroll(
        loads,
        (i) => `{
      let idx = lid + ${i * t.wg}u;
      let r = idx / D4CAP;
      let c = idx % D4CAP;
      qr_${i} = vec4<f32>(0.0);
      gr_${i} = vec4<f32>(0.0);
      if (idx < BQ * D4CAP && ${i0} + r < q_len && c < D4) {
        let row = ${qHead} + (${i0} + r) * u.q_token_stride;
        qr_${i} = load_q(row, c);
        gr_${i} = load_do(row, c);
      }
    }`,
        '\n    ',
      ),
      unroll(
        statLoads,
        (i) => `{
      let r = lid + ${i * t.wg}u;
      st_${i} = vec2<f32>(neg_inf(), 0.0);
      if (r < BQ && ${i0} + r < q_len) { st_${i} = stats[${statBase} + ${i0} + r]; }
    }`,
        '\n    ',
      ),
    ].join('\n    ');
  return /* wgsl */ `
${backwardTiledCommon(d4, t, vec4In)}
// P and dS of the block, [query row][key], vec4s along the keys.
var<workgroup> p_s: array<array<vec4<f32>, ${t.ps}>, BQ>;
var<workgroup> ds_s: array<array<vec4<f32>, ${t.ps}>, BQ>;
fn store_grad(r: u32, c: u32, p: f32, ds: f32) {
  p_s[r][c / 4u][c % 4u] = p;
  ds_s[r][c / 4u][c % 4u] = ds;
}

@compute @workgroup_size(${t.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${d4Init(d4, t.d4cap)}
  let seq = wid.z;
  let kv_head = wid.y;
  if (lid < ${SPAN_FIELDS}u) { span_shared[lid] = spans[seq * ${SPAN_FIELDS}u + lid]; }
  let q_base_seq = workgroupUniformLoad(&span_shared[0]);
  let q_len = workgroupUniformLoad(&span_shared[1]);
  let k_base_seq = workgroupUniformLoad(&span_shared[2]);
  let k_len = workgroupUniformLoad(&span_shared[3]);
  let lse_base = workgroupUniformLoad(&span_shared[4]);
  let j0 = wid.x * BK;
  if (j0 >= k_len) { return; }
  let k_head = k_base_seq + kv_head * u.k_head_stride;
  let offset = i32(k_len) - i32(q_len);
  // Keys j0.. (zeros past k_len) into k_s, v_s.
  for (var idx = lid; idx < BK * D4CAP; idx += WG) {
    let r = idx / D4CAP;
    let c = idx % D4CAP;
    var kv = vec4<f32>(0.0);
    var vv = vec4<f32>(0.0);
    if (j0 + r < k_len && c < D4) {
      let row = k_head + (j0 + r) * u.k_token_stride;
      kv = load_k(row, c);
      vv = load_v(row, c);
    }
    k_s[r][c] = kv;
    v_s[r][c] = vv;
  }
  // Query i (at p = i + offset) sees key j when p - left <= j <= p + right.
  let j_last = min(j0 + BK, k_len) - 1u;
  let i_lo = max(0, i32(j0) - u.window_right - offset);
  let i_hi = min(i32(q_len) - 1, i32(j_last) + u.window_left - offset);
  var blk_lo = 0u;
  var blk_hi = 0u;
  if (i_hi >= i_lo) {
    blk_lo = u32(i_lo) / BQ;
    blk_hi = u32(i_hi) / BQ + 1u;
  }
  // Steps run over (head of the group, query block).
  let nblk = blk_hi - blk_lo;
  let steps = u.group * nblk;
  let tx = lid % NTX;
  let ty = lid / NTX;
  let rt = lid / NC;
  let ct = lid % NC;
  ${pairs(t.ka, t.ca, (k, j) => `var dk_${k}_${j} = vec4<f32>(0.0);\n  var dv_${k}_${j} = vec4<f32>(0.0);`, '\n  ')}
  // The next query block in registers: Q and dO vec4s idx % D4CAP of rows idx / D4CAP, (lse, D).
  ${unroll(loads, (i) => `var qr_${i} = vec4<f32>(0.0);\n  var gr_${i} = vec4<f32>(0.0);`, '\n  ')}
  ${unroll(statLoads, (i) => `var st_${i} = vec2<f32>(0.0);`, '\n  ')}
  if (steps > 0u) {
    let h0 = kv_head * u.group;
    ${fetch('blk_lo * BQ', 'q_base_seq + h0 * u.q_head_stride', 'lse_base + h0 * u.lse_head_stride')}
  }
  for (var step = 0u; step < steps; step++) {
    let head = kv_head * u.group + step / nblk;
    let i0 = (blk_lo + step % nblk) * BQ;
    workgroupBarrier();
    ${unroll(
      loads,
      (i) => `{
      let idx = lid + ${i * t.wg}u;
      ${loads * t.wg > t.bq * t.d4cap ? 'if (idx < BQ * D4CAP) {' : '{'}
        q_s[idx / D4CAP][idx % D4CAP] = finite_or_zero(qr_${i});
        do_s[idx / D4CAP][idx % D4CAP] = gr_${i};
      }
    }`,
      '\n    ',
    )}
    ${unroll(
      statLoads,
      (i) => `{
      let r = lid + ${i * t.wg}u;
      if (r < BQ) {
        lse_s[r] = st_${i}.x;
        delta_s[r] = st_${i}.y;
      }
    }`,
      '\n    ',
    )}
    workgroupBarrier();
    scores(ty, tx, head, i0, q_len, j0, k_len, offset);
    if (step + 1u < steps) {
      let hn = kv_head * u.group + (step + 1u) / nblk;
      let i0n = (blk_lo + (step + 1u) % nblk) * BQ;
      ${fetch('i0n', 'q_base_seq + hn * u.q_head_stride', 'lse_base + hn * u.lse_head_stride')}
    }
    workgroupBarrier();
    for (var r = 0u; r < BQ; r++) {
      ${ownedLoads(t, 'p_s', 'r')}
      ${ownedLoads(t, 'ds_s', 'r')}
      ${unroll(t.ca, (j) => `let gv_${j} = do_s[r][ct + ${j * t.nc}u];\n      let qv_${j} = q_s[r][ct + ${j * t.nc}u];`, '\n      ')}
      ${pairs(
        t.ka,
        t.ca,
        (k, j) =>
          `dv_${k}_${j} = fma(vec4<f32>(${ownedRead(t, 'p_s', 'r', k)}), gv_${j}, dv_${k}_${j});\n      ` +
          `dk_${k}_${j} = fma(vec4<f32>(${ownedRead(t, 'ds_s', 'r', k)}), qv_${j}, dk_${k}_${j});`,
        '\n      ',
      )}
    }
  }
  ${storeAccumulators(t, ['dk', 'dv'], 'j0', 'k_len', 'k_head', 'u.k_token_stride')}
}
`;
}

/**
 * dQ, tiled: one workgroup per (block of BQ query rows, head, sequence). Q, dO, lse and D of
 * the block sit in workgroup memory and dQ in registers; the visible key blocks stream
 * through (K, V; the next block loaded into registers while the current one is computed),
 * dS is recomputed per block and dQ += dS K. WGSL has no float atomics, so dQ has this pass
 * of its own rather than atomic adds from the dK/dV pass.
 */
function backwardDqSource(d4: number, t: BackwardTile, vec4In: boolean): string {
  const loads = Math.ceil((t.bk * t.d4cap) / t.wg);
  const fetch = (j0: string) =>
    unroll(
      loads,
      (i) => `{
      let idx = lid + ${i * t.wg}u;
      let r = idx / D4CAP;
      let c = idx % D4CAP;
      kr_${i} = vec4<f32>(0.0);
      vr_${i} = vec4<f32>(0.0);
      if (idx < BK * D4CAP && ${j0} + r < k_len && c < D4) {
        let row = k_head + (${j0} + r) * u.k_token_stride;
        kr_${i} = load_k(row, c);
        vr_${i} = load_v(row, c);
      }
    }`,
      '\n    ',
    );
  return /* wgsl */ `
${backwardTiledCommon(d4, t, vec4In)}
// dS of the block, [key][query row], vec4s along the query rows.
var<workgroup> ds_s: array<array<vec4<f32>, ${t.ps}>, BK>;
fn store_grad(r: u32, c: u32, p: f32, ds: f32) { ds_s[c][r / 4u][r % 4u] = ds; }

@compute @workgroup_size(${t.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${d4Init(d4, t.d4cap)}
  let seq = wid.z;
  let head = wid.y;
  if (lid < ${SPAN_FIELDS}u) { span_shared[lid] = spans[seq * ${SPAN_FIELDS}u + lid]; }
  let q_base_seq = workgroupUniformLoad(&span_shared[0]);
  let q_len = workgroupUniformLoad(&span_shared[1]);
  let k_base_seq = workgroupUniformLoad(&span_shared[2]);
  let k_len = workgroupUniformLoad(&span_shared[3]);
  let lse_base = workgroupUniformLoad(&span_shared[4]);
  // The last query block first: under a causal mask it sees the most keys.
  let i0 = (nwg.x - 1u - wid.x) * BQ;
  if (i0 >= q_len) { return; }
  let q_head = q_base_seq + head * u.q_head_stride;
  let k_head = k_base_seq + (head / u.group) * u.k_head_stride;
  let offset = i32(k_len) - i32(q_len);
  // Rows i0.. (zeros and lse -inf past q_len) into q_s, do_s, lse_s, delta_s.
  for (var idx = lid; idx < BQ * D4CAP; idx += WG) {
    let r = idx / D4CAP;
    let c = idx % D4CAP;
    var qv = vec4<f32>(0.0);
    var gv = vec4<f32>(0.0);
    if (i0 + r < q_len && c < D4) {
      let row = q_head + (i0 + r) * u.q_token_stride;
      qv = load_q(row, c);
      gv = load_do(row, c);
    }
    q_s[r][c] = qv;
    do_s[r][c] = gv;
  }
  for (var r = lid; r < BQ; r += WG) {
    var st = vec2<f32>(neg_inf(), 0.0);
    if (i0 + r < q_len) { st = stats[lse_base + head * u.lse_head_stride + i0 + r]; }
    lse_s[r] = st.x;
    delta_s[r] = st.y;
  }
  let i_last = min(i0 + BQ, q_len) - 1u;
  let key_lo = max(0, i32(i0) + offset - u.window_left);
  let key_hi = min(i32(k_len) - 1, i32(i_last) + offset + u.window_right);
  var blk_lo = 0u;
  var blk_hi = 0u;
  if (key_hi >= key_lo) {
    blk_lo = u32(key_lo) / BK;
    blk_hi = u32(key_hi) / BK + 1u;
  }
  let tx = lid % NTX;
  let ty = lid / NTX;
  let rt = lid / NC;
  let ct = lid % NC;
  ${pairs(t.ka, t.ca, (k, j) => `var dq_${k}_${j} = vec4<f32>(0.0);`, '\n  ')}
  // The next key block in registers: K and V vec4s idx % D4CAP of keys idx / D4CAP.
  ${unroll(loads, (i) => `var kr_${i} = vec4<f32>(0.0);\n  var vr_${i} = vec4<f32>(0.0);`, '\n  ')}
  if (blk_lo < blk_hi) {
    ${fetch('blk_lo * BK')}
  }
  for (var blk = blk_lo; blk < blk_hi; blk++) {
    let j0 = blk * BK;
    workgroupBarrier();
    ${unroll(
      loads,
      (i) => `{
      let idx = lid + ${i * t.wg}u;
      ${loads * t.wg > t.bk * t.d4cap ? 'if (idx < BK * D4CAP) {' : '{'}
        k_s[idx / D4CAP][idx % D4CAP] = finite_or_zero(kr_${i});
        v_s[idx / D4CAP][idx % D4CAP] = vr_${i};
      }
    }`,
      '\n    ',
    )}
    workgroupBarrier();
    scores(ty, tx, head, i0, q_len, j0, k_len, offset);
    if (blk + 1u < blk_hi) {
      let jn = j0 + BK;
      ${fetch('jn')}
    }
    workgroupBarrier();
    for (var c = 0u; c < BK; c++) {
      ${ownedLoads(t, 'ds_s', 'c')}
      ${unroll(t.ca, (j) => `let kv_${j} = k_s[c][ct + ${j * t.nc}u];`, '\n      ')}
      ${pairs(t.ka, t.ca, (k, j) => `dq_${k}_${j} = fma(vec4<f32>(${ownedRead(t, 'ds_s', 'c', k)}), kv_${j}, dq_${k}_${j});`, '\n      ')}
    }
  }
  ${storeAccumulators(t, ['dq'], 'i0', 'q_len', 'q_head', 'u.q_token_stride')}
}
`;
}

function tileKey(t: BackwardTile): string {
  return `${t.bq}x${t.bk}x${t.tr}x${t.tc}`;
}

async function writeBackward(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: FlashAttentionAttrs,
  { dq, dk, dv }: FlashAttentionGradOutputs,
): Promise<void> {
  const layout = attrs.layout;
  const sequences = layout.sequences.length;
  const d4 = Math.ceil(layout.d / 4);
  const [q, k, v, o, dOut, lse] = inputs as Tensor[];
  const spans = spanBinding(backend, attrs);
  // (lse, D) per query row, laid out like the logsumexp.
  const stats = backend.empty([Math.max(lse!.size, 1) * 2]);
  try {
    if (layout.form === 'padded') {
      // Gradients of rows and keys past a sequence's lengths are 0.
      for (const t of [dq, dk, dv]) await zeroFill(backend, t);
    }
    if (sequences === 0 || dq.size + dk.size === 0) return;
    const uniforms = commonUniforms(attrs);
    const key = d4Key(d4, capacity(d4));
    const statsBinding: WgslBinding = { name: 'stats', tensor: stats, elementType: 'vec2<f32>' };
    // Rows start at multiples of d, so with d % 4 = 0 the tiled passes read vec4s.
    const vec4In = layout.d % 4 === 0;
    const el = vec4In ? 'vec4<f32>' : undefined;
    const operands: WgslBinding[] = [
      { name: 'q', tensor: q!, elementType: el },
      { name: 'k', tensor: k!, elementType: el },
      { name: 'v', tensor: v!, elementType: el },
      { name: 'd_out', tensor: dOut!, elementType: el },
      statsBinding,
      { name: 'spans', tensor: spans },
    ];
    if (layout.maxQLen === 0) return;
    await backend.run({
      kind: 'webgpu',
      name: 'flash_attention_backward_dot',
      cacheKey: key,
      inputs: [
        { name: 'o_in', tensor: o! },
        { name: 'd_out', tensor: dOut! },
        { name: 'lse', tensor: lse! },
        { name: 'spans', tensor: spans },
      ],
      outputs: [statsBinding],
      uniforms,
      source: backwardDotSource(d4),
      dispatch: [Math.ceil(layout.maxQLen / ROW_WG), layout.heads, sequences],
    });
    if (layout.maxKLen === 0) return;
    const dkvTile = backwardTile(
      d4,
      'dkdv',
      backend.limits.maxWorkgroupStorageSize,
      backend.limits.maxWorkgroupInvocations,
    );
    const dqTile = backwardTile(
      d4,
      'dq',
      backend.limits.maxWorkgroupStorageSize,
      backend.limits.maxWorkgroupInvocations,
    );
    for (const t of [dkvTile, dqTile]) {
      if (t.bytes > backend.limits.maxWorkgroupStorageSize) {
        throw new DeviceLimitError(
          `head dim ${layout.d} (backward)`,
          'maxComputeWorkgroupStorageSize (bytes)',
          t.bytes,
          backend.limits.maxWorkgroupStorageSize,
        );
      }
    }
    await backend.run({
      kind: 'webgpu',
      name: 'flash_attention_backward_dkdv',
      cacheKey: `${d4Key(d4, backwardCap(d4))}|${tileKey(dkvTile)}|vec4${vec4In ? 1 : 0}`,
      inputs: operands,
      outputs: [
        { name: 'dk', tensor: dk },
        { name: 'dv', tensor: dv },
      ],
      uniforms,
      source: backwardDkvSource(d4, dkvTile, vec4In),
      dispatch: [Math.ceil(layout.maxKLen / dkvTile.own), layout.kvHeads, sequences],
    });
    await backend.run({
      kind: 'webgpu',
      name: 'flash_attention_backward_dq',
      cacheKey: `${d4Key(d4, backwardCap(d4))}|${tileKey(dqTile)}|vec4${vec4In ? 1 : 0}`,
      inputs: operands,
      outputs: [{ name: 'dq', tensor: dq }],
      uniforms,
      source: backwardDqSource(d4, dqTile, vec4In),
      dispatch: [Math.ceil(layout.maxQLen / dqTile.own), layout.heads, sequences],
    });
  } finally {
    spans.dispose();
    stats.dispose();
  }
}

async function zeroFill(backend: Backend, t: Tensor): Promise<void> {
  if (t.size === 0) return;
  const groups = Math.ceil(t.size / ROW_WG);
  const y = Math.ceil(groups / 65535);
  await backend.run({
    kind: 'webgpu',
    name: 'flash_attention_zero',
    cacheKey: '',
    inputs: [],
    outputs: [{ name: 'zeroed', tensor: t }],
    uniforms: [{ name: 'count', type: 'u32', value: t.size }],
    source: `@compute @workgroup_size(${ROW_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${ROW_WG}u;
  if (i < u.count) { zeroed[i] = 0.0; }
}`,
    dispatch: [Math.ceil(groups / y), y, 1],
  });
}

export const flashAttentionBackwardWebGpuKernel = flashAttentionBackwardKernel('webgpu', writeBackward);
