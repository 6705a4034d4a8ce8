/**
 * Jamba's mixture of experts (transformers' JambaSparseMoeBlock): router logits -> softmax
 * over the experts -> the top k probabilities and their experts, used as the routing weights
 * as they are (Jamba does not renormalize them to sum to 1, unlike Mixtral; the golden
 * checkpoint pins this down). Each expert is a SwiGLU MLP.
 *
 * The experts run grouped: the router logits come back to the host, which lists the tokens
 * of each expert; each expert gathers its rows, multiplies only those, and its outputs are
 * added back into their tokens' rows with their routing weights (`moeAccumulate`). An expert
 * no token chose launches nothing. Where the experts are stacked (WebGPU: one tensor per
 * projection holding every expert, as the GPU-routed decode reads them), each expert with
 * tokens is first copied out of the stacks (`copyExpert`) into one set of scratch weights,
 * reused expert after expert: the model holds its experts once.
 */
import {
  ArgumentError,
  ShapeError,
  type Tensor,
  checkBindingSize,
  checkDType,
  checkRank,
  checkSameBackend,
  checkTensor,
  gather,
  matmul,
  mul,
  registerKernelsOnce,
  runKernel,
  scope,
  silu,
} from '@longseq/backend';
import { linear } from '@longseq/nn';
import {
  JambaExpertCopy,
  type JambaExpertCopyAttrs,
  JambaMoeAccumulate,
  type JambaMoeAccumulateAttrs,
} from './contract';
import { expertCopyGpuJsKernel, moeAccumulateGpuJsKernel } from './gpujs/moe';
import type { JambaMlpWeights, JambaMoeWeights } from './weights';
import {
  jambaMambaDecodeWebGpuKernel,
  jambaMoeDecodeWebGpuKernel,
  jambaNormMatvecWebGpuKernel,
  jambaSwigluDownWebGpuKernel,
  jambaSwigluGateUpWebGpuKernel,
} from './webgpu/fused-decode';
import { expertCopyWebGpuKernel, moeAccumulateWebGpuKernel } from './webgpu/moe';

let registered = false;
/**
 * Registers the Jamba kernels (done on first use): the MoE combine and the expert copy for
 * both backend kinds, and WebGPU's fused Mamba decode layer and norm + LM head (gpu.js
 * decodes through the composed ops).
 */
export function registerJambaKernels(): void {
  if (registered) return;
  registerKernelsOnce([
    moeAccumulateWebGpuKernel,
    moeAccumulateGpuJsKernel,
    expertCopyWebGpuKernel,
    expertCopyGpuJsKernel,
    jambaMambaDecodeWebGpuKernel,
    jambaNormMatvecWebGpuKernel,
    jambaSwigluGateUpWebGpuKernel,
    jambaSwigluDownWebGpuKernel,
    jambaMoeDecodeWebGpuKernel,
  ] as never[]);
  registered = true;
}

/**
 * `out[t] = acc[t] + weight[t] * y[rowOf[t]]` for tokens with `rowOf[t] >= 0`, else `acc[t]`:
 * one expert's outputs y `[n, M]` added into the token rows `[T, M]`. `acc` undefined counts
 * as zeros. rowOf `[T]` i32, weight `[T]` f32. Returns a new `[T, M]` tensor.
 */
export async function moeAccumulate(
  acc: Tensor | undefined,
  y: Tensor,
  rowOf: Tensor,
  weight: Tensor,
): Promise<Tensor> {
  checkTensor(y, 'y');
  checkTensor(rowOf, 'rowOf');
  checkTensor(weight, 'weight');
  checkDType(y, 'y', ['f32']);
  checkDType(rowOf, 'rowOf', ['i32']);
  checkDType(weight, 'weight', ['f32']);
  checkRank(y, 'y', 2, 2, '[n, M]');
  checkRank(rowOf, 'rowOf', 1, 1, '[T]');
  const [rows, width] = y.shape as [number, number];
  const tokens = rowOf.shape[0]!;
  if (rows < 1)
    throw new ShapeError('y', '[n, M] with n >= 1 (an expert with no tokens runs nothing)', y.shape);
  if (weight.rank !== 1 || weight.shape[0] !== tokens)
    throw new ShapeError('weight', `[${tokens}] (one weight per token, as rowOf)`, weight.shape);
  if (acc !== undefined) {
    checkTensor(acc, 'acc');
    checkDType(acc, 'acc', ['f32']);
    if (acc.rank !== 2 || acc.shape[0] !== tokens || acc.shape[1] !== width)
      throw new ShapeError('acc', `[${tokens}, ${width}] ([T, M])`, acc.shape);
  }
  checkSameBackend(y.backend, { rowOf, weight, ...(acc ? { acc } : {}) });
  registerJambaKernels();
  const attrs: JambaMoeAccumulateAttrs = { tokens, width, rows, hasAcc: acc !== undefined };
  const out = (await runKernel(
    JambaMoeAccumulate,
    y.backend,
    [acc ?? y, y, rowOf, weight],
    attrs,
  )) as Tensor[];
  return out[0]!;
}

