/**
 * WebGPU programs for FlashAttention.
 *
 * Forward, 'tiled' (FlashAttention-2's loop order): one workgroup per (head, query block of
 * BR rows, sequence), the last query block first (under a causal mask it has the most keys).
 * The block's queries sit in workgroup memory for the whole pass; keys and values stream
 * through workgroup memory BC at a time, the next block's loaded into registers while the
 * current one is computed. Thread (ty, tx) owns rows ty + a * NTY (a < TR) of the block,
 * score columns tx + c * NTX (c < TC) and output vec4 columns tx + c * NTX: strided, so a
 * warp's reads of Q, K, V and P land on distinct banks (odd strides) or broadcast. The
 * micro-tile is unrolled in the generated WGSL so it stays in registers. Per key block:
 *   S = scale * Q K^T in registers (softcap, ALiBi, mask applied in place; blocks wholly
 *   inside the band take a path without the mask), row max by subgroup shuffles (or through
 *   workgroup memory), P = e^(S - m_new) (as exp2) to workgroup memory,
 *   O = O * e^(m_old - m_new) + P V in registers, P read as vec4s along the keys.
 * Three barriers per block. Each thread keeps its own partial denominator (all threads of a
 * row share the row's max, so partials rescale alike) and the partials are summed once at
 * the end. Key blocks wholly outside the causal / window band are never visited.
 * Memory beyond inputs and outputs: none (lse is an output).
 *
 * Forward, 'split' (decode, few query rows): one workgroup per (query row, head, sequence,
 * key split); each thread folds its keys with the online rule, the workgroup merges (m, l, o)
 * partials, and a second program merges the splits. Extra memory O(rows * splits * d).
 *
 * Backward (FlashAttention-2's recomputation from the saved logsumexp, no stored P):
 *   pass 1: D_i = dO_i . O_i per query row,
 *   pass 2: one thread per key row accumulates dK and dV over the query heads of its group
 *           and the query rows that see it,
 *   pass 3: one thread per query row accumulates dQ over its visible keys.
 * WGSL has no float atomics, so dQ has its own pass instead of atomic adds.
 *
 * Special values: a NaN or +Infinity score poisons its row (written as NaN); a row with no
 * visible key writes 0 and logsumexp -Infinity.
 */
import {
  type Backend,
  DeviceLimitError,
  type Tensor,
  type WgslBinding,
  type WgslUniform,
} from '@longseq/backend';
import {
  type FlashAttentionAttrs,
  type FlashAttentionGradOutputs,
  type FlashAttentionOutputs,
  type FlashTile,
  flashAttentionBackwardKernel,
  flashAttentionKernel,
  windowInt,
} from '../contract';
import { SPAN_FIELDS, spanTable } from '../layout';

/** Tiles tried in order; the first that fits the device's workgroup memory and invocations wins. */
const TILE_CANDIDATES: readonly FlashTile[] = [
  { br: 64, bc: 32, tr: 4, tc: 2 },
  { br: 32, bc: 32, tr: 2, tc: 2 },
  { br: 32, bc: 16, tr: 2, tc: 1 },
  { br: 16, bc: 16, tr: 1, tc: 1 },
  { br: 16, bc: 8, tr: 1, tc: 1 },
  { br: 8, bc: 8, tr: 1, tc: 1 },
  { br: 4, bc: 4, tr: 1, tc: 1 },
];

interface TileShape extends FlashTile {
  /** Threads along the key columns and along the query rows. */
  readonly ntx: number;
  readonly nty: number;
  /**
   * vec4s per head row, and the row capacity the tiles are sized for (oc * ntx): one
   * compiled program serves every head dim up to the capacity, reading the actual one
   * from a uniform (it is a constant when it fills the capacity, e.g. d = 64).
   */
  readonly d4: number;
  readonly d4cap: number;
  /** The padded stride of the Q and K tiles (odd, against bank conflicts). */
  readonly qStride: number;
  /** Stride of a row of P (vec4s along the keys; odd, against bank conflicts). */
  readonly pStride: number;
  /** Output vec4 columns per thread. */
  readonly oc: number;
  readonly bytes: number;
}

function tileShape(tile: FlashTile, d: number): TileShape {
  const d4 = Math.ceil(d / 4);
  const ntx = tile.bc / tile.tc;
  const nty = tile.br / tile.tr;
  const oc = Math.ceil(d4 / ntx);
  const d4cap = oc * ntx;
  const qStride = d4cap % 2 === 0 ? d4cap + 1 : d4cap;
  const pVec = Math.ceil(tile.bc / 4);
  const pStride = pVec % 2 === 0 ? pVec + 1 : pVec;
  const bytes =
    16 * (tile.br * qStride + tile.bc * qStride + tile.bc * d4cap + tile.br * pStride) +
    4 * (tile.br * ntx) +
    64;
  return { ...tile, ntx, nty, d4, d4cap, qStride, pStride, oc, bytes };
}

function fits(backend: Backend, t: TileShape): boolean {
  return (
    t.tr <= t.br &&
    t.tc <= t.bc &&
    t.bytes <= backend.limits.maxWorkgroupStorageSize &&
    t.ntx * t.nty <= backend.limits.maxWorkgroupInvocations
  );
}

/** The forward tile for this device and head dim: the first candidate that fits, with the caller's overrides. */
export function chooseTile(backend: Backend, d: number, override?: Partial<FlashTile>): TileShape {
  const base =
    TILE_CANDIDATES.map((t) => tileShape(t, d)).find((t) => fits(backend, t)) ??
    tileShape(TILE_CANDIDATES.at(-1)!, d);
  const shape = tileShape({ ...base, ...override }, d);
  if (shape.bytes > backend.limits.maxWorkgroupStorageSize) {
    throw new DeviceLimitError(
      override ? 'options.tile' : `head dim ${d}`,
      'maxComputeWorkgroupStorageSize (bytes)',
      shape.bytes,
      backend.limits.maxWorkgroupStorageSize,
    );
  }
  if (
    shape.ntx * shape.nty > backend.limits.maxWorkgroupInvocations ||
    shape.tr > shape.br ||
    shape.tc > shape.bc
  ) {
    throw new DeviceLimitError(
      'options.tile',
      'maxComputeInvocationsPerWorkgroup (threads = br/tr * bc/tc, with tr <= br, tc <= bc)',
      shape.ntx * shape.nty,
      backend.limits.maxWorkgroupInvocations,
    );
  }
  return shape;
}

