/**
 * The Mamba language model (transformers' MambaForCausalLM): embeddings, nLayer residual
 * blocks `h = h + mixer(rmsNorm(h))`, a final RMSNorm and the LM head.
 *
 * Two ways through the same weights:
 * - `forward(ids)`: the whole sequence at once, the mixer in its scan form (matmuls over all
 *   positions, the causal conv, the selective scan of @longseq/selective-scan).
 * - `step(ids, state)`: one token per sequence through the recurrence, O(1) work per token
 *   (conv state [B, D, K-1] and SSM state [B, D, N] per layer), for decoding.
 */
import {
  ArgumentError,
  type Backend,
  ShapeError,
  type Tensor,
  add,
  gather,
  hasKernel,
  keep,
  matmul,
  rmsNorm,
  runKernel,
  scope,
  silu,
} from '@longseq/backend';
import {
  type FileSource,
  causalConv1d,
  causalConv1dStep,
  linear,
  loadCheckpoint,
  loadConfig,
  nodeFileSource,
} from '@longseq/nn';
import { selectiveScan } from '@longseq/selective-scan';
import { type MambaConfig, mambaConfigFromHf } from './config';
// the pieces shared with the models built on this package
import * as lm from './lm';
import { type SamplingOptions, Sampler } from './sampler';
import { mambaSsmStep, registerMambaKernels } from './ssm-step';
import { type FusedDecodeAttrs, MambaFusedDecodeLayer, MambaNormMatvec } from './webgpu/fused-decode';
import {
  type MambaLayerWeights,
  type MambaWeights,
  type TensorReader,
  checkpointReader,
  uploadMambaWeights,
  weightTensors,
} from './weights';

/** The recurrent state of a batch: per layer the conv inputs `[B, D, K-1]` and the SSM state `[B, D, N]`. */
export class MambaState {
  constructor(
    readonly batch: number,
    public conv: Tensor[],
    public ssm: Tensor[],
    /** Tokens consumed so far. */
    public position = 0,
  ) {}

  dispose(): void {
    for (const t of [...this.conv, ...this.ssm]) t.dispose();
  }
}

export interface ForwardOptions {
  /** Also return the state after the last token, to continue with `step()`. */
  readonly returnState?: boolean;
  /**
   * Only the last position's logits, `[B, 1, V]`: the LM head runs on one row per sequence
   * instead of L (what generation needs after a prompt).
   */
  readonly lastOnly?: boolean;
}

export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate per sequence (>= 0). */
  readonly maxNewTokens: number;
  /**
   * How the prompt is consumed: 'scan' (default) runs `forward` once and hands its state to
   * the decoder; 'step' feeds the prompt one token at a time through `step()`.
   */
  readonly prefill?: 'scan' | 'step';
  /** Also return the logits that chose each new token (`[maxNewTokens][B * V]`). */
  readonly returnLogits?: boolean;
}

export interface GenerateResult {
  /** The new tokens of each sequence, `[B][maxNewTokens]`. */
  readonly ids: number[][];
  /** With `returnLogits`: per new token, the logits rows `[B * V]` that chose it. */
  readonly logits?: Float32Array[];
}

export class MambaModel {
  private disposed = false;

  private constructor(
    readonly backend: Backend,
    readonly config: MambaConfig,
    readonly weights: MambaWeights,
  ) {}

  /** Loads a Hugging Face MambaForCausalLM folder: `config.json` and (sharded) safetensors. */
  static async load(backend: Backend, source: FileSource | string): Promise<MambaModel> {
    const files = typeof source === 'string' ? nodeFileSource(source) : source;
    const config = mambaConfigFromHf(await loadConfig(files));
    const checkpoint = await loadCheckpoint(files);
    return new MambaModel(backend, config, uploadMambaWeights(backend, config, checkpointReader(checkpoint)));
  }

  /** A model from a config and a reader of its tensors by HF name (e.g. `randomReader` for benchmarks). */
  static fromReader(backend: Backend, config: MambaConfig, read: TensorReader): MambaModel {
    return new MambaModel(backend, config, uploadMambaWeights(backend, config, read));
  }