/**
 * Copies expert `expert`'s weights out of a stacked weight `[E * R, C]` (the experts' `[R, C]`
 * blocks one after another along the rows) into `out` `[R, C]`, in place. Validates before any
 * GPU work: ShapeError (`stacked` not `[E * R, C]` for out's R, C), ArgumentError (`expert`
 * not in [0, E)), DTypeError (not f32).
 */
export async function copyExpert(stacked: Tensor, expert: number, out: Tensor): Promise<void> {
  checkTensor(stacked, 'stacked');
  checkTensor(out, 'out');
  checkDType(stacked, 'stacked', ['f32']);
  checkDType(out, 'out', ['f32']);
  checkRank(out, 'out', 2, 2, '[R, C]');
  const [rows, cols] = out.shape as [number, number];
  if (rows < 1 || cols < 1) throw new ShapeError('out', '[R, C] with R, C >= 1', out.shape);
  if (
    stacked.rank !== 2 ||
    stacked.shape[1] !== cols ||
    stacked.shape[0]! % rows !== 0 ||
    stacked.shape[0] === 0
  )
    throw new ShapeError(
      'stacked',
      `[E * ${rows}, ${cols}] (experts' [R, C] blocks along the rows)`,
      stacked.shape,
    );
  const experts = stacked.shape[0]! / rows;
  if (!Number.isInteger(expert) || expert < 0 || expert >= experts)
    throw new ArgumentError('expert', `an integer in [0, ${experts})`, expert);
  checkSameBackend(stacked.backend, { out });
  checkBindingSize(stacked.backend, 'stacked', stacked.size, stacked.shape);
  registerJambaKernels();
  const attrs: JambaExpertCopyAttrs = { expert, size: rows * cols };
  await runKernel(JambaExpertCopy, stacked.backend, [stacked, out], attrs);
}

/** The routing of T tokens: for each token its top-k experts (best first) and their weights. */
export interface MoeRouting {
  readonly tokens: number;
  readonly topK: number;
  /** [T * k]: expert of token t's j-th choice at t * k + j. */
  readonly experts: Int32Array;
  /** [T * k]: its softmax probability (not renormalized). */
  readonly weights: Float64Array;
  /** Per expert, the tokens routed to it, ascending. */
  readonly tokensOf: readonly number[][];
}

/**
 * Routes tokens from router logits `[T, E]` (row-major): softmax over the experts in float64,
 * then the k largest probabilities, the lower expert first on ties (torch.topk's order on
 * distinct values). Pure host code; the same function serves the reference.
 */
export function routeTokens(
  logits: ArrayLike<number>,
  tokens: number,
  numExperts: number,
  topK: number,
): MoeRouting {
  if (!Number.isInteger(topK) || topK < 1 || topK > numExperts)
    throw new ArgumentError('topK', `an integer in [1, ${numExperts}]`, topK);
  if (logits.length !== tokens * numExperts)
    throw new ShapeError('logits', `${tokens * numExperts} values ([T, E])`, `${logits.length} values`);
  const experts = new Int32Array(tokens * topK);
  const weights = new Float64Array(tokens * topK);
  const tokensOf: number[][] = Array.from({ length: numExperts }, () => []);
  const probs = new Float64Array(numExperts);
  const order = Array.from({ length: numExperts }, (_, e) => e);
  for (let t = 0; t < tokens; t++) {
    let max = Number.NEGATIVE_INFINITY;
    for (let e = 0; e < numExperts; e++) max = Math.max(max, logits[t * numExperts + e]!);
    let total = 0;
    for (let e = 0; e < numExperts; e++) {
      probs[e] = Math.exp(logits[t * numExperts + e]! - max);
      total += probs[e]!;
    }
    for (let e = 0; e < numExperts; e++) probs[e]! /= total;
    order.sort((a, b) => probs[b]! - probs[a]! || a - b);
    for (let j = 0; j < topK; j++) {
      const e = order[j]!;
      experts[t * topK + j] = e;
      weights[t * topK + j] = probs[e]!;
      tokensOf[e]!.push(t);
    }
    order.sort((a, b) => a - b);
  }
  for (const list of tokensOf) list.sort((a, b) => a - b);
  return { tokens, topK, experts, weights, tokensOf };
}