/** Private arrays of the row-per-thread programs hold a power of two of vec4s (4..64), so few head dims compile apart. */
function capacity(d4: number): number {
  return Math.max(4, 2 ** Math.ceil(Math.log2(d4)));
}

/** D4, the vec4s per head row: a constant when it fills the capacity, else read from the uniform. */
function d4Decl(d4: number, cap: number): string {
  return d4 === cap ? `const D4: u32 = ${cap}u;` : 'var<private> D4: u32;';
}

function d4Init(d4: number, cap: number): string {
  return d4 === cap ? '' : 'D4 = u.d4;';
}

function d4Key(d4: number, cap: number): string {
  return `d4cap${cap}|${d4 === cap ? 'exact' : 'uniform'}`;
}

function commonUniforms(attrs: FlashAttentionAttrs): WgslUniform[] {
  const l = attrs.layout;
  return [
    { name: 'heads', type: 'u32', value: l.heads },
    { name: 'group', type: 'u32', value: l.group },
    { name: 'd', type: 'u32', value: l.d },
    { name: 'd4', type: 'u32', value: Math.ceil(l.d / 4) },
    { name: 'q_head_stride', type: 'u32', value: l.qHeadStride },
    { name: 'q_token_stride', type: 'u32', value: l.qTokenStride },
    { name: 'k_head_stride', type: 'u32', value: l.kHeadStride },
    { name: 'k_token_stride', type: 'u32', value: l.kTokenStride },
    { name: 'lse_head_stride', type: 'u32', value: l.lseHeadStride },
    { name: 'window_left', type: 'i32', value: windowInt(attrs.windowLeft) },
    { name: 'window_right', type: 'i32', value: windowInt(attrs.windowRight) },
    { name: 'scale', type: 'f32', value: attrs.scale },
    { name: 'softcap', type: 'f32', value: attrs.softcap },
    { name: 'slopes_at', type: 'u32', value: l.sequences.length * SPAN_FIELDS },
    { name: 'alibi', type: 'u32', value: attrs.alibiSlopes ? 1 : 0 },
  ];
}

/** WGSL shared by every program: special values and the score of one (query, key) pair after softcap and ALiBi. */
function commonWgsl(): string {
  return /* wgsl */ `
const NO_MAX: f32 = -3.40282346e38;
var<private> INF_BITS: u32 = 0x7f800000u;
var<private> NEG_INF_BITS: u32 = 0xff800000u;
var<private> NAN_BITS: u32 = 0x7fc00000u;
fn pos_inf() -> f32 { return bitcast<f32>(INF_BITS); }
fn neg_inf() -> f32 { return bitcast<f32>(NEG_INF_BITS); }
fn nan() -> f32 { return bitcast<f32>(NAN_BITS); }
// NaN or +inf: the score poisons its row (WGSL lets compilers assume neither exists, so test bits).
fn poisons(z: f32) -> bool {
  let bits = bitcast<u32>(z);
  return (bits & 0x7f800000u) == 0x7f800000u && bits != 0xff800000u;
}
fn is_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
fn is_neg_inf(x: f32) -> bool { return bitcast<u32>(x) == 0xff800000u; }

// tanh for any finite x: exp(-2|x|) cannot overflow; a series near 0 where 1 - e^(-2|x|) cancels.
fn tanh_stable(x: f32) -> f32 {
  let ax = abs(x);
  if (ax < 0.0625) {
    let x2 = x * x;
    return x * (1.0 + x2 * (-0.33333333 + x2 * (0.13333333 + x2 * -0.053968254)));
  }
  let t = exp(-2.0 * ax);
  return sign(x) * (1.0 - t) / (1.0 + t);
}

// scale * dot, then softcap, then ALiBi, as the reference orders them. Both options are
// uniform branches, so one program serves every combination.
fn finish_score(dot: f32, head: u32, pos: i32, key: i32) -> f32 {
  var s = dot * u.scale;
  if (u.softcap > 0.0) { s = u.softcap * tanh_stable(s / u.softcap); }
  if (u.alibi != 0u) { s = s - bitcast<f32>(spans[u.slopes_at + head]) * f32(abs(pos - key)); }
  return s;
}
`;
}

/**
 * The per-sequence table (SPAN_FIELDS u32 per sequence) followed by the ALiBi slopes as
 * float bits: one binding, so no pass needs more than 8 storage buffers.
 */
function spanBinding(backend: Backend, attrs: FlashAttentionAttrs): Tensor {
  const table = spanTable(attrs.layout);
  const slopes = new Uint32Array(Float32Array.from(attrs.alibiSlopes ?? []).buffer);
  const data = new Uint32Array(table.length + slopes.length + 1);
  data.set(table);
  data.set(slopes, table.length);
  return backend.tensor(data, [data.length], 'u32');
}

/** `count` copies of `line(i)`, for the unrolled micro-tile code (the compilers then keep it in registers). */
function unroll(count: number, line: (i: number) => string, sep = '\n'): string {
  return Array.from({ length: count }, (_, i) => line(i)).join(sep);
}

/** Every (row a, column c) pair of a TR x TC micro-tile. */
function pairs(tr: number, tc: number, line: (a: number, c: number) => string, sep = '\n'): string {
  return unroll(tr, (a) => unroll(tc, (c) => line(a, c), sep), sep);
}

/**
 * The tiled forward. Thread (ty, tx) owns rows ty + a * NTY (a < TR) of the block, score
 * columns tx + c * NTX (c < TC) and output vec4 columns tx + c * NTX (c < OC). Strided
 * rows and columns keep the workgroup-memory reads of a warp on distinct banks (Q and K
 * tiles have an odd stride in vec4s), and the micro-tile is unrolled in the generated code
 * so it stays in registers. The next key block is loaded from global memory into registers
 * while the current one is computed (2 barriers per block, a third for P).
 */