  /** Frees the weights. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of weightTensors(this.weights)) t.dispose();
  }

  private checkAlive(): void {
    if (this.disposed) throw new ArgumentError('model', 'a model that has not been disposed', 'disposed');
  }

  /** Checks ids on the host: a non-empty batch of equal-length rows of integers in [0, vocab). */
  private checkIds(ids: readonly (readonly number[])[], argument: string, allowEmptyRows = false): void {
    lm.checkTokenIds(ids, argument, this.config.vocabSize, allowEmptyRows);
  }

  /**
   * Logits `[B, L, V]` for token ids `[B][L]` (rows of equal length). With `returnState`, also
   * the recurrent state after the last position.
   */
  async forward(
    ids: readonly (readonly number[])[],
    options: ForwardOptions = {},
  ): Promise<{ logits: Tensor; state?: MambaState }> {
    this.checkAlive();
    this.checkIds(ids, 'ids');
    const batch = ids.length;
    const length = ids[0]!.length;
    const { backend, weights } = this;
    return scope(async () => {
      const idTensor = backend.tensor(ids.flat(), [batch, length], 'i32');
      let hidden = await gather(weights.embeddings, idTensor);
      const conv: Tensor[] = [];
      const ssm: Tensor[] = [];
      for (const layer of weights.layers) {
        const next = await scope(async () => {
          const mixed = await this.mixerSequence(layer, hidden, options.returnState === true);
          if (mixed.convState) conv.push(keep(mixed.convState));
          if (mixed.ssmState) ssm.push(keep(mixed.ssmState));
          return add(hidden, mixed.out);
        });
        hidden.dispose();
        hidden = next;
      }
      const last = options.lastOnly ? await lm.lastPositions(hidden, batch, length) : hidden;
      const logits = await this.head(last);
      hidden.dispose();
      // Returned in plain arrays so the scope keeps them (it does not look inside class instances).
      return { logits, conv, ssm };
    }).then(({ logits, conv, ssm }) =>
      options.returnState ? { logits, state: new MambaState(batch, conv, ssm, length) } : { logits },
    );
  }

  /** The mixer over a whole sequence: hidden `[B, L, M]` -> `[B, L, M]` (channels-first inside). */
  private async mixerSequence(
    layer: MambaLayerWeights,
    hidden: Tensor,
    returnState: boolean,
  ): Promise<{ out: Tensor; convState?: Tensor; ssmState?: Tensor }> {
    const { config } = this;
    const normed = await rmsNorm(hidden, layer.norm, { eps: config.eps });
    // W [D, M] against hidden [B, L, M] transposed: [B, D, L], the scan's channels-first layout.
    let x = await matmul(layer.inProjX, normed, { transposeB: true });
    let z = await matmul(layer.inProjZ, normed, { transposeB: true });
    if (layer.inProjBiasX) x = await add(x, layer.inProjBiasX.reshape([config.dInner, 1]));
    if (layer.inProjBiasZ) z = await add(z, layer.inProjBiasZ.reshape([config.dInner, 1]));
    const conv = await causalConv1d(x, layer.convWeight, {
      ...(layer.convBias ? { bias: layer.convBias } : {}),
      returnFinalState: returnState,
    });
    const u = await silu(conv.output);
    const dtLow = await matmul(layer.xProjDt, u); // [B, R, L]
    const B = await matmul(layer.xProjB, u); // [B, N, L]
    const C = await matmul(layer.xProjC, u); // [B, N, L]
    const delta = await matmul(layer.dtProj, dtLow); // [B, D, L]
    const scan = await selectiveScan(u, delta, layer.A, B, C, {
      D: layer.D,
      z,
      deltaBias: layer.dtBias,
      deltaSoftplus: true,
      returnLastState: returnState,
    });
    // y [B, D, L] transposed against out_proj [M, D]: [B, L, M].
    let out = await matmul(scan.y, layer.outProj, { transposeA: true, transposeB: true });
    if (layer.outProjBias) out = await add(out, layer.outProjBias);
    return {
      out,
      ...(conv.finalState ? { convState: conv.finalState } : {}),
      ...(scan.lastState ? { ssmState: scan.lastState } : {}),
    };
  }

  /** Final norm and LM head: `[..., M]` -> `[..., V]`. */
  private async head(hidden: Tensor): Promise<Tensor> {
    return scope(async () => {
      const normed = await rmsNorm(hidden, this.weights.normF, { eps: this.config.eps });
      return linear(normed, this.weights.lmHead);
    });
  }

