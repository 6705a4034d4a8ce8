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
 * integer divisions are taken as floor((i + 0.5) / m), exact for i < 2^22.
 */
import type { Backend, GpuJsProgram, Tensor } from '@longseq/backend';
import { type ScanInputs, type ScanOutputs, type SelectiveScanAttrs, selectiveScanKernel } from '../contract';

/** Steps per chunk: pass 3 replays up to this many steps per output. */
export const GPUJS_CHUNK = 16;

/** Large enough for any loop here; GL needs a static bound. */
const LOOP_MAX = 1 << 24;

// Shared pieces of kernel source. `DT` sets dt for step t of row `row` (channel c);
// `B_AT` / `C_AT` index B and C for (b, c, s, t) in their layout.
const DT = `
      let dt = delta[row + t];
      if (this.constants.hasBias > 0) {
        dt = dt + dtBias[c];
      }
      if (this.constants.softplus > 0) {
        if (dt <= 20) {
          const e = Math.exp(dt);
          const w = 1 + e;
          if (w === 1) {
            dt = e;
          } else {
            dt = Math.log(w) * (e / (w - 1));
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

// The arguments every kernel takes, in this order (absent optional inputs are stood in for by u).
const ARGS = 'u, delta, aMat, bMat, cMat, dSkip, gate, dtBias, h0';
const SCALARS = 'batch, d, len, n, chunk, chunks, bGroups, bHeads, cGroups, cHeads';

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
  const a = aMat[c * n + s];
  let pa = 1;
  let pb = 0;
  const t1 = Math.min(k * chunk + chunk, len);
  for (let t = k * chunk; t < t1; t++) {${DT}${operandIndex('b')}
      const dA = Math.exp(dt * a);
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
    const a = aMat[c * n + s];
    let h = carries[(bc * n + s) * chunks + k];
    for (let t = k * chunk; t <= target; t++) {${DT}${operandIndex('b')}
      h = Math.exp(dt * a) * h + dt * u[row + t] * bMat[bIndex];
    }
${operandIndex('c', 'target')}
    acc = acc + cMat[cIndex] * h;
  }
  const x = u[row + target];
  if (this.constants.hasD > 0) {
    acc = acc + dSkip[c] * x;
  }
  if (this.constants.hasZ > 0) {
    const zv = gate[row + target];
    acc = acc * (zv * (1 / (1 + Math.exp(-zv))));
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
  const a = aMat[c * n + s];
  const k = chunks - 1;
  let h = carries[bcs * chunks + k];
  for (let t = k * chunk; t < len; t++) {${DT}${operandIndex('b')}
    h = Math.exp(dt * a) * h + dt * u[row + t] * bMat[bIndex];
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
  const args: Tensor[] = [
    u,
    inputs.delta,
    inputs.A,
    inputs.B,
    inputs.C,
    inputs.D ?? u,
    inputs.z ?? u,
    inputs.deltaBias ?? u,
    inputs.initialState ?? u,
  ];
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
  ];
  const run = (name: string, kernel: string, ins: Tensor[], sc: number[], out: Tensor, c = constants) =>
    backend.run({
      kind: 'gpujs',
      name,
      cacheKey: name === 'scan_chunk_level' || name.startsWith('scan_chunk_carry') ? '' : cacheKey,
      kernel,
      inputs: ins,
      scalars: sc,
      output: out,
      constants: name === 'scan_chunk_level' || name.startsWith('scan_chunk_carry') ? {} : c,
      loopMaxIterations: LOOP_MAX,
    } satisfies GpuJsProgram);

  const pairCount = batch * d * n * chunks;
  const temporaries: Tensor[] = [];
  try {
    let pairs = backend.empty([pairCount * 2]);
    temporaries.push(pairs);
    await run('scan_chunk_pairs', chunkPairs, args, scalars, pairs);
    const carries = backend.empty([pairCount]);
    temporaries.push(carries);
    const h0 = inputs.initialState ?? u;
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
    await run('scan_output', output, [...args, carries], scalars, outputs.y);
    if (outputs.lastState) {
      await run('scan_last_state', lastState, [...args, carries], scalars, outputs.lastState);
    }
  } finally {
    for (const t of temporaries) t.dispose();
  }
}

export const selectiveScanGpuJsKernel = selectiveScanKernel('gpujs', writeScan);