function tiledForwardSource(t: TileShape, vec4In: boolean, shuffle: boolean): string {
  const { tr, tc, oc, ntx, nty } = t;
  const wg = ntx * nty;
  const loads = Math.ceil((t.bc * t.d4cap) / wg);
  const pVec = Math.ceil(t.bc / 4);
  const loadRow = vec4In
    ? `fn load_q(base: u32, c4: u32, valid: bool) -> vec4<f32> {
  if (!valid || c4 >= D4) { return vec4<f32>(0.0); }
  return q[(base >> 2u) + c4];
}
fn load_k(base: u32, c4: u32, valid: bool) -> vec4<f32> {
  if (!valid || c4 >= D4) { return vec4<f32>(0.0); }
  return k[(base >> 2u) + c4];
}
fn load_v(base: u32, c4: u32, valid: bool) -> vec4<f32> {
  if (!valid || c4 >= D4) { return vec4<f32>(0.0); }
  return v[(base >> 2u) + c4];
}`
    : ['q', 'k', 'v']
        .map(
          (name) => `fn load_${name}(base: u32, c4: u32, valid: bool) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  if (!valid) { return r; }
  for (var c = 0u; c < 4u; c++) {
    let e = c4 * 4u + c;
    if (e < u.d) { r[c] = ${name}[base + e]; }
  }
  return r;
}`,
        )
        .join('\n');
  // The score of (a, c) in natural units, masked (NO_MAX) or poisoning its row (l = +inf).
  const score = (masked: boolean) =>
    pairs(
      tr,
      tc,
      (a, c) => `{
        let key = i32(j0 + tx + ${c}u * NTX);
        var z = finish_score(s_${a}_${c}, head, pos_${a}, key);
        ${masked ? `if (!(key < i32(k_len) && key >= pos_${a} - u.window_left && key <= pos_${a} + u.window_right)) { z = NO_MAX; } else ` : ''}if (poisons(z)) { l_${a} = pos_inf(); z = NO_MAX; }
        s_${a}_${c} = z;
      }`,
    );
  // One vec4 column e of S += Q K^T; an explicit fma chain, since dot() plus the add would
  // cost a fifth instruction per 4 products.
  const scoreStep = (e: string) =>
    [
      unroll(tc, (c) => `let kv_${c} = k_tile[key_${c}][${e}];`, '\n      '),
      unroll(tr, (a) => `let qv_${a} = q_tile[row_${a}][${e}];`, '\n      '),
      pairs(
        tr,
        tc,
        (a, c) =>
          `s_${a}_${c} = fma(qv_${a}.w, kv_${c}.w, fma(qv_${a}.z, kv_${c}.z, fma(qv_${a}.y, kv_${c}.y, fma(qv_${a}.x, kv_${c}.x, s_${a}_${c}))));`,
        '\n      ',
      ),
    ].join('\n      ');
  // With a constant head dim up to 64 the loop over it is unrolled here, not left to the
  // compiler (larger ones stay loops: their unrolled programs compile slowly on SwiftShader).
  const unrollD4 = t.d4 === t.d4cap && t.d4 <= 16;
  const rowMax = (a: number) =>
    shuffle
      ? `if (use_shuffle) {
        ${unroll(Math.log2(ntx), (i) => `part_${a} = max(part_${a}, subgroupShuffleXor(part_${a}, ${ntx >> (i + 1)}u));`, '\n        ')}
      } else {
        row_part[(ty + ${a}u * NTY) * NTX + tx] = part_${a};
      }`
      : `row_part[(ty + ${a}u * NTY) * NTX + tx] = part_${a};`;
  return /* wgsl */ `
${commonWgsl()}
const BR: u32 = ${t.br}u;
const BC: u32 = ${t.bc}u;
const NTX: u32 = ${ntx}u;
const NTY: u32 = ${nty}u;
const WG: u32 = ${wg}u;
${d4Decl(t.d4, t.d4cap)}
const D4CAP: u32 = ${t.d4cap}u;
const QS: u32 = ${t.qStride}u;
const PS4: u32 = ${t.pStride}u;
const LOG2E: f32 = 1.4426950408889634;

// Two-dimensional, so a read at a constant column needs no index arithmetic of its own:
// the row's offset is computed (and bounds-clamped) once, the column folds into the load.
var<workgroup> q_tile: array<array<vec4<f32>, QS>, BR>;
var<workgroup> k_tile: array<array<vec4<f32>, QS>, BC>;
var<workgroup> v_tile: array<array<vec4<f32>, D4CAP>, BC>;
// P of the block, vec4s along the keys.
var<workgroup> p_tile: array<array<vec4<f32>, PS4>, BR>;
// The row max without shuffles (with them, P's tile sums the denominators at the end).
var<workgroup> row_part: array<f32, ${shuffle ? 1 : t.br * ntx}>;
var<workgroup> span_shared: array<u32, ${SPAN_FIELDS}>;
${shuffle ? 'var<workgroup> lanes_linear: atomic<u32>;\nvar<workgroup> lanes_linear_plain: u32;' : ''}

${loadRow}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${
    shuffle ? ', @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32' : ''
  }) {
  ${d4Init(t.d4, t.d4cap)}
  ${
    shuffle
      ? `// The row max merges the NTX threads of a row with subgroup shuffles when they are
  // consecutive lanes of one subgroup (lid = ty * NTX + tx maps onto lanes in order, as on
  // NVIDIA and SwiftShader). WebGPU does not promise that layout, so the workgroup checks it
  // and otherwise takes the workgroup-memory path.
  if (lid == 0u) { atomicStore(&lanes_linear, 1u); }
  workgroupBarrier();
  if (sg_lane != lid % sg_size || sg_size < NTX) { atomicStore(&lanes_linear, 0u); }
  workgroupBarrier();
  if (lid == 0u) { lanes_linear_plain = atomicLoad(&lanes_linear); }
  let use_shuffle = workgroupUniformLoad(&lanes_linear_plain) == 1u;`
      : 'let use_shuffle = false;'
  }
  // x is the head and y the query block, last block first: under a causal mask the last
  // blocks see the most keys, so they start first and the short ones fill in at the end.
  let seq = wid.z;
  let head = wid.x;
  if (lid < ${SPAN_FIELDS}u) { span_shared[lid] = spans[seq * ${SPAN_FIELDS}u + lid]; }
  let q_base_seq = workgroupUniformLoad(&span_shared[0]);
  let q_len = workgroupUniformLoad(&span_shared[1]);
  let k_base_seq = workgroupUniformLoad(&span_shared[2]);
  let k_len = workgroupUniformLoad(&span_shared[3]);
  let lse_base = workgroupUniformLoad(&span_shared[4]);
  let i0 = (nwg.y - 1u - wid.y) * BR;
  if (i0 >= q_len) { return; }
  let tx = lid % NTX;
  let ty = lid / NTX;
  let q_head = q_base_seq + head * u.q_head_stride;
  let k_head = k_base_seq + (head / u.group) * u.k_head_stride;
  let offset = i32(k_len) - i32(q_len);

  // The band of keys any row of this block can see; blocks outside it are skipped.
  let last_row = min(i0 + BR, q_len) - 1u;
  let key_lo = max(0, i32(i0) + offset - u.window_left);
  let key_hi = min(i32(k_len) - 1, i32(last_row) + offset + u.window_right);
  var block_lo = 0u;
  var block_hi = 0u;
  if (key_hi >= key_lo) {
    block_lo = u32(key_lo) / BC;
    block_hi = u32(key_hi) / BC + 1u;
  }
  // Keys every row of the block sees: blocks inside [full_lo, full_hi] need no mask.
  let full_lo = i32(last_row) + offset - u.window_left;
  let full_hi = min(i32(k_len) - 1, i32(i0) + offset + u.window_right);

  for (var idx = lid; idx < BR * D4CAP; idx += WG) {
    let r = idx / D4CAP;
    q_tile[r][idx % D4CAP] = load_q(q_head + (i0 + r) * u.q_token_stride, idx % D4CAP, i0 + r < q_len);
  }

  // This thread's rows of the block, key rows of K and vec4 columns of V and O.
  ${unroll(tr, (a) => `let row_${a} = ty + ${a}u * NTY;`, '\n  ')}
  ${unroll(tc, (c) => `let key_${c} = tx + ${c}u * NTX;`, '\n  ')}
  ${unroll(oc, (c) => `let col_${c} = tx + ${c}u * NTX;`, '\n  ')}
  ${unroll(tr, (a) => `let pos_${a} = i32(i0 + ty + ${a}u * NTY) + offset;\n  var m_${a} = NO_MAX;\n  var l_${a} = 0.0;`, '\n  ')}
  ${pairs(tr, oc, (a, c) => `var o_${a}_${c} = vec4<f32>(0.0);`, '\n  ')}

  // Registers holding the next key block (K and V rows, vec4 column idx % D4CAP).
  ${unroll(loads, (i) => `var kr_${i} = vec4<f32>(0.0);\n  var vr_${i} = vec4<f32>(0.0);`, '\n  ')}
  if (block_lo < block_hi) {
    let j0 = block_lo * BC;
    ${unroll(
      loads,
      (i) => `{
      let idx = lid + ${i * wg}u;
      let r = idx / D4CAP;
      let base = k_head + (j0 + r) * u.k_token_stride;
      let valid = idx < BC * D4CAP && j0 + r < k_len;
      kr_${i} = load_k(base, idx % D4CAP, valid);
      vr_${i} = load_v(base, idx % D4CAP, valid);
    }`,
      '\n    ',
    )}
  }

  for (var block = block_lo; block < block_hi; block++) {
    let j0 = block * BC;
    workgroupBarrier();
    ${unroll(
      loads,
      (i) => `{
      let idx = lid + ${i * wg}u;
      ${loads * wg > t.bc * t.d4cap ? 'if (idx < BC * D4CAP) {' : '{'}
        let r = idx / D4CAP;
        k_tile[r][idx % D4CAP] = kr_${i};
        v_tile[r][idx % D4CAP] = vr_${i};
      }
    }`,
      '\n    ',
    )}
    workgroupBarrier();
    ${pairs(tr, tc, (a, c) => `var s_${a}_${c} = 0.0;`, '\n    ')}
    ${
      unrollD4
        ? unroll(t.d4, (e) => `{\n      ${scoreStep(`${e}u`)}\n    }`, '\n    ')
        : `for (var e = 0u; e < D4; e++) {\n      ${scoreStep('e')}\n    }`
    }
    let unmasked = i32(j0) >= full_lo && i32(j0 + BC) - 1 <= full_hi;
    if (unmasked) {
      ${score(false)}
    } else {
      ${score(true)}
    }
    ${unroll(tr, (a) => `var part_${a} = NO_MAX;\n    ${unroll(tc, (c) => `part_${a} = max(part_${a}, s_${a}_${c});`, ' ')}\n    ${rowMax(a)}`, '\n    ')}
    if (!use_shuffle) {
      workgroupBarrier();
      ${unroll(tr, (a) => `for (var t = 0u; t < NTX; t++) { part_${a} = max(part_${a}, row_part[(ty + ${a}u * NTY) * NTX + t]); }`, '\n      ')}
    }
    ${unroll(
      tr,
      (a) => `{
      let m_new = max(m_${a}, part_${a});
      let alpha = select(exp2((m_${a} - m_new) * LOG2E), 1.0, m_${a} == m_new);
      let row = row_${a};
      var sum = 0.0;
      ${unroll(
        tc,
        (c) => `{
        let p = select(exp2((s_${a}_${c} - m_new) * LOG2E), 0.0, s_${a}_${c} == NO_MAX);
        ${ntx % 4 === 0 ? `p_tile[row][${c * (ntx / 4)}u + tx / 4u][tx % 4u] = p;` : `p_tile[row][key_${c} / 4u][key_${c} % 4u] = p;`}
        sum += p;
      }`,
        '\n      ',
      )}
      l_${a} = l_${a} * alpha + sum;
      m_${a} = m_new;
      ${unroll(oc, (c) => `o_${a}_${c} *= alpha;`, ' ')}
    }`,
      '\n    ',
    )}
    // The next key block, loaded now so its latency overlaps P.V; loading it after the
    // scores keeps its registers free while S = Q K^T is computed.
    if (block + 1u < block_hi) {
      let jn = j0 + BC;
      ${unroll(
        loads,
        (i) => `{
        let idx = lid + ${i * wg}u;
        let r = idx / D4CAP;
        let base = k_head + (jn + r) * u.k_token_stride;
        let valid = idx < BC * D4CAP && jn + r < k_len;
        kr_${i} = load_k(base, idx % D4CAP, valid);
        vr_${i} = load_v(base, idx % D4CAP, valid);
      }`,
        '\n      ',
      )}
    }
    workgroupBarrier();
    ${unroll(
      pVec,
      (j4) => `{
      ${unroll(tr, (a) => `let p_${a} = p_tile[row_${a}][${j4}u];`, '\n      ')}
      ${unroll(
        Math.min(4, t.bc),
        (jj) => `{
        ${unroll(oc, (c) => `let vv_${c} = v_tile[${j4 * 4 + jj}u][col_${c}];`, '\n        ')}
        ${pairs(tr, oc, (a, c) => `o_${a}_${c} = fma(vec4<f32>(p_${a}[${jj}]), vv_${c}, o_${a}_${c});`, '\n        ')}
      }`,
        '\n      ',
      )}
    }`,
      '\n    ',
    )}
  }

  // Sum the threads' partial denominators of each row.
  workgroupBarrier();
  ${unroll(tr, (a) => `p_tile[row_${a}][tx / 4u][tx % 4u] = l_${a};`, '\n  ')}
  workgroupBarrier();
  ${unroll(
    tr,
    (a) => `{
    let row = ty + ${a}u * NTY;
    let i = i0 + row;
    if (i < q_len) {
      var total = 0.0;
      for (var t = 0u; t < NTX; t++) { total += p_tile[row][t / 4u][t % 4u]; }
      let poisoned = !is_finite(total);
      let empty = total == 0.0;
      let inv = select(1.0 / total, 0.0, empty);
      let out_base = q_head + i * u.q_token_stride;
      ${unroll(
        oc,
        (c) => `{
        let c4 = tx + ${c}u * NTX;
        let val = select(o_${a}_${c} * inv, vec4<f32>(nan()), poisoned);
        ${
          vec4In
            ? 'if (c4 < D4) { out[(out_base >> 2u) + c4] = val; }'
            : `for (var comp = 0u; comp < 4u; comp++) {
          let e = c4 * 4u + comp;
          if (e < u.d) { out[out_base + e] = val[comp]; }
        }`
        }
      }`,
        '\n      ',
      )}
      if (tx == 0u) {
        lse[lse_base + head * u.lse_head_stride + i] =
          select(select(m_${a} + log(total), neg_inf(), empty), nan(), poisoned);
      }
    }
  }`,
    '\n  ',
  )}
}
`;
}