  /** A zero state for `batch` sequences (before any token). */
  createState(batch: number): MambaState {
    this.checkAlive();
    if (!Number.isInteger(batch) || batch < 1) throw new ArgumentError('batch', 'an integer >= 1', batch);
    const { dInner, dConv, dState } = this.config;
    const zeros = (shape: number[]) =>
      this.backend.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
    return new MambaState(
      batch,
      this.weights.layers.map(() => zeros([batch, dInner, dConv - 1])),
      this.weights.layers.map(() => zeros([batch, dInner, dState])),
    );
  }

  /**
   * How `step()` runs: 'auto' (default) takes the fused decode kernels where the backend has
   * them (WebGPU: three dispatches per layer, states updated in place), else 'composed' (the
   * primitive ops and the SSM-step kernel, ~13 dispatches per layer, on every backend).
   */
  decodePath: 'auto' | 'composed' = 'auto';

  /**
   * WebGPU fused decode: threads per matrix row (a power of two, 8..256); 0 (default) picks
   * by device (8 on CPU-emulated devices, 32..256 on GPUs). For tuning and tests.
   */
  decodeLanes = 0;

  /**
   * One token per sequence: ids `[B]` -> logits `[B, V]`. Advances `state` in place (its
   * tensors are updated or replaced); O(1) work per token.
   */
  async step(ids: readonly number[], state: MambaState): Promise<Tensor> {
    this.checkAlive();
    if (!(state instanceof MambaState) || state.conv.length !== this.config.nLayer) {
      throw new ArgumentError('state', `a MambaState of this model (${this.config.nLayer} layers)`, state);
    }
    if (!Array.isArray(ids) || ids.length !== state.batch) {
      throw new ShapeError(
        'ids',
        `[${state.batch}] (one id per sequence of the state)`,
        Array.isArray(ids) ? [ids.length] : String(ids),
      );
    }
    this.checkIds(
      ids.map((id) => [id]),
      'ids',
    );
    const { backend, weights, config } = this;
    const batch = state.batch;
    registerMambaKernels();
    if (this.decodePath === 'auto' && hasKernel(MambaFusedDecodeLayer, backend.kind)) {
      return this.fusedStep(ids, state);
    }
    const { logits, newConv, newSsm } = await scope(async () => {
      const newConv: Tensor[] = [];
      const newSsm: Tensor[] = [];
      const idTensor = backend.tensor(ids, [batch], 'i32');
      let hidden = await gather(weights.embeddings, idTensor); // [B, M]
      for (let l = 0; l < weights.layers.length; l++) {
        const layer = weights.layers[l]!;
        const next = await scope(async () => {
          const normed = await rmsNorm(hidden, layer.norm, { eps: config.eps });
          const x = await linear(normed, layer.inProjX, layer.inProjBiasX);
          const z = await linear(normed, layer.inProjZ, layer.inProjBiasZ);
          const conv = await causalConv1dStep(
            x,
            state.conv[l]!,
            layer.convWeight,
            layer.convBias ? { bias: layer.convBias } : {},
          );
          newConv.push(keep(conv.state));
          const u = await silu(conv.output);
          const dtLow = await linear(u, layer.xProjDt);
          const B = await linear(u, layer.xProjB);
          const C = await linear(u, layer.xProjC);
          const dt = await linear(dtLow, layer.dtProj);
          const ssm = await mambaSsmStep({
            u,
            dt,
            A: layer.A,
            B,
            C,
            D: layer.D,
            z,
            dtBias: layer.dtBias,
            state: state.ssm[l]!,
          });
          newSsm.push(keep(ssm.state));
          const out = await linear(ssm.y, layer.outProj, layer.outProjBias);
          return add(hidden, out);
        });
        hidden.dispose();
        hidden = next;
      }
      return { logits: await this.head(hidden), newConv, newSsm };
    });
    // keep() passed the new states to this function's caller scope (if any); swap them in.
    state.dispose();
    state.conv = newConv;
    state.ssm = newSsm;
    state.position += 1;
    return logits;
  }

