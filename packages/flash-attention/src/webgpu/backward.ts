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

/**
 * Backward tile shape (FlashAttention-2's loop order). The dK/dV pass: a workgroup owns
 * `own` keys (K, V and the dK, dV accumulators stay on chip) and streams the query rows of
 * every head of the group through workgroup memory `stream` at a time. The dQ pass: a
 * workgroup owns `own` query rows and streams the keys. The product own x d and
 * stream x d are fixed per head-dim capacity, so each tile is a few KiB and one shape
 * serves every head dim up to the capacity.
 */
interface BackwardTile {
  /** Rows whose gradients the workgroup accumulates (keys for dK/dV, queries for dQ). */
  readonly own: number;
  /** Rows streamed through workgroup memory per step. */
  readonly stream: number;
  readonly wg: number;
  /** vec4s per head row the tiles hold (a power of two) and the padded row stride. */
  readonly d4cap: number;
  readonly stride: number;
  /** Score entries per thread (rows of the stream block), and thread groups along them. */
  readonly kr: number;
  readonly nrg: number;
  /** Accumulator vec4s per thread. */
  readonly acc: number;
  readonly bytes: number;
}

/**
 * Head-row capacity of the tiled backward passes: at least 8 vec4s, so head dims up to 32
 * share one program (SwiftShader takes seconds to compile each, and tests run many dims).
 */
function backwardCap(d4: number): number {
  return Math.max(8, capacity(d4));
}

function backwardTile(d4: number, pass: 'dkdv' | 'dq', maxBytes: number, maxThreads: number): BackwardTile {
  const d4cap = backwardCap(d4);
  const stride = d4cap + 1;
  // dK/dV: 32 keys x 16 query rows at d = 64; dQ: 32 query rows x 16 keys (halved to fit
  // smaller workgroup memories). 32 x 32 blocks fit the H100's 48 KiB but were not measured.
  let own = Math.min(64, 512 / d4cap);
  let stream = Math.min(32, 256 / d4cap);
  const shape = (): BackwardTile => {
    // Scores are computed as [query rows, keys]: for dK/dV the keys are the owned rows.
    const keys = pass === 'dkdv' ? own : stream;
    const queries = pass === 'dkdv' ? stream : own;
    const wg = Math.min(128, maxThreads, keys * queries);
    const nrg = Math.max(1, wg / keys);
    const kr = Math.max(1, queries / nrg);
    const acc = Math.max(1, (own * d4cap) / wg);
    // Two owned-row tiles (K, V or Q, dO), two streamed, P and dS (dQ needs only dS), lse and D.
    const bytes =
      16 * stride * 2 * (own + stream) + 4 * queries * keys * (pass === 'dkdv' ? 2 : 1) + 8 * queries + 64;
    return { own, stream, wg, d4cap, stride, kr, nrg, acc, bytes };
  };
  let t = shape();
  while (t.bytes > maxBytes && (own > 1 || stream > 1)) {
    if (own >= stream && own > 1) own /= 2;
    else stream /= 2;
    t = shape();
  }
  return t;
}

/** Whether every accumulator of a thread has the same vec4 column (WG a multiple of D4CAP). */
function sharedCol(t: BackwardTile): boolean {
  return t.wg % t.d4cap === 0;
}

/**
 * The rows and vec4 columns of the accumulators a thread owns: element idx = lid + a * WG
 * of the [own, D4CAP] block (own_a its row, col_a its column).
 */
function ownedDecls(t: BackwardTile): string {
  return unroll(
    t.acc,
    (a) =>
      sharedCol(t)
        ? `let own_${a} = lid / D4CAP + ${(a * t.wg) / t.d4cap}u;\n  let col_${a} = lid % D4CAP;`
        : `let own_${a} = (lid + ${a * t.wg}u) / D4CAP;\n  let col_${a} = (lid + ${a * t.wg}u) % D4CAP;`,
    '\n  ',
  );
}