/** Workgroup size of the row-per-thread programs (split decode, backward passes). */
const ROW_WG = 64;

function splitForwardSource(d4Actual: number, wg: number): string {
  const d4 = capacity(d4Actual);
  return /* wgsl */ `
${commonWgsl()}
const WG: u32 = ${wg}u;
${d4Decl(d4Actual, d4)}
var<workgroup> span_shared: array<u32, ${SPAN_FIELDS}>;
var<workgroup> stats: array<vec2<f32>, ${wg}>;
var<workgroup> acc: array<vec4<f32>, ${wg * d4}>;


// One workgroup per (query row, head, sequence, split): threads take keys lid, lid + WG, ...
// of the split with the online rule; the workgroup merges its (m, l, o) and writes them.
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${d4Init(d4Actual, d4)}
  let seq = wid.z;
  let head = wid.y;
  let row_i = wid.x / u.splits;
  let split = wid.x % u.splits;
  if (lid < ${SPAN_FIELDS}u) { span_shared[lid] = spans[seq * ${SPAN_FIELDS}u + lid]; }
  let q_len = workgroupUniformLoad(&span_shared[1]);
  let q_base_seq = span_shared[0];
  let k_base_seq = span_shared[2];
  let k_len = span_shared[3];
  if (row_i >= q_len) { return; }
  let q_row = q_base_seq + head * u.q_head_stride + row_i * u.q_token_stride;
  let k_head = k_base_seq + (head / u.group) * u.k_head_stride;
  let pos = i32(row_i) + i32(k_len) - i32(q_len);
  let lo = max(0, pos - u.window_left);
  let hi = min(i32(k_len) - 1, pos + u.window_right);
  let per_split = (u.max_k + u.splits - 1u) / u.splits;
  let s_lo = max(lo, i32(split * per_split));
  let s_hi = min(hi, i32((split + 1u) * per_split) - 1);

  var qv: array<vec4<f32>, ${d4}>;
  for (var c = 0u; c < D4; c++) {
    var r = vec4<f32>(0.0);
    for (var comp = 0u; comp < 4u; comp++) {
      let e = c * 4u + comp;
      if (e < u.d) { r[comp] = q[q_row + e]; }
    }
    qv[c] = r;
  }
  var m = NO_MAX;
  var l = 0.0;
  var o: array<vec4<f32>, ${d4}>;
  for (var c = 0u; c < D4; c++) { o[c] = vec4<f32>(0.0); }
  for (var key = s_lo + i32(lid); key <= s_hi; key += i32(WG)) {
    let k_row = k_head + u32(key) * u.k_token_stride;
    var dotv = 0.0;
    for (var c = 0u; c < D4; c++) {
      var kk = vec4<f32>(0.0);
      for (var comp = 0u; comp < 4u; comp++) {
        let e = c * 4u + comp;
        if (e < u.d) { kk[comp] = k[k_row + e]; }
      }
      dotv += dot(qv[c], kk);
    }
    let z = finish_score(dotv, head, pos, key);
    if (poisons(z)) { l = pos_inf(); continue; }
    let m_new = max(m, z);
    let alpha = select(exp(m - m_new), 1.0, m == m_new);
    let pv = exp(z - m_new);
    l = l * alpha + pv;
    m = m_new;
    for (var c = 0u; c < D4; c++) {
      var vv = vec4<f32>(0.0);
      for (var comp = 0u; comp < 4u; comp++) {
        let e = c * 4u + comp;
        if (e < u.d) { vv[comp] = v[k_row + e]; }
      }
      o[c] = o[c] * alpha + pv * vv;
    }
  }
  stats[lid] = vec2<f32>(m, l);
  workgroupBarrier();
  var mm = NO_MAX;
  for (var t = 0u; t < WG; t++) { mm = max(mm, stats[t].x); }
  let my_scale = select(exp(m - mm), 1.0, m == mm);
  for (var c = 0u; c < D4; c++) { acc[lid * D4 + c] = o[c] * my_scale; }
  stats[lid] = vec2<f32>(m, l * my_scale);
  workgroupBarrier();
  let part = ((seq * u.heads + head) * u.max_q + row_i) * u.splits + split;
  if (lid == 0u) {
    var total = 0.0;
    for (var t = 0u; t < WG; t++) { total += stats[t].y; }
    part_stats[part] = vec2<f32>(mm, total);
  }
  for (var c = lid; c < D4; c += WG) {
    var sum = vec4<f32>(0.0);
    for (var t = 0u; t < WG; t++) { sum += acc[t * D4 + c]; }
    part_out[part * D4 + c] = sum;
  }
}
`;
}

