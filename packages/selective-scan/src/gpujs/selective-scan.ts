/**
 * gpu.js programs for the selective scan (see ../reference.ts for the semantics).
 *
 * A gpu.js kernel returns one value per thread and has no workgroup memory, so a thread
 * cannot walk through time writing every y_t. The scan is cut into chunks of CHUNK steps
 * and done in passes, each one value per thread:
 *
 *   1. scan_chunk_pairs   thread per (batch, channel, state, chunk, a|b): the chunk's steps
 *                         reduced to one pair (a, b) of h -> a h + b (a local sequential scan)
 *   2. carries            the state entering each chunk, from the initial state:
 *                           'parallel':   Hillis-Steele over chunks, ceil(log2 chunks) passes
 *                                         of (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2),
 *                                         then scan_chunk_carry applies the prefix to h0
 *                           'sequential': scan_chunk_carry_fold, thread per chunk folding
 *                                         the pairs before it in order (O(chunks) each)
 *   3. scan_output        thread per (batch, channel, step): for each state, replay the
 *                         steps of its chunk from the carry up to the step, sum C h, add
 *                         D u, gate with silu(z)
 *   4. scan_last_state    thread per (batch, channel, state): replay the last chunk
 *
 * Memory beyond the inputs and outputs: pairs and carries, 3 floats per (batch, channel,
 * state, chunk). Work: about CHUNK / 2 times the sequential scan's exps in pass 3, the price
 * of one output per thread. Index arithmetic is float32 in gpu.js' GL and WebGPU modes, so
 * integer divisions are taken as floor((i + 0.5) / m), exact for i < 2^22, and loops count
 * from 0 (gpu.js' WebGPU mode types a counter that starts from an expression as f32).
 */
import {
  type Backend,
  checkBindingSize,
  GPUJS_LOG1P_ACC,
  type GpuJsProgram,
  type Tensor,
} from '@longseq/backend';
import { type ScanInputs, type ScanOutputs, type SelectiveScanAttrs, selectiveScanKernel } from '../contract';

/** Steps per chunk: pass 3 replays up to this many steps per output. */
export const GPUJS_CHUNK = 16;

/**
 * e^x to about an ulp, for every exp of the scan. gpu.js translates Math.exp to the shader
 * builtin, which WGSL only bounds to 3 + 2|x| ulp (SwiftShader's is ~20 ulp off for the
 * dA of a long scan): x = k ln2 + r with ln2 in two parts (k * 0.693145751953125 is exact),
 * e^r - 1 by a degree-7 Taylor polynomial on |r| <= ln2 / 2, and 2^k exactly by Math.pow.
 * Outside the float32 range the builtin already gives 0 or Infinity (and NaN for NaN).
 */
const expAcc = /* js */ `function expAcc(x) {
  if (x > 88) return Math.exp(x);
  if (x < -87) return Math.exp(x);
  const k = Math.floor(x * 1.4426950408889634 + 0.5);
  const r = x - k * 0.693145751953125 - k * 1.4286068203094173e-6;
  let q = 0.0001984126984126984;
  q = 0.001388888888888889 + r * q;
  q = 0.008333333333333333 + r * q;
  q = 0.041666666666666664 + r * q;
  q = 0.16666666666666666 + r * q;
  q = 0.5 + r * q;
  q = 1 + r * q;
  q = r * q;
  return (1 + q) * Math.pow(2, k);
}`;

/** Large enough for any loop here; GL needs a static bound. */
const LOOP_MAX = 1 << 24;

// Shared pieces of kernel source. `DT` sets dt for step t of row `row` (channel c);
// `B_AT` / `C_AT` index B and C for (b, c, s, t) in their layout.
const DT = `
      let dt = delta[row + t];
      if (this.constants.hasBias > 0) {
        dt = dt + params[c * stride + n + 1];
      }
      if (this.constants.softplus > 0) {
        if (dt <= 20) {
          // max(dt, 0) + log1p(e^-|dt|), log1p by the backend's atanh series (GPUJS_LOG1P_ACC):
          // the shader log near 1 is only absolutely accurate (a small dt came out ulps off).
          let spAbs = dt;
          if (dt < 0) {
            spAbs = -dt;
          }
          const spLog = log1pAcc(expAcc(-spAbs));
          if (dt > 0) {
            dt = dt + spLog;
          } else {
            dt = spLog;
          }
        }
      }`;

function operandIndex(prefix: 'b' | 'c', time = 't'): string {
  return `
      let ${prefix}Index = c * n + s;
      if (this.constants.${prefix}Variable > 0) {
        ${prefix}Index = ((b * ${prefix}Groups + Math.floor((c + 0.5) / ${prefix}Heads)) * n + s) * len + ${time};
      }`;
}

// The arguments of the passes, in this order (an absent z is stood in for by u). A, D and
// the dt bias travel packed per channel in `params` ([d, n + 2]: A's row, D, bias): gpu.js'
// WebGPU mode binds every argument as a storage buffer, and a device gives a kernel 8.
const ARGS = 'u, delta, params, bMat, cMat, gate';
const SCALARS = 'batch, d, len, n, chunk, chunks, bGroups, bHeads, cGroups, cHeads, stride';