/** WGSL shared by the two tiled backward passes: the row loaders and the score/gradient step. */
function backwardTiledCommon(d4: number, t: BackwardTile, queries: number, keys: number): string {
  return /* wgsl */ `
${backwardCommon(d4, ['q', 'k', 'v', 'd_out'], t.d4cap)}
const WG: u32 = ${t.wg}u;
const NRG: u32 = ${t.nrg}u;
const D4CAP: u32 = ${t.d4cap}u;
const BQ: u32 = ${queries}u;
const BK: u32 = ${keys}u;
// Query-side tiles (Q, dO) and key-side tiles (K, V), rows padded to an odd vec4 stride.
var<workgroup> q_s: array<array<vec4<f32>, ${t.stride}>, BQ>;
var<workgroup> do_s: array<array<vec4<f32>, ${t.stride}>, BQ>;
var<workgroup> k_s: array<array<vec4<f32>, ${t.stride}>, BK>;
var<workgroup> v_s: array<array<vec4<f32>, ${t.stride}>, BK>;
var<workgroup> ds_s: array<array<f32, BK>, BQ>;
var<workgroup> lse_s: array<f32, BQ>;
var<workgroup> delta_s: array<f32, BQ>;
var<workgroup> span_shared: array<u32, ${SPAN_FIELDS}>;

// Rows i0.. of the query side (zeros and lse -inf past q_len) into q_s, do_s, lse_s, delta_s.
fn load_queries(lid: u32, q_head: u32, stat_base: u32, i0: u32, q_len: u32) {
  for (var idx = lid; idx < BQ * D4CAP; idx += WG) {
    let r = idx / D4CAP;
    let c = idx % D4CAP;
    var qv = vec4<f32>(0.0);
    var gv = vec4<f32>(0.0);
    if (i0 + r < q_len) {
      let row = q_head + (i0 + r) * u.q_token_stride;
      qv = read4(0u, row, c);
      gv = read4(4u, row, c);
    }
    q_s[r][c] = qv;
    do_s[r][c] = gv;
  }
  for (var r = lid; r < BQ; r += WG) {
    var st = vec2<f32>(neg_inf(), 0.0);
    if (i0 + r < q_len) { st = stats[stat_base + i0 + r]; }
    lse_s[r] = st.x;
    delta_s[r] = st.y;
  }
}

// Keys j0.. (zeros past k_len) into k_s, v_s.
fn load_keys(lid: u32, k_head: u32, j0: u32, k_len: u32) {
  for (var idx = lid; idx < BK * D4CAP; idx += WG) {
    let r = idx / D4CAP;
    let c = idx % D4CAP;
    var kv = vec4<f32>(0.0);
    var vv = vec4<f32>(0.0);
    if (j0 + r < k_len) {
      let row = k_head + (j0 + r) * u.k_token_stride;
      kv = read4(1u, row, c);
      vv = read4(2u, row, c);
    }
    k_s[r][c] = kv;
    v_s[r][c] = vv;
  }
}

// P and dS of the block (query rows i0.., keys j0..), recomputed from lse: thread (rg, c)
// takes key c and query rows rg + k * NRG; P is written to p_s when the pass needs it.
fn scores(lid: u32, head: u32, i0: u32, q_len: u32, j0: u32, k_len: u32, offset: i32) {
  let c = lid % BK;
  let rg = lid / BK;
  let key = i32(j0 + c);
  // Accumulated at constant indices (registers); the epilogue is a loop, so SwiftShader
  // compiles one copy of the score function rather than KR.
  var qk: array<f32, ${t.kr}>;
  var dp: array<f32, ${t.kr}>;
  ${unroll(t.kr, (k) => `qk[${k}] = 0.0;\n  dp[${k}] = 0.0;`, '\n  ')}
  for (var e = 0u; e < D4; e++) {
    let kv = k_s[c][e];
    let vv = v_s[c][e];
    ${unroll(t.kr, (k) => `qk[${k}] += dot(q_s[rg + ${k}u * NRG][e], kv);\n    dp[${k}] += dot(do_s[rg + ${k}u * NRG][e], vv);`, '\n    ')}
  }
  for (var k = 0u; k < ${t.kr}u; k++) {
    let r = rg + k * NRG;
    let i = i0 + r;
    let pos = i32(i) + offset;
    let row_lse = lse_s[r];
    var p = 0.0;
    var ds = 0.0;
    if (i < q_len && key < i32(k_len) && key >= pos - u.window_left && key <= pos + u.window_right && !is_neg_inf(row_lse)) {
      p = exp(finish_score(qk[k], head, pos, key) - row_lse);
      ds = p * (dp[k] - delta_s[r]) * grad_factor(qk[k]);
    }
    store_p(r, c, p);
    ds_s[r][c] = ds;
  }
}
`;
}

/**
 * dK and dV, tiled: one workgroup per (block of keys, kv head, sequence). K and V of the
 * block sit in workgroup memory and dK, dV in registers (thread owns vec4 column
 * idx % D4CAP of key idx / D4CAP, idx = lid + t * WG); every query head of the group and
 * every query block that sees the keys streams through (Q, dO, lse, D), P and dS are
 * recomputed per block, then dV += P^T dO and dK += dS^T Q. Query blocks outside the
 * causal / window band are not visited.
 */