function splitMergeSource(d4Actual: number): string {
  const d4 = capacity(d4Actual);
  return /* wgsl */ `
${commonWgsl()}
${d4Decl(d4Actual, d4)}
// One thread per (query row, head, sequence): merges the splits' (m, l, o) by the online rule.
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  ${d4Init(d4Actual, d4)}
  let seq = wid.z;
  let head = wid.y;
  let row_i = gid.x;
  let q_len = spans[seq * ${SPAN_FIELDS}u + 1u];
  if (row_i >= q_len) { return; }
  let first = ((seq * u.heads + head) * u.max_q + row_i) * u.splits;
  var m = NO_MAX;
  for (var s = 0u; s < u.splits; s++) { m = max(m, part_stats[first + s].x); }
  var total = 0.0;
  for (var s = 0u; s < u.splits; s++) {
    let st = part_stats[first + s];
    total += st.y * select(exp(st.x - m), 1.0, st.x == m);
  }
  let poisoned = !is_finite(total);
  let empty = total == 0.0;
  let inv = select(1.0 / total, 0.0, empty);
  let q_row = spans[seq * ${SPAN_FIELDS}u] + head * u.q_head_stride + row_i * u.q_token_stride;
  for (var c = 0u; c < D4; c++) {
    var sum = vec4<f32>(0.0);
    for (var s = 0u; s < u.splits; s++) {
      let st = part_stats[first + s];
      sum += part_out[(first + s) * D4 + c] * select(exp(st.x - m), 1.0, st.x == m);
    }
    let val = select(sum * inv, vec4<f32>(nan()), poisoned);
    for (var comp = 0u; comp < 4u; comp++) {
      let e = c * 4u + comp;
      if (e < u.d) { out[q_row + e] = val[comp]; }
    }
  }
  lse[spans[seq * ${SPAN_FIELDS}u + 4u] + head * u.lse_head_stride + row_i] =
    select(select(m + log(total), neg_inf(), empty), nan(), poisoned);
}
`;
}

