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
 * Plain attention (no softcap, no ALiBi) stores Q multiplied by scale * log2(e): scores
 * leave the dot product ready for exp2, and in blocks without a mask one sum of a thread's
 * scores replaces the per-score NaN / infinity test (the test runs only when the sum is
 * not finite).
 * Memory beyond inputs and outputs: none (lse is an output).
 *
 * Forward, 'split' (decode, few query rows): one workgroup per (query row, head, sequence,
 * key split); each thread folds its keys with the online rule, the workgroup merges (m, l, o)
 * partials, and a second program merges the splits. Extra memory O(rows * splits * d).
 *
 * Forward, 'subgroup-matrix' (opt-in, Dawn's chromium-experimental-subgroup-matrix): the
 * tiled loop with S = Q K^T and P V as subgroup-matrix products (f32 or f16 inputs, f32
 * results) through workgroup memory, the online softmax in scalar code between them.
 *
 * Special values: a NaN or +Infinity score poisons its row (written as NaN); a row with no
 * visible key writes 0 and logsumexp -Infinity.
 */
import {
  ArgumentError,
  type Backend,
  DeviceLimitError,
  type Tensor,
  type WgslBinding,
  type WgslUniform,
} from '@longseq/backend';
import {
  type FlashAttentionAttrs,
  type FlashAttentionOutputs,
  type FlashTile,
  flashAttentionKernel,
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

interface ForwardProgramOptions {
  /**
   * No softcap and no ALiBi: Q is stored pre-multiplied by scale * log2(e), so scores come out
   * of the dot product in base-2 units and need neither finish_score nor a multiply before exp2.
   */
  readonly plain: boolean;
}

/**
 * The tiled forward. Thread (ty, tx) owns rows ty + a * NTY (a < TR) of the block, score
 * columns tx + c * NTX (c < TC) and output vec4 columns tx + c * NTX (c < OC). Strided
 * rows and columns keep the workgroup-memory reads of a warp on distinct banks (Q and K
 * tiles have an odd stride in vec4s), and the micro-tile is unrolled in the generated code
 * so it stays in registers. The next key block is loaded from global memory into registers
 * while the current one is computed (2 barriers per block, a third for P).
 */
function tiledForwardSource(
  t: TileShape,
  vec4In: boolean,
  shuffle: boolean,
  opts: ForwardProgramOptions,
): string {
  const { plain } = opts;
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
        var z = ${plain ? `s_${a}_${c}` : `finish_score(s_${a}_${c}, head, pos_${a}, key)`};
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
// Scores are kept in natural units (exp2 of the difference times log2 e) or, for plain
// attention, already in base-2 units (Q carries the factor).
const EXP2_UNIT: f32 = ${plain ? '1.0' : 'LOG2E'};
const UNIT_TO_NATS: f32 = ${plain ? '0.6931471805599453' : '1.0'};

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
    q_tile[r][idx % D4CAP] = load_q(q_head + (i0 + r) * u.q_token_stride, idx % D4CAP, i0 + r < q_len)${plain ? ' * (u.scale * LOG2E)' : ''};
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
      ${
        plain
          ? `// Plain scores need only the poison test; one sum tells whether any is NaN or infinite.
      let probe = ${pairs(tr, tc, (a, c) => `s_${a}_${c}`, ' + ')};
      if (!is_finite(probe)) {
        ${score(false)}
      }`
          : score(false)
      }
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
      let alpha = select(exp2((m_${a} - m_new) * EXP2_UNIT), 1.0, m_${a} == m_new);
      let row = row_${a};
      var sum = 0.0;
      ${unroll(
        tc,
        (c) => `{
        let p = select(exp2((s_${a}_${c} - m_new) * EXP2_UNIT), 0.0, s_${a}_${c} == NO_MAX);
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
          select(select(m_${a} * UNIT_TO_NATS + log(total), neg_inf(), empty), nan(), poisoned);
      }
    }
  }`,
    '\n  ',
  )}
}
`;
}

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
    if (attrs.variant === 'subgroup-matrix') {
      await runMatrix(backend, inputs, attrs, spans, out, lse);
      return;
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
    // Plain attention (no softcap, no ALiBi) takes the pre-scaled program: about 8% faster
    // on the H100 (2.88 against 3.15 ms at batch x heads 16, N 4096, d 64).
    const opts: ForwardProgramOptions = { plain: !(attrs.softcap > 0) && !attrs.alibiSlopes };
    await backend.run({
      kind: 'webgpu',
      name: 'flash_attention_forward',
      cacheKey: `tile${t.br}x${t.bc}x${t.tr}x${t.tc}|${d4Key(t.d4, t.d4cap)}|vec4${vec4In ? 1 : 0}|sg${shuffle ? 1 : 0}|plain${opts.plain ? 1 : 0}`,
      inputs: baseInputs(inputs, spans, vec4In),
      outputs: [
        { name: 'out', tensor: out, ...(vec4In ? { elementType: 'vec4<f32>' } : {}) },
        { name: 'lse', tensor: lse },
      ],
      uniforms: commonUniforms(attrs),
      source: tiledForwardSource(t, vec4In, shuffle, opts),
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

// ---------------------------------------------------------------------------------------
// Forward, 'subgroup-matrix' (opt-in): the two matrix products on the GPU's matrix units
// through Dawn's chromium-experimental-subgroup-matrix.

/** The WebGPU feature (and, with underscores, the WGSL extension) the variant needs. */
export const SUBGROUP_MATRIX_FEATURE = 'chromium-experimental-subgroup-matrix';

/** One matrix-multiply shape the adapter offers (GPUSubgroupMatrixConfig). */
export interface SubgroupMatrixConfig {
  readonly componentType: string;
  readonly resultComponentType: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
}

/** The configurations the backend's device offers; empty without the feature (or off WebGPU). */
export function subgroupMatrixConfigs(backend: Backend): SubgroupMatrixConfig[] {
  if (backend.kind !== 'webgpu') return [];
  const device = (backend as unknown as { device?: GPUDevice }).device;
  if (!device?.features?.has(SUBGROUP_MATRIX_FEATURE)) return [];
  const info = (
    device as unknown as { adapterInfo?: { subgroupMatrixConfigs?: Iterable<SubgroupMatrixConfig> } }
  ).adapterInfo;
  return Array.from(info?.subgroupMatrixConfigs ?? [], (c) => ({
    componentType: c.componentType,
    resultComponentType: c.resultComponentType,
    M: c.M,
    N: c.N,
    K: c.K,
  }));
}

/**
 * The configuration the variant uses: f32 inputs if offered, else f16 inputs (with the
 * shader-f16 feature); an f32 result; M, N, K each 8 or 16. Undefined when none fits.
 */
export function pickSubgroupMatrixConfig(backend: Backend): SubgroupMatrixConfig | undefined {
  const usable = subgroupMatrixConfigs(backend).filter(
    (c) =>
      c.resultComponentType === 'f32' &&
      [c.M, c.N, c.K].every((x) => x === 8 || x === 16) &&
      (c.componentType === 'f32' || (c.componentType === 'f16' && hasFeature(backend, 'shader-f16'))),
  );
  const score = (c: SubgroupMatrixConfig) => (c.componentType === 'f32' ? 1000 : 0) + c.M * c.N * c.K;
  return usable.sort((a, b) => score(b) - score(a))[0];
}

function hasFeature(backend: Backend, feature: string): boolean {
  const device = (backend as unknown as { device?: GPUDevice }).device;
  return device?.features?.has(feature) === true;
}

interface MatrixTile {
  readonly cfg: SubgroupMatrixConfig;
  readonly br: number;
  readonly bc: number;
  /** Head dim padded to 16, and the padded strides (elements) of the tiles. */
  readonly dp: number;
  readonly qs: number;
  readonly ps: number;
  readonly fs: number;
  readonly wg: number;
  /** Threads per query row in the scalar (softmax) stage. */
  readonly tpr: number;
  /** The device's subgroup size: subgroup sg of the workgroup is invocations sg * sgs ... */
  readonly sgs: number;
  readonly bytes: number;
}

function matrixTile(cfg: SubgroupMatrixConfig, d: number, maxBytes: number, sgs: number): MatrixTile {
  const el = cfg.componentType === 'f16' ? 2 : 4;
  const pad = 16 / el;
  const dp = Math.ceil(d / 16) * 16;
  const bc = 32;
  const wg = 128;
  let best: MatrixTile | undefined;
  for (const br of [64, 32, 16]) {
    const qs = dp + pad;
    const ps = bc + pad;
    const fs = Math.max(bc, dp) + 4;
    const bytes = el * (br * qs + 2 * bc * qs + br * ps) + 4 * br * fs + 64;
    best = { cfg, br, bc, dp, qs, ps, fs, wg, tpr: wg / br, sgs, bytes };
    if (bytes <= maxBytes) break;
  }
  return best!;
}

function matrixForwardSource(t: MatrixTile): string {
  const { cfg, br, bc, dp, tpr } = t;
  const T = cfg.componentType;
  const { M, N, K } = cfg;
  const left = `subgroup_matrix_left<${T}, ${K}, ${M}>`;
  const right = `subgroup_matrix_right<${T}, ${N}, ${K}>`;
  const result = `subgroup_matrix_result<f32, ${N}, ${M}>`;
  const cpt = bc / tpr;
  const oc = dp / tpr;
  const fsStride = (cols: number) => cols + 4;
  const nsg = t.wg / t.sgs;
  // Tiles of a product, dealt to the subgroups with a workgroup-uniform trip count (the
  // matrices' control flow must be uniform; only their offsets depend on the subgroup).
  const tiles = (count: number, body: string) => `for (var it = 0u; it < ${Math.ceil(count / nsg)}u; it++) {
      let tile = sg + it * ${nsg}u;
      ${count % nsg === 0 ? '{' : `if (tile < ${count}u) {`}
      ${body}
      }
    }`;
  return /* wgsl */ `
${commonWgsl()}
const BR: u32 = ${br}u;
const BC: u32 = ${bc}u;
const DP: u32 = ${dp}u;
const QS: u32 = ${t.qs}u;
const PS: u32 = ${t.ps}u;
const SS: u32 = ${fsStride(bc)}u;
const OS: u32 = ${fsStride(dp)}u;
const WG: u32 = ${t.wg}u;
const TPR: u32 = ${tpr}u;
const LOG2E: f32 = 1.4426950408889634;

// Q of the block, K and V of the key block ([row][DP], padded rows), P ([BR][BC]) in the
// matrix input type; f_s holds S, then P V, in f32.
var<workgroup> q_s: array<${T}, ${br * t.qs}>;
var<workgroup> k_s: array<${T}, ${bc * t.qs}>;
var<workgroup> v_s: array<${T}, ${bc * t.qs}>;
var<workgroup> p_s: array<${T}, ${br * t.ps}>;
var<workgroup> f_s: array<f32, ${br * t.fs}>;
var<workgroup> span_shared: array<u32, ${SPAN_FIELDS}>;

// Matrix tiles are dealt to the subgroups (subgroup sg takes tiles sg, sg + NSG, ...): their
// offsets are subgroup-uniform, not workgroup-uniform, values.
@diagnostic(off, chromium_experimental.subgroup_matrix_uniformity)
@compute @workgroup_size(${t.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
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
  let q_head = q_base_seq + head * u.q_head_stride;
  let k_head = k_base_seq + (head / u.group) * u.k_head_stride;
  let offset = i32(k_len) - i32(q_len);
  let last_row = min(i0 + BR, q_len) - 1u;
  let key_lo = max(0, i32(i0) + offset - u.window_left);
  let key_hi = min(i32(k_len) - 1, i32(last_row) + offset + u.window_right);
  var block_lo = 0u;
  var block_hi = 0u;
  if (key_hi >= key_lo) {
    block_lo = u32(key_lo) / BC;
    block_hi = u32(key_hi) / BC + 1u;
  }
  let sg = lid / ${t.sgs}u;

  for (var idx = lid; idx < BR * DP; idx += WG) {
    let r = idx / DP;
    let e = idx % DP;
    var x = 0.0;
    if (i0 + r < q_len && e < u.d) { x = q[q_head + (i0 + r) * u.q_token_stride + e]; }
    q_s[r * QS + e] = ${T}(x);
  }

  // Scalar stage: thread (r, sub) owns row r, score columns sub + k * TPR, output columns sub + k * TPR.
  let r = lid / TPR;
  let sub = lid % TPR;
  let pos = i32(i0 + r) + offset;
  var m = NO_MAX;
  var l = 0.0;
  ${unroll(oc, (k) => `var o_${k} = 0.0;`, ' ')}

  for (var block = block_lo; block < block_hi; block++) {
    let j0 = block * BC;
    workgroupBarrier();
    for (var idx = lid; idx < BC * DP; idx += WG) {
      let j = idx / DP;
      let e = idx % DP;
      var kx = 0.0;
      var vx = 0.0;
      if (j0 + j < k_len && e < u.d) {
        let at = k_head + (j0 + j) * u.k_token_stride + e;
        kx = k[at];
        vx = v[at];
      }
      k_s[j * QS + e] = ${T}(kx);
      v_s[j * QS + e] = ${T}(vx);
    }
    workgroupBarrier();
    // S = Q K^T: K^T read column-major from the row-major K tile.
    ${tiles(
      (br / M) * (bc / N),
      `let tm = tile / ${bc / N}u;
      let tn = tile % ${bc / N}u;
      var acc = ${result}();
      for (var e = 0u; e < DP; e += ${K}u) {
        let a = subgroupMatrixLoad<${left}>(&q_s, tm * ${M}u * QS + e, false, QS);
        let b = subgroupMatrixLoad<${right}>(&k_s, tn * ${N}u * QS + e, true, QS);
        acc = subgroupMatrixMultiplyAccumulate(a, b, acc);
      }
      subgroupMatrixStore(&f_s, tm * ${M}u * SS + tn * ${N}u, acc, false, SS);`,
    )}
    workgroupBarrier();
    var part = NO_MAX;
    ${unroll(
      cpt,
      (k) => `var s_${k} = 0.0;
    {
      let c = sub + ${k}u * TPR;
      let key = i32(j0 + c);
      var z = finish_score(f_s[r * SS + c], head, pos, key);
      if (!(i0 + r < q_len && key < i32(k_len) && key >= pos - u.window_left && key <= pos + u.window_right)) {
        z = NO_MAX;
      } else if (poisons(z)) { l = pos_inf(); z = NO_MAX; }
      s_${k} = z;
      part = max(part, z);
    }`,
      '\n    ',
    )}
    ${unroll(Math.log2(tpr), (i) => `part = max(part, subgroupShuffleXor(part, ${tpr >> (i + 1)}u));`, '\n    ')}
    let m_new = max(m, part);
    let alpha = select(exp2((m - m_new) * LOG2E), 1.0, m == m_new);
    var sum = 0.0;
    ${unroll(
      cpt,
      (k) => `{
      let p = ${T}(select(exp2((s_${k} - m_new) * LOG2E), 0.0, s_${k} == NO_MAX));
      p_s[r * PS + sub + ${k}u * TPR] = p;
      sum += f32(p);
    }`,
      '\n    ',
    )}
    l = l * alpha + sum;
    m = m_new;
    workgroupBarrier();
    // P V into f_s.
    ${tiles(
      (br / M) * (dp / N),
      `let tm = tile / ${dp / N}u;
      let tn = tile % ${dp / N}u;
      var acc = ${result}();
      for (var c0 = 0u; c0 < BC; c0 += ${K}u) {
        let a = subgroupMatrixLoad<${left}>(&p_s, tm * ${M}u * PS + c0, false, PS);
        let b = subgroupMatrixLoad<${right}>(&v_s, c0 * QS + tn * ${N}u, false, QS);
        acc = subgroupMatrixMultiplyAccumulate(a, b, acc);
      }
      subgroupMatrixStore(&f_s, tm * ${M}u * OS + tn * ${N}u, acc, false, OS);`,
    )}
    workgroupBarrier();
    ${unroll(oc, (k) => `o_${k} = fma(o_${k}, alpha, f_s[r * OS + sub + ${k}u * TPR]);`, '\n    ')}
  }

  ${unroll(Math.log2(tpr), (i) => `l += subgroupShuffleXor(l, ${tpr >> (i + 1)}u);`, '\n  ')}
  let i = i0 + r;
  if (i < q_len) {
    let poisoned = !is_finite(l);
    let empty = l == 0.0;
    let inv = select(1.0 / l, 0.0, empty);
    let out_base = q_head + i * u.q_token_stride;
    ${unroll(
      oc,
      (k) => `{
      let e = sub + ${k}u * TPR;
      if (e < u.d) { out[out_base + e] = select(o_${k} * inv, nan(), poisoned); }
    }`,
      '\n    ',
    )}
    if (sub == 0u) {
      lse[lse_base + head * u.lse_head_stride + i] = select(select(m + log(l), neg_inf(), empty), nan(), poisoned);
    }
  }
}
`;
}

async function runMatrix(
  backend: Backend,
  inputs: readonly Tensor[],
  attrs: FlashAttentionAttrs,
  spans: Tensor,
  out: Tensor,
  lse: Tensor,
): Promise<void> {
  const layout = attrs.layout;
  const cfg = pickSubgroupMatrixConfig(backend);
  if (!cfg) throw subgroupMatrixUnavailable(backend);
  const t = matrixTile(
    cfg,
    layout.d,
    backend.limits.maxWorkgroupStorageSize,
    backend.limits.subgroupSize || 32,
  );
  if (t.bytes > backend.limits.maxWorkgroupStorageSize) {
    throw new DeviceLimitError(
      `head dim ${layout.d} (subgroup-matrix)`,
      'maxComputeWorkgroupStorageSize (bytes)',
      t.bytes,
      backend.limits.maxWorkgroupStorageSize,
    );
  }
  await backend.run({
    kind: 'webgpu',
    name: 'flash_attention_forward_matrix',
    cacheKey: `${cfg.componentType}${cfg.M}x${cfg.N}x${cfg.K}|br${t.br}|dp${t.dp}|sg${t.sgs}`,
    inputs: baseInputs(inputs, spans, false),
    outputs: [
      { name: 'out', tensor: out },
      { name: 'lse', tensor: lse },
    ],
    uniforms: commonUniforms(attrs),
    source: matrixForwardSource(t),
    enables: [
      'subgroups',
      ...(cfg.componentType === 'f16' ? ['f16'] : []),
      'chromium_experimental_subgroup_matrix',
    ],
    dispatch: [layout.heads, Math.ceil(layout.maxQLen / t.br), layout.sequences.length],
  });
}

/** The typed error for `variant: 'subgroup-matrix'` where the device cannot run it. */
export function subgroupMatrixUnavailable(backend: Backend): ArgumentError {
  const configs = subgroupMatrixConfigs(backend);
  const why =
    backend.kind !== 'webgpu'
      ? `the ${backend.name} backend has no subgroup matrices`
      : configs.length === 0
        ? `the device lacks the WebGPU feature '${SUBGROUP_MATRIX_FEATURE}' (Dawn: the toggle 'enable-dawn-features=allow_unsafe_apis' and the feature requested at device creation, e.g. LONGSEQ_WEBGPU_SUBGROUP_MATRIX=1)`
        : `none of the device's configurations (${configs.map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`).join(', ')}) has f32 or f16 inputs, an f32 result and M, N, K of 8 or 16`;
  return new ArgumentError('options.variant', `'auto', 'tiled' or 'split' (${why})`, 'subgroup-matrix');
}

export const flashAttentionWebGpuKernel = flashAttentionKernel('webgpu', writeForward);