/** Packs A, D and the dt bias per channel: params[c, 0..n-1] = A[c], params[c, n] = D[c], params[c, n+1] = bias[c]. */
const channelParams = `function scanChannelParams(aMat, dSkip, dtBias, n) {
  const stride = n + 2;
  const c = Math.floor((this.thread.x + 0.5) / stride);
  const j = this.thread.x - c * stride;
  if (j < n - 0.5) {
    return aMat[c * n + j];
  }
  if (j < n + 0.5) {
    if (this.constants.hasD > 0) {
      return dSkip[c];
    }
    return 0;
  }
  if (this.constants.hasBias > 0) {
    return dtBias[c];
  }
  return 0;
}`;

/** Pass 1: the pair (a, b) of one chunk of one (batch, channel, state); thread parity picks a or b. */
const chunkPairs = `function scanChunkPairs(${ARGS}, ${SCALARS}) {
  const pair = Math.floor(this.thread.x / 2);
  const k = pair - Math.floor((pair + 0.5) / chunks) * chunks;
  const bcs = Math.floor((pair + 0.5) / chunks);
  const s = bcs - Math.floor((bcs + 0.5) / n) * n;
  const bc = Math.floor((bcs + 0.5) / n);
  const b = Math.floor((bc + 0.5) / d);
  const c = bc - b * d;
  const row = bc * len;
  const a = params[c * stride + s];
  let pa = 1;
  let pb = 0;
  const steps = Math.min(k * chunk + chunk, len) - k * chunk;
  for (let i = 0; i < steps; i++) {
      const t = k * chunk + i;${DT}${operandIndex('b')}
      const dA = expAcc(dt * a);
      pa = pa * dA;
      pb = dA * pb + dt * u[row + t] * bMat[bIndex];
  }
  if (this.thread.x - pair * 2 < 0.5) {
    return pa;
  }
  return pb;
}`;

/** Pass 2 (parallel), one Hillis-Steele level: pair k combines with pair k - offset before it. */
const hillisSteeleLevel = `function scanChunkLevel(pairs, chunks, offset) {
  const pair = Math.floor(this.thread.x / 2);
  const k = pair - Math.floor((pair + 0.5) / chunks) * chunks;
  const own = pairs[this.thread.x];
  if (k < offset) {
    return own;
  }
  const isA = this.thread.x - pair * 2 < 0.5;
  const ownA = pairs[pair * 2];
  const left = (pair - offset) * 2;
  if (isA) {
    return pairs[left] * ownA;
  }
  return ownA * pairs[left + 1] + own;
}`;

/** Pass 2 (parallel), finish: the state entering chunk k is the prefix through chunk k - 1 applied to h0. */
const carryFromPrefix = `function scanChunkCarry(prefix, h0, chunks, hasH0) {
  const bcs = Math.floor((this.thread.x + 0.5) / chunks);
  const k = this.thread.x - bcs * chunks;
  let h = 0;
  if (hasH0 > 0) {
    h = h0[bcs];
  }
  if (k < 0.5) {
    return h;
  }
  const p = (bcs * chunks + k - 1) * 2;
  return prefix[p] * h + prefix[p + 1];
}`;

/** Pass 2 (sequential): the state entering chunk k, folding the chunk pairs before it in order. */
const carryFold = `function scanChunkCarryFold(pairs, h0, chunks, hasH0) {
  const bcs = Math.floor((this.thread.x + 0.5) / chunks);
  const k = this.thread.x - bcs * chunks;
  let h = 0;
  if (hasH0 > 0) {
    h = h0[bcs];
  }
  for (let j = 0; j < k; j++) {
    const p = (bcs * chunks + j) * 2;
    h = pairs[p] * h + pairs[p + 1];
  }
  return h;
}`;

/** Pass 3: y at one (batch, channel, step), replaying each state's chunk from its carry. */
const output = `function scanOutput(${ARGS}, carries, ${SCALARS}) {
  const bc = Math.floor((this.thread.x + 0.5) / len);
  const target = this.thread.x - bc * len;
  const b = Math.floor((bc + 0.5) / d);
  const c = bc - b * d;
  const row = bc * len;
  const k = Math.floor((target + 0.5) / chunk);
  let acc = 0;
  for (let s = 0; s < n; s++) {
    const a = params[c * stride + s];
    let h = carries[(bc * n + s) * chunks + k];
    const steps = target - k * chunk + 1;
    for (let i = 0; i < steps; i++) {
      const t = k * chunk + i;${DT}${operandIndex('b')}
      h = expAcc(dt * a) * h + dt * u[row + t] * bMat[bIndex];
    }
${operandIndex('c', 'target')}
    acc = acc + cMat[cIndex] * h;
  }
  const x = u[row + target];
  if (this.constants.hasD > 0) {
    acc = acc + params[c * stride + n] * x;
  }
  if (this.constants.hasZ > 0) {
    const zv = gate[row + target];
    acc = acc * (zv * (1 / (1 + expAcc(-zv))));
  }
  return acc;
}`;