function baseInputs(inputs: readonly Tensor[], spans: Tensor, vec4In: boolean): WgslBinding[] {
  const el = vec4In ? 'vec4<f32>' : undefined;
  return [
    { name: 'q', tensor: inputs[0]!, elementType: el },
    { name: 'k', tensor: inputs[1]!, elementType: el },
    { name: 'v', tensor: inputs[2]!, elementType: el },
    { name: 'spans', tensor: spans },
  ];
}

/** 'split' when every sequence has at most 4 query rows and some has many keys (decode). */
function useSplit(attrs: FlashAttentionAttrs): boolean {
  if (attrs.variant === 'split') return true;
  if (attrs.variant === 'tiled') return false;
  return attrs.layout.maxQLen <= 4 && attrs.layout.maxKLen >= 256;
}

async function writeForward(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: FlashAttentionAttrs,
  { out, lse }: FlashAttentionOutputs,
): Promise<void> {
  const layout = attrs.layout;
  const sequences = layout.sequences.length;
  if (out.size === 0 && lse.size === 0) return;
  const spans = spanBinding(backend, attrs);
  try {
    if (layout.maxQLen === 0 || sequences === 0) {
      // No attention rows; padded rows still need their zeros and -inf.
      await writeEmptyRows(backend, attrs, spans, out, lse);
      return;
    }
    if (layout.form === 'padded' && layout.sequences.some((s) => s.qLen < layout.qShape[2]!)) {
      await writeEmptyRows(backend, attrs, spans, out, lse);
    }
    if (useSplit(attrs)) {
      await runSplit(backend, inputs, attrs, spans, out, lse);
      return;
    }
    const t = chooseTile(backend, layout.d, attrs.tile);
    // vec4 loads only where the head dim fills the tile's capacity (d = 64 on the usual
    // tiles): every other head dim shares one program with scalar loads, so few compile.
    const vec4In = layout.d % 4 === 0 && t.d4 === t.d4cap;
    // Subgroup shuffles for the row max where a row's NTX threads fit in the smallest subgroup.
    const shuffle =
      attrs.subgroups && backend.features.has('subgroups') && backend.limits.subgroupSize >= t.ntx;
    await backend.run({
      kind: 'webgpu',
      name: 'flash_attention_forward',
      cacheKey: `tile${t.br}x${t.bc}x${t.tr}x${t.tc}|${d4Key(t.d4, t.d4cap)}|vec4${vec4In ? 1 : 0}|sg${shuffle ? 1 : 0}`,
      inputs: baseInputs(inputs, spans, vec4In),
      outputs: [
        { name: 'out', tensor: out, ...(vec4In ? { elementType: 'vec4<f32>' } : {}) },
        { name: 'lse', tensor: lse },
      ],
      uniforms: commonUniforms(attrs),
      source: tiledForwardSource(t, vec4In, shuffle),
      ...(shuffle ? { enables: ['subgroups'] } : {}),
      // Heads along x and query blocks along y (the program takes the last block first).
      dispatch: [layout.heads, Math.ceil(layout.maxQLen / t.br), sequences],
    });
  } finally {
    spans.dispose();
  }
}