function backwardDkvSource(d4: number, t: BackwardTile): string {
  return /* wgsl */ `
${backwardTiledCommon(d4, t, t.stream, t.own)}
var<workgroup> p_s: array<array<f32, BK>, BQ>;
fn store_p(r: u32, c: u32, p: f32) { p_s[r][c] = p; }

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
  load_keys(lid, k_head, j0, k_len);
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
  ${ownedDecls(t)}
  ${unroll(t.acc, (a) => `var dk_${a} = vec4<f32>(0.0);\n  var dv_${a} = vec4<f32>(0.0);`, '\n  ')}
  for (var g = 0u; g < u.group; g++) {
    let head = kv_head * u.group + g;
    let q_head = q_base_seq + head * u.q_head_stride;
    let stat_base = lse_base + head * u.lse_head_stride;
    for (var blk = blk_lo; blk < blk_hi; blk++) {
      let i0 = blk * BQ;
      workgroupBarrier();
      load_queries(lid, q_head, stat_base, i0, q_len);
      workgroupBarrier();
      scores(lid, head, i0, q_len, j0, k_len, offset);
      workgroupBarrier();
      for (var r = 0u; r < BQ; r++) {
        ${sharedCol(t) ? 'let dov = do_s[r][col_0];\n        let qv = q_s[r][col_0];' : ''}
        ${unroll(
          t.acc,
          (a) => `{
          let p = p_s[r][own_${a}];
          let ds = ds_s[r][own_${a}];
          dv_${a} = fma(vec4<f32>(p), ${sharedCol(t) ? 'dov' : `do_s[r][col_${a}]`}, dv_${a});
          dk_${a} = fma(vec4<f32>(ds), ${sharedCol(t) ? 'qv' : `q_s[r][col_${a}]`}, dk_${a});
        }`,
          '\n        ',
        )}
      }
    }
  }
  ${unroll(
    t.acc,
    (a) => `if (own_${a} < BK && j0 + own_${a} < k_len && col_${a} < D4) {
    let base = k_head + (j0 + own_${a}) * u.k_token_stride;
    for (var comp = 0u; comp < 4u; comp++) {
      let e = col_${a} * 4u + comp;
      if (e < u.d) {
        dk[base + e] = dk_${a}[comp];
        dv[base + e] = dv_${a}[comp];
      }
    }
  }`,
    '\n  ',
  )}
}
`;
}

/**
 * dQ, tiled: one workgroup per (block of query rows, head, sequence). Q, dO, lse and D of
 * the block sit in workgroup memory and dQ in registers; the visible key blocks stream
 * through (K, V), dS is recomputed per block and dQ += dS K. WGSL has no float atomics, so
 * dQ has this pass of its own rather than atomic adds from the dK/dV pass.
 */
function backwardDqSource(d4: number, t: BackwardTile): string {
  return /* wgsl */ `
${backwardTiledCommon(d4, t, t.own, t.stream)}
fn store_p(r: u32, c: u32, p: f32) {}

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
  load_queries(lid, q_head, lse_base + head * u.lse_head_stride, i0, q_len);
  let i_last = min(i0 + BQ, q_len) - 1u;
  let key_lo = max(0, i32(i0) + offset - u.window_left);
  let key_hi = min(i32(k_len) - 1, i32(i_last) + offset + u.window_right);
  var blk_lo = 0u;
  var blk_hi = 0u;
  if (key_hi >= key_lo) {
    blk_lo = u32(key_lo) / BK;
    blk_hi = u32(key_hi) / BK + 1u;
  }
  ${ownedDecls(t)}
  ${unroll(t.acc, (a) => `var dq_${a} = vec4<f32>(0.0);`, '\n  ')}
  for (var blk = blk_lo; blk < blk_hi; blk++) {
    let j0 = blk * BK;
    workgroupBarrier();
    load_keys(lid, k_head, j0, k_len);
    workgroupBarrier();
    scores(lid, head, i0, q_len, j0, k_len, offset);
    workgroupBarrier();
    for (var c = 0u; c < BK; c++) {
      ${sharedCol(t) ? 'let kv = k_s[c][col_0];' : ''}
      ${unroll(t.acc, (a) => `dq_${a} = fma(vec4<f32>(ds_s[own_${a}][c]), ${sharedCol(t) ? 'kv' : `k_s[c][col_${a}]`}, dq_${a});`, '\n      ')}
    }
  }
  ${unroll(
    t.acc,
    (a) => `if (own_${a} < BQ && i0 + own_${a} < q_len && col_${a} < D4) {
    let base = q_head + (i0 + own_${a}) * u.q_token_stride;
    for (var comp = 0u; comp < 4u; comp++) {
      let e = col_${a} * 4u + comp;
      if (e < u.d) { dq[base + e] = dq_${a}[comp]; }
    }
  }`,
    '\n  ',
  )}
}
`;
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
    const operands: WgslBinding[] = [
      { name: 'q', tensor: q! },
      { name: 'k', tensor: k! },
      { name: 'v', tensor: v! },
      { name: 'd_out', tensor: dOut! },
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
      cacheKey: `${d4Key(d4, backwardCap(d4))}|own${dkvTile.own}x${dkvTile.stream}`,
      inputs: operands,
      outputs: [
        { name: 'dk', tensor: dk },
        { name: 'dv', tensor: dv },
      ],
      uniforms,
      source: backwardDkvSource(d4, dkvTile),
      dispatch: [Math.ceil(layout.maxKLen / dkvTile.own), layout.kvHeads, sequences],
    });
    await backend.run({
      kind: 'webgpu',
      name: 'flash_attention_backward_dq',
      cacheKey: `${d4Key(d4, backwardCap(d4))}|own${dqTile.own}x${dqTile.stream}`,
      inputs: operands,
      outputs: [{ name: 'dq', tensor: dq }],
      uniforms,
      source: backwardDqSource(d4, dqTile),
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