/** Pass 4: the state after the last step, replaying the last chunk from its carry. */
const lastState = `function scanLastState(${ARGS}, carries, ${SCALARS}) {
  const bcs = this.thread.x;
  const bc = Math.floor((bcs + 0.5) / n);
  const s = bcs - bc * n;
  const b = Math.floor((bc + 0.5) / d);
  const c = bc - b * d;
  const row = bc * len;
  const a = params[c * stride + s];
  const k = chunks - 1;
  let h = carries[bcs * chunks + k];
  const steps = len - k * chunk;
  for (let i = 0; i < steps; i++) {
    const t = k * chunk + i;${DT}${operandIndex('b')}
    h = expAcc(dt * a) * h + dt * u[row + t] * bMat[bIndex];
  }
  return h;
}`;

function constantsFor(attrs: SelectiveScanAttrs): Record<string, number> {
  return {
    hasD: attrs.hasD ? 1 : 0,
    hasZ: attrs.hasZ ? 1 : 0,
    hasBias: attrs.hasDeltaBias ? 1 : 0,
    softplus: attrs.deltaSoftplus ? 1 : 0,
    bVariable: attrs.bLayout === 'variable' ? 1 : 0,
    cVariable: attrs.cLayout === 'variable' ? 1 : 0,
  };
}

function cacheKeyOf(constants: Record<string, number>): string {
  return Object.entries(constants)
    .map(([k, v]) => `${k}${v}`)
    .join('-');
}

async function writeScan(
  backend: Backend,
  inputs: ScanInputs,
  attrs: SelectiveScanAttrs,
  outputs: ScanOutputs,
): Promise<void> {
  if (attrs.batch === 0) return;
  const { batch, channels: d, length: len, states: n } = attrs;
  const chunk = Math.min(GPUJS_CHUNK, len);
  const chunks = Math.ceil(len / chunk);
  const constants = constantsFor(attrs);
  const cacheKey = cacheKeyOf(constants);
  const u = inputs.u;
  const scalars = [
    batch,
    d,
    len,
    n,
    chunk,
    chunks,
    attrs.bGroups,
    d / attrs.bGroups,
    attrs.cGroups,
    d / attrs.cGroups,
    n + 2,
  ];
  const none = {};
  const run = (name: string, kernel: string, ins: Tensor[], sc: number[], out: Tensor, c = none) =>
    backend.run({
      kind: 'gpujs',
      name,
      cacheKey: c === constants ? cacheKey : '',
      kernel,
      inputs: ins,
      scalars: sc,
      output: out,
      constants: c,
      loopMaxIterations: LOOP_MAX,
      functions: [expAcc, GPUJS_LOG1P_ACC],
    } satisfies GpuJsProgram);

  const pairCount = batch * d * n * chunks;
  // The chunk pairs are the largest intermediate (2 floats per batch, channel, state and
  // chunk of 16 steps): refuse before running anything if they cannot be one gpu.js tensor.
  checkBindingSize(
    backend,
    `selectiveScan chunk pairs (batch ${batch} x d ${d} x n ${n} x ${chunks} chunks x 2)`,
    pairCount * 2,
  );
  const temporaries: Tensor[] = [];
  try {
    const params = backend.empty([d * (n + 2)]);
    temporaries.push(params);
    await run(
      'scan_channel_params',
      channelParams,
      [inputs.A, inputs.D ?? inputs.A, inputs.deltaBias ?? inputs.A],
      [n],
      params,
      constants,
    );
    const args: Tensor[] = [u, inputs.delta, params, inputs.B, inputs.C, inputs.z ?? u];
    let pairs = backend.empty([pairCount * 2]);
    temporaries.push(pairs);
    await run('scan_chunk_pairs', chunkPairs, args, scalars, pairs, constants);
    const carries = backend.empty([pairCount]);
    temporaries.push(carries);
    const h0 = inputs.initialState ?? params;
    const hasH0 = inputs.initialState ? 1 : 0;
    if (attrs.algorithm === 'parallel') {
      for (let offset = 1; offset < chunks; offset *= 2) {
        const next = backend.empty([pairCount * 2]);
        temporaries.push(next);
        await run('scan_chunk_level', hillisSteeleLevel, [pairs], [chunks, offset], next);
        pairs = next;
      }
      await run('scan_chunk_carry', carryFromPrefix, [pairs, h0], [chunks, hasH0], carries);
    } else {
      await run('scan_chunk_carry_fold', carryFold, [pairs, h0], [chunks, hasH0], carries);
    }
    await run('scan_output', output, [...args, carries], scalars, outputs.y, constants);
    if (outputs.lastState) {
      await run('scan_last_state', lastState, [...args, carries], scalars, outputs.lastState, constants);
    }
  } finally {
    for (const t of temporaries) t.dispose();
  }
}

export const selectiveScanGpuJsKernel = selectiveScanKernel('gpujs', writeScan);