async function runSplit(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: FlashAttentionAttrs,
  spans: Tensor,
  out: Tensor,
  lse: Tensor,
): Promise<void> {
  const layout = attrs.layout;
  const d4 = Math.ceil(layout.d / 4);
  const wg = Math.min(64, backend.limits.maxWorkgroupInvocations);
  if (wg * d4 * 16 + wg * 8 + 64 > backend.limits.maxWorkgroupStorageSize) {
    throw new DeviceLimitError(
      `head dim ${layout.d} (split decode)`,
      'maxComputeWorkgroupStorageSize (bytes)',
      wg * d4 * 16 + wg * 8,
      backend.limits.maxWorkgroupStorageSize,
    );
  }
  // Enough splits that the GPU has work for every multiprocessor, each split at least 4 * wg keys.
  const splits = Math.max(1, Math.min(64, Math.ceil(layout.maxKLen / (4 * wg))));
  const sequences = layout.sequences.length;
  const rows = sequences * layout.heads * layout.maxQLen * splits;
  const partStats = backend.empty([rows * 2]);
  const partOut = backend.empty([rows * d4 * 4]);
  try {
    const uniforms: WgslUniform[] = [
      ...commonUniforms(attrs),
      { name: 'splits', type: 'u32', value: splits },
      { name: 'max_q', type: 'u32', value: layout.maxQLen },
      { name: 'max_k', type: 'u32', value: layout.maxKLen },
    ];
    await backend.run({
      kind: 'webgpu',
      name: 'flash_attention_split',
      cacheKey: `wg${wg}|${d4Key(d4, capacity(d4))}`,
      inputs: baseInputs(inputs, spans, false),
      outputs: [
        { name: 'part_stats', tensor: partStats, elementType: 'vec2<f32>' },
        { name: 'part_out', tensor: partOut, elementType: 'vec4<f32>' },
      ],
      uniforms,
      source: splitForwardSource(d4, wg),
      dispatch: [layout.maxQLen * splits, layout.heads, sequences],
    });
    const mergeInputs: WgslBinding[] = [
      { name: 'spans', tensor: spans },
      { name: 'part_stats', tensor: partStats, elementType: 'vec2<f32>' },
      { name: 'part_out', tensor: partOut, elementType: 'vec4<f32>' },
    ];
    await backend.run({
      kind: 'webgpu',
      name: 'flash_attention_split_merge',
      cacheKey: d4Key(d4, capacity(d4)),
      inputs: mergeInputs,
      outputs: [
        { name: 'out', tensor: out },
        { name: 'lse', tensor: lse },
      ],
      uniforms,
      source: splitMergeSource(d4),
      dispatch: [Math.ceil(layout.maxQLen / ROW_WG), layout.heads, sequences],
    });
  } finally {
    partStats.dispose();
    partOut.dispose();
  }
}

/**
 * Padded form: rows past a sequence's query length are not attention rows; they get out 0
 * and lse -Infinity (one thread per element of out, then of lse).
 */
async function writeEmptyRows(
  backend: Backend,
  attrs: FlashAttentionAttrs,
  spans: Tensor,
  out: Tensor,
  lse: Tensor,
): Promise<void> {
  const layout = attrs.layout;
  const nq = layout.form === 'padded' ? layout.qShape[2]! : 0;
  const source = /* wgsl */ `
var<private> NEG_INF_BITS: u32 = 0xff800000u;
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${ROW_WG}u;
  if (i < u.out_count) {
    let seq = i / (u.heads * u.nq * u.d);
    let token = (i / u.d) % u.nq;
    if (u.padded == 0u || token >= spans[seq * ${SPAN_FIELDS}u + 1u]) { out[i] = 0.0; }
  }
  if (i < u.lse_count) {
    let seq = i / (u.heads * u.nq);
    let token = i % u.nq;
    if (u.padded == 0u || token >= spans[seq * ${SPAN_FIELDS}u + 1u]) { lse[i] = bitcast<f32>(NEG_INF_BITS); }
  }
}
`;
  const count = Math.max(out.size, lse.size);
  const groups = Math.ceil(count / ROW_WG);
  const y = Math.ceil(groups / 65535);
  await backend.run({
    kind: 'webgpu',
    name: 'flash_attention_empty_rows',
    cacheKey: '',
    inputs: [{ name: 'spans', tensor: spans }],
    outputs: [
      { name: 'out', tensor: out },
      { name: 'lse', tensor: lse },
    ],
    uniforms: [
      { name: 'out_count', type: 'u32', value: out.size },
      { name: 'lse_count', type: 'u32', value: lse.size },
      { name: 'heads', type: 'u32', value: layout.heads },
      { name: 'nq', type: 'u32', value: Math.max(nq, 1) },
      { name: 'd', type: 'u32', value: layout.d },
      { name: 'padded', type: 'u32', value: layout.form === 'padded' ? 1 : 0 },
    ],
    source,
    dispatch: [Math.ceil(groups / y), y, 1],
  });
}

export const flashAttentionWebGpuKernel = flashAttentionKernel('webgpu', writeForward);

// ---------------------------------------------------------------------------------------
// Backward

/** Binding numbers read4 takes: 0 q, 1 k, 2 v, 3 o_in, 4 d_out (only those a pass binds). */
const READ4_NAMES = ['q', 'k', 'v', 'o_in', 'd_out'] as const;