/** SwiGLU: `down(silu(gate(x)) * up(x))`, x `[T, M]` -> `[T, M]`. */
export async function swiglu(x: Tensor, w: JambaMlpWeights): Promise<Tensor> {
  return scope(async () => {
    const gate = await silu(await matmul(x, w.gateProj, { transposeB: true }));
    const up = await matmul(x, w.upProj, { transposeB: true });
    return linear(await mul(gate, up), w.downProj);
  });
}

/**
 * The sparse MoE block on tokens x `[T, M]`: routes on the host (one read of the `[T, E]`
 * router logits), then runs each expert that has tokens on its rows only (stacked experts:
 * on a copy of its weights, see the top of this file). Returns the output
 * `[T, M]` and the routing.
 */
export async function moeForward(
  x: Tensor,
  w: JambaMoeWeights,
  topK: number,
): Promise<{ output: Tensor; routing: MoeRouting }> {
  checkTensor(x, 'x');
  checkRank(x, 'x', 2, 2, '[T, M]');
  const [tokens, width] = x.shape as [number, number];
  const numExperts = w.router.shape[0]!;
  const backend = x.backend;
  return scope(async () => {
    const logits = await matmul(x, w.router, { transposeB: true });
    const routing = routeTokens(await logits.read(), tokens, numExperts, topK);
    logits.dispose();
    // stacked experts: one set of scratch weights, each expert with tokens copied into it in
    // turn (the copy is queued after the previous expert's products that read it)
    const stacked = w.stacked;
    const F = stacked ? stacked.gate.shape[0]! / numExperts : 0;
    const scratch: JambaMlpWeights | undefined = stacked && {
      kind: 'mlp',
      gateProj: backend.empty([F, width]),
      upProj: backend.empty([F, width]),
      downProj: backend.empty([width, F]),
    };
    let acc: Tensor | undefined;
    try {
      for (let e = 0; e < numExperts; e++) {
        const list = routing.tokensOf[e]!;
        if (list.length === 0) continue; // no tokens: no work launched
        const next = await scope(async () => {
          const rowOf = new Int32Array(tokens).fill(-1);
          const weight = new Float32Array(tokens);
          list.forEach((t, r) => {
            rowOf[t] = r;
            for (let j = 0; j < topK; j++)
              if (routing.experts[t * topK + j] === e) weight[t] = routing.weights[t * topK + j]!;
          });
          const rows =
            list.length === tokens ? x : await gather(x, backend.tensor(list, [list.length], 'i32'));
          let expert: JambaMlpWeights;
          if (stacked && scratch) {
            await copyExpert(stacked.gate, e, scratch.gateProj);
            await copyExpert(stacked.up, e, scratch.upProj);
            await copyExpert(stacked.down, e, scratch.downProj);
            expert = scratch;
          } else expert = w.experts![e]!;
          const y = await swiglu(rows, expert);
          return moeAccumulate(
            acc,
            y,
            backend.tensor(rowOf, [tokens], 'i32'),
            backend.tensor(weight, [tokens], 'f32'),
          );
        });
        acc?.dispose();
        acc = next;
      }
    } finally {
      if (scratch) for (const t of [scratch.gateProj, scratch.upProj, scratch.downProj]) t.dispose();
    }
    // T = 0 cannot happen (the model checks ids); keep the types honest anyway
    const output = acc ?? backend.tensor(new Float32Array(tokens * width), [tokens, width]);
    return { output, routing };
  });
}