  /**
   * Greedy decoding's step: one token per sequence, returns the next ids `[B]` (the argmax of
   * each row of the step's logits, first index on ties, as torch.argmax). On WebGPU's fused
   * path the argmax runs on the GPU and only B ids are read back; elsewhere the logits are
   * read and the argmax taken on the host. Advances `state` as `step` does.
   */
  async stepGreedy(ids: readonly number[], state: MambaState): Promise<number[]> {
    const logits = await this.step(ids, state);
    try {
      // on the GPU where the fused decode path runs
      return await lm.argmaxRows(logits, state.batch, this.config.vocabSize, this.decodePath === 'auto');
    } finally {
      logits.dispose();
    }
  }

  /** The fused decode step: one kernel call per layer, states and residual updated in place. */
  private async fusedStep(ids: readonly number[], state: MambaState): Promise<Tensor> {
    const { backend, weights, config } = this;
    const batch = state.batch;
    const idTensor = backend.tensor(ids, [batch], 'i32');
    const hidden = await gather(weights.embeddings, idTensor).finally(() => idTensor.dispose());
    try {
      const attrs: FusedDecodeAttrs = {
        batch,
        dModel: config.dModel,
        dInner: config.dInner,
        dState: config.dState,
        dtRank: config.dtRank,
        dConv: config.dConv,
        eps: config.eps,
        hasInBias: weights.layers[0]?.inProjBiasX !== undefined,
        hasConvBias: weights.layers[0]?.convBias !== undefined,
        hasOutBias: weights.layers[0]?.outProjBias !== undefined,
        lanes: this.decodeLanes,
      };
      for (let l = 0; l < weights.layers.length; l++) {
        const w = weights.layers[l]!;
        await runKernel(
          MambaFusedDecodeLayer,
          backend,
          [
            hidden,
            w.norm,
            w.inProjX,
            w.inProjZ,
            w.inProjBiasX ?? w.norm,
            w.inProjBiasZ ?? w.norm,
            state.conv[l]!,
            w.decodeParams,
            w.xProjDt,
            w.xProjB,
            w.xProjC,
            w.dtProj,
            state.ssm[l]!,
            w.outProj,
            w.outProjBias ?? w.norm,
          ],
          attrs,
        );
      }
      const logits = await runKernel(MambaNormMatvec, backend, [hidden, weights.normF, weights.lmHead], {
        batch,
        width: config.dModel,
        rows: config.vocabSize,
        eps: config.eps,
        lanes: this.decodeLanes,
      });
      state.position += 1;
      return logits as Tensor;
    } finally {
      hidden.dispose();
    }
  }

  /**
   * Generates `maxNewTokens` tokens after each prompt (`[B][L]`, or one prompt `[L]`) through
   * the recurrent step, greedy by default or sampled (temperature, topK, topP, seed).
   */
  async generate(
    prompt: readonly number[] | readonly (readonly number[])[],
    options: GenerateOptions,
  ): Promise<GenerateResult> {
    this.checkAlive();
    const ids = lm.promptRows(prompt);
    this.checkIds(ids, 'prompt');
    const maxNewTokens = lm.checkMaxNewTokens(options);
    const prefill = options.prefill ?? 'scan';
    if (prefill !== 'scan' && prefill !== 'step')
      throw new ArgumentError('options.prefill', "'scan' or 'step'", prefill);
    const sampler = new Sampler(options);
    const batch = ids.length;
    const vocab = this.config.vocabSize;
    if (maxNewTokens === 0)
      return { ids: ids.map(() => []), ...(options.returnLogits ? { logits: [] } : {}) };

    let state: MambaState;
    let last: Float32Array;
    if (prefill === 'scan') {
      const { logits, state: s } = await this.forward(ids, { returnState: true, lastOnly: true });
      state = s!;
      last = (await logits.read()) as Float32Array;
      logits.dispose();
    } else {
      state = this.createState(batch);
      let logits: Tensor | undefined;
      for (let t = 0; t < ids[0]!.length; t++) {
        logits?.dispose();
        logits = await this.step(
          ids.map((row) => row[t]!),
          state,
        );
      }
      last = (await logits!.read()) as Float32Array;
      logits!.dispose();
    }
    try {
      return await lm.generateTokens({
        sampler,
        rows: batch,
        vocab,
        maxNewTokens,
        first: last,
        returnLogits: options.returnLogits ?? false,
        step: (chosen) => this.step(chosen, state),
        stepGreedy: (chosen) => this.stepGreedy(chosen, state),
      });
    } finally {
      state.dispose();
    }
  }
}