function backwardCommon(d4: number, bound: readonly (typeof READ4_NAMES)[number][]): string {
  const cap = capacity(d4);
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

function backwardDqSource(d4: number): string {
  return /* wgsl */ `
${backwardCommon(d4, ['q', 'k', 'v', 'd_out'])}
// One thread per query row: dq_i = sum_j dS_ij k_j over its visible keys.
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  ${d4Init(d4, capacity(d4))}
  let seq = wid.z;
  let head = wid.y;
  let i = gid.x;
  let q_len = spans[seq * ${SPAN_FIELDS}u + 1u];
  if (i >= q_len) { return; }
  let k_len = spans[seq * ${SPAN_FIELDS}u + 3u];
  let row = spans[seq * ${SPAN_FIELDS}u] + head * u.q_head_stride + i * u.q_token_stride;
  let k_head = spans[seq * ${SPAN_FIELDS}u + 2u] + (head / u.group) * u.k_head_stride;
  let stat = spans[seq * ${SPAN_FIELDS}u + 4u] + head * u.lse_head_stride + i;
  let row_lse = stats[stat].x;
  let row_delta = stats[stat].y;
  var qv: array<vec4<f32>, ${capacity(d4)}>;
  var gv: array<vec4<f32>, ${capacity(d4)}>;
  var acc: array<vec4<f32>, ${capacity(d4)}>;
  for (var c = 0u; c < D4; c++) {
    qv[c] = read4(0u, row, c);
    gv[c] = read4(4u, row, c);
    acc[c] = vec4<f32>(0.0);
  }
  let pos = i32(i) + i32(k_len) - i32(q_len);
  let lo = max(0, pos - u.window_left);
  let hi = min(i32(k_len) - 1, pos + u.window_right);
  if (!is_neg_inf(row_lse)) {
    for (var key = lo; key <= hi; key++) {
      let k_row = k_head + u32(key) * u.k_token_stride;
      var qk = 0.0;
      var dp = 0.0;
      for (var c = 0u; c < D4; c++) {
        qk += dot(qv[c], read4(1u, k_row, c));
        dp += dot(gv[c], read4(2u, k_row, c));
      }
      let p = exp(finish_score(qk, head, pos, key) - row_lse);
      let ds = p * (dp - row_delta) * grad_factor(qk);
      for (var c = 0u; c < D4; c++) { acc[c] += ds * read4(1u, k_row, c); }
    }
  }
  for (var c = 0u; c < D4; c++) {
    for (var comp = 0u; comp < 4u; comp++) {
      let e = c * 4u + comp;
      if (e < u.d) { dq[row + e] = acc[c][comp]; }
    }
  }
}
`;
}

function backwardDkvSource(d4: number): string {
  return /* wgsl */ `
${backwardCommon(d4, ['q', 'k', 'v', 'd_out'])}
// One thread per key row of a kv head: dk_j and dv_j over the group's query heads and the
// query rows that see key j (the band j - right <= p <= j + left).
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  ${d4Init(d4, capacity(d4))}
  let seq = wid.z;
  let kv_head = wid.y;
  let key = gid.x;
  let k_len = spans[seq * ${SPAN_FIELDS}u + 3u];
  if (key >= k_len) { return; }
  let q_len = spans[seq * ${SPAN_FIELDS}u + 1u];
  let k_row = spans[seq * ${SPAN_FIELDS}u + 2u] + kv_head * u.k_head_stride + key * u.k_token_stride;
  var kv: array<vec4<f32>, ${capacity(d4)}>;
  var vv: array<vec4<f32>, ${capacity(d4)}>;
  var dk_acc: array<vec4<f32>, ${capacity(d4)}>;
  var dv_acc: array<vec4<f32>, ${capacity(d4)}>;
  for (var c = 0u; c < D4; c++) {
    kv[c] = read4(1u, k_row, c);
    vv[c] = read4(2u, k_row, c);
    dk_acc[c] = vec4<f32>(0.0);
    dv_acc[c] = vec4<f32>(0.0);
  }
  let offset = i32(k_len) - i32(q_len);
  // Query i sits at p = i + offset and sees key j when p - left <= j <= p + right.
  let i_lo = max(0, i32(key) - u.window_right - offset);
  let i_hi = min(i32(q_len) - 1, i32(key) + u.window_left - offset);
  for (var g = 0u; g < u.group; g++) {
    let head = kv_head * u.group + g;
    let q_head = spans[seq * ${SPAN_FIELDS}u] + head * u.q_head_stride;
    let stat_base = spans[seq * ${SPAN_FIELDS}u + 4u] + head * u.lse_head_stride;
    for (var i = i_lo; i <= i_hi; i++) {
      let row_stats = stats[stat_base + u32(i)];
      let row_lse = row_stats.x;
      if (is_neg_inf(row_lse)) { continue; }
      let row = q_head + u32(i) * u.q_token_stride;
      var qk = 0.0;
      var dp = 0.0;
      for (var c = 0u; c < D4; c++) {
        qk += dot(read4(0u, row, c), kv[c]);
        dp += dot(read4(4u, row, c), vv[c]);
      }
      let p = exp(finish_score(qk, head, i + offset, i32(key)) - row_lse);
      let ds = p * (dp - row_stats.y) * grad_factor(qk);
      for (var c = 0u; c < D4; c++) {
        dk_acc[c] += ds * read4(0u, row, c);
        dv_acc[c] += p * read4(4u, row, c);
      }
    }
  }
  for (var c = 0u; c < D4; c++) {
    for (var comp = 0u; comp < 4u; comp++) {
      let e = c * 4u + comp;
      if (e < u.d) {
        dk[k_row + e] = dk_acc[c][comp];
        dv[k_row + e] = dv_acc[c][comp];
      }
    }
  }
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
    await backend.run({
      kind: 'webgpu',
      name: 'flash_attention_backward_dkdv',
      cacheKey: key,
      inputs: operands,
      outputs: [
        { name: 'dk', tensor: dk },
        { name: 'dv', tensor: dv },
      ],
      uniforms,
      source: backwardDkvSource(d4),
      dispatch: [Math.ceil(layout.maxKLen / ROW_WG), layout.kvHeads, sequences],
    });
    await backend.run({
      kind: 'webgpu',
      name: 'flash_attention_backward_dq',
      cacheKey: key,
      inputs: operands,
      outputs: [{ name: 'dq', tensor: dq }],
      uniforms,
      source: backwardDqSource(d4),
      dispatch: [Math.ceil(layout.maxQLen / ROW_WG), layout.heads, sequences],
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
