/**
 * The Jamba language model (transformers' JambaForCausalLM): embeddings, nLayer decoder
 * layers `h = h + mixer(rmsNorm(h)); h = h + feedForward(rmsNorm(h))` where the mixer is
 * grouped-query attention without positional encoding or a Mamba mixer with RMSNorms on dt,
 * B and C, and the feed-forward a SwiGLU MLP or a mixture of SwiGLU experts; a final RMSNorm
 * and the LM head.
 *
 * - `forward(ids)`: whole sequences at once, no cache (attention by FlashAttention over the
 *   packed sequences, Mamba by the causal conv and the selective scan).
 * - `prefill(prompts, cache)` / `step(seqIds, ids, cache)`: through the hybrid cache
 *   (JambaCache): attention layers write K/V into paged blocks and decode by paged attention;
 *   Mamba layers carry conv and SSM states, O(1) per token.
 * - `generate(prompt, options)`: prefill + decode through a cache, greedy or sampled.
 */
import {
  ArgumentError,
  type Backend,
  ShapeError,
  type Tensor,
  add,
  gather,
  hasKernel,
  matmul,
  rmsNorm,
  runKernel,
  scope,
  silu,
} from '@longseq/backend';
import { attentionVarlen } from '@longseq/flash-attention';
import {
  Sampler,
  type SamplingOptions,
  argmaxRows,
  checkMaxNewTokens,
  checkTokenIds,
  generateTokens,
  lastPositions,
  mambaSsmStep,
  promptRows,
  registerMambaKernels,
} from '@longseq/mamba';
import {
  type FileSource,
  causalConv1d,
  causalConv1dStep,
  linear,
  loadCheckpoint,
  loadConfig,
  nodeFileSource,
} from '@longseq/nn';
import { copyBlocks } from '@longseq/paged-kv';
import { selectiveScan } from '@longseq/selective-scan';
import { JambaCache, type JambaCacheOptions } from './cache';
import { type JambaConfig, jambaConfigFromHf } from './config';
import { type MoeRouting, moeForward, registerJambaKernels, routeTokens, swiglu } from './moe';
import {
  type JambaMambaDecodeAttrs,
  JambaMambaDecodeLayer,
  JambaMoeDecode,
  JambaNormMatvec,
  JambaSwigluDecode,
  type JambaSwigluDecodeAttrs,
} from './webgpu/fused-decode';
import {
  type JambaAttentionWeights,
  type JambaLayerWeights,
  type JambaMambaWeights,
  type JambaMlpWeights,
  type JambaTensorReader,
  type JambaWeights,
  jambaCheckpointReader,
  jambaRandomReader,
  jambaWeightTensors,
  uploadJambaWeights,
} from './weights';

export interface JambaForwardOptions {
  /** Only the last position's logits, `[B, 1, V]` (the LM head runs on B rows instead of B x L). */
  readonly lastOnly?: boolean;
  /** Called with each MoE layer's routing (layer index, routing of its B x L tokens). */
  readonly onRouting?: (layer: number, routing: MoeRouting) => void;
}

export interface JambaGenerateOptions extends SamplingOptions {
  /** Tokens to generate per sequence (>= 0). */
  readonly maxNewTokens: number;
  /** Also return the logits that chose each new token (`[maxNewTokens][rows * V]`). */
  readonly returnLogits?: boolean;
  /**
   * Sequences sampled per prompt (default 1): after the prompt is prefilled once, its sequence
   * is forked (KV blocks shared, Mamba states copied) and each fork samples on its own.
   * Results are ordered prompt by prompt: rows b * numSamples .. b * numSamples + n - 1.
   */
  readonly numSamples?: number;
  /**
   * true (default): decode through a hybrid cache, one token per step. false: no cache, every
   * step recomputes the whole sequence with `forward` (the reference path, O(L) per token).
   */
  readonly useCache?: boolean;
  /** A cache to use (its free slots and blocks must fit the request); default: one made for this call and disposed after. */
  readonly cache?: JambaCache;
  /** Options of the cache made for this call (default: room for the prompt and the new tokens). */
  readonly cacheOptions?: JambaCacheOptions;
}

export interface JambaGenerateResult {
  /** The new tokens of each sequence, `[rows][maxNewTokens]` (rows = prompts x numSamples). */
  readonly ids: number[][];
  /** With `returnLogits`: per new token, the logits rows `[rows * V]` that chose it. */
  readonly logits?: Float32Array[];
}

/** Where prefill writes: per sequence of the batch, its KV slots and its Mamba state slot. */
interface CacheSink {
  readonly cache: JambaCache;
  /** [B * L] KV slots (-1: skip, the prefix cache holds it). */
  readonly slots: number[];
  readonly stateSlots: number[];
}

export class JambaModel {
  private disposed = false;
  /** Identity [N, N]: transposes B and C from [B, L, N] to the scan's [B, N, L] as a matmul. */
  private readonly identityN: Tensor;

  private constructor(
    readonly backend: Backend,
    readonly config: JambaConfig,
    readonly weights: JambaWeights,
  ) {
    const n = config.dState;
    this.identityN = backend.tensor(
      Float32Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0)),
      [n, n],
    );
  }

  /** Loads a Hugging Face JambaForCausalLM folder: `config.json` and (sharded) safetensors. */
  static async load(backend: Backend, source: FileSource | string): Promise<JambaModel> {
    const files = typeof source === 'string' ? nodeFileSource(source) : source;
    const config = jambaConfigFromHf(await loadConfig(files));
    const checkpoint = await loadCheckpoint(files);
    return new JambaModel(
      backend,
      config,
      uploadJambaWeights(backend, config, jambaCheckpointReader(checkpoint)),
    );
  }

  /** A model from a config and a reader of its tensors by hub name. */
  static fromReader(backend: Backend, config: JambaConfig, read: JambaTensorReader): JambaModel {
    return new JambaModel(backend, config, uploadJambaWeights(backend, config, read));
  }

  /** A model with seeded random weights (`jambaRandomReader`), for benchmarks. */
  static fromRandom(backend: Backend, config: JambaConfig, seed = 0): JambaModel {
    return JambaModel.fromReader(backend, config, jambaRandomReader(config, seed));
  }

  /** Frees the weights. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of jambaWeightTensors(this.weights)) t.dispose();
    this.identityN.dispose();
  }

  /**
   * How `step()` runs the Mamba layers and the LM head: 'auto' (default) takes WebGPU's fused
   * decode kernels where the backend has them (three dispatches per Mamba layer, states updated
   * in place; the final norm and LM head in one), else 'composed' (the primitive ops, the conv
   * step and the SSM step kernel, on every backend).
   */
  decodePath: 'auto' | 'composed' = 'auto';

  /**
   * WebGPU fused decode: threads per matrix row (a power of two, 8..256); 0 (default) picks by
   * device (8 on CPU-emulated devices, 32 or 64 on GPUs). For tuning and tests.
   */
  decodeLanes = 0;

  /**
   * WebGPU fused decode of the MoE layers: 'gpu' (default, where the stacked expert weights
   * exist) routes on the GPU, three dispatches per MoE layer and no read back; 'host' reads the
   * router logits back and runs each expert with tokens on its rows.
   */
  decodeRouting: 'gpu' | 'host' = 'gpu';

  /** A hybrid cache for this model (see JambaCache). */
  createCache(options: JambaCacheOptions = {}): JambaCache {
    this.checkAlive();
    return new JambaCache(this.backend, this.config, options);
  }

  private checkAlive(): void {
    if (this.disposed) throw new ArgumentError('model', 'a model that has not been disposed', 'disposed');
  }

  /** Checks ids on the host: a non-empty batch of equal-length rows of integers in [0, vocab). */
  private checkIds(ids: readonly (readonly number[])[], argument: string): void {
    checkTokenIds(ids, argument, this.config.vocabSize);
  }

  private checkCache(cache: JambaCache, argument: string): void {
    if (!(cache instanceof JambaCache) || cache.config !== this.config || cache.isDisposed)
      throw new ArgumentError(argument, 'a live JambaCache made by this model (createCache)', cache);
  }

  /** Logits `[B, L, V]` for token ids `[B][L]` (rows of equal length), without a cache. */
  async forward(
    ids: readonly (readonly number[])[],
    options: JambaForwardOptions = {},
  ): Promise<{ logits: Tensor }> {
    this.checkAlive();
    this.checkIds(ids, 'ids');
    if (options === null || typeof options !== 'object')
      throw new ArgumentError('options', 'an object', options);
    const logits = await this.runSequence(ids, options, undefined);
    return { logits };
  }

  /**
   * Adds each prompt to the cache as a new sequence and runs it, writing its keys and values
   * into the cache's blocks and its Mamba states into its slot. Returns the sequence ids and
   * the logits of each prompt's last position, `[B, V]`. Throws CacheBudgetError (cache
   * unchanged) when the prompts do not fit.
   */
  async prefill(
    prompts: readonly (readonly number[])[],
    cache: JambaCache,
    options: Pick<JambaForwardOptions, 'onRouting'> = {},
  ): Promise<{ seqIds: number[]; logits: Tensor }> {
    this.checkAlive();
    this.checkIds(prompts, 'prompts');
    this.checkCache(cache, 'cache');
    cache.checkAdd(prompts, 'prompts');
    const seqIds: number[] = [];
    const slots: number[] = [];
    const stateSlots: number[] = [];
    for (const p of prompts) {
      const added = await cache.add(p);
      seqIds.push(added.seqId);
      slots.push(...added.slots);
      stateSlots.push(cache.slot(added.seqId));
    }
    const logits = await this.runSequence(
      prompts,
      { lastOnly: true, ...(options.onRouting ? { onRouting: options.onRouting } : {}) },
      { cache, slots, stateSlots },
    );
    const rows = logits.reshape([prompts.length, this.config.vocabSize]);
    logits.dispose(); // the view keeps the allocation
    return { seqIds, logits: rows };
  }

  /** The whole-sequence pass, optionally writing K/V and final states into a cache. */
  private async runSequence(
    ids: readonly (readonly number[])[],
    options: JambaForwardOptions,
    sink: CacheSink | undefined,
  ): Promise<Tensor> {
    const batch = ids.length;
    const length = ids[0]!.length;
    const { backend, weights, config } = this;
    return scope(async () => {
      let hidden = await gather(weights.embeddings, backend.tensor(ids.flat(), [batch, length], 'i32'));
      for (let l = 0; l < weights.layers.length; l++) {
        const layer = weights.layers[l]!;
        const next = await scope(async () => {
          const normed = await rmsNorm(hidden, layer.inputNorm, { eps: config.eps });
          const mixed =
            layer.mixer.kind === 'attention'
              ? await this.attentionSequence(layer.mixer, normed, batch, length, l, sink)
              : await this.mambaSequence(layer.mixer, normed, l, sink);
          const h = await add(hidden, mixed);
          const ff = await this.feedForward(layer, h, batch * length, l, options.onRouting);
          return add(h, ff.reshape(h.shape));
        });
        hidden.dispose();
        hidden = next;
      }
      const last = options.lastOnly ? await lastPositions(hidden, batch, length) : hidden;
      return this.head(last);
    });
  }

  /** Attention over whole sequences: hidden `[B, L, M]` -> `[B, L, M]`; with a sink, K/V go to the cache. */
  private async attentionSequence(
    w: JambaAttentionWeights,
    normed: Tensor,
    batch: number,
    length: number,
    layer: number,
    sink: CacheSink | undefined,
  ): Promise<Tensor> {
    const { numHeads: H, numKvHeads: Hkv, headDim: d, dModel: M } = this.config;
    const T = batch * length;
    const rows = normed.reshape([T, M]);
    // [T, H * d] is the packed layout [T, H, d] as it stands: no transposes
    const q = (await matmul(rows, w.qProj, { transposeB: true })).reshape([T, H, d]);
    const k = (await matmul(rows, w.kProj, { transposeB: true })).reshape([T, Hkv, d]);
    const v = (await matmul(rows, w.vProj, { transposeB: true })).reshape([T, Hkv, d]);
    if (sink?.cache.kv) await sink.cache.kv.write(sink.cache.attentionIndex[layer]!, sink.slots, k, v);
    const cu = Array.from({ length: batch + 1 }, (_, b) => b * length);
    const o = await attentionVarlen(q, k, v, { causal: true, cuSeqlensQ: cu, cuSeqlensK: cu });
    const out = await matmul(o.reshape([T, H * d]), w.oProj, { transposeB: true });
    return out.reshape([batch, length, M]);
  }

  /** The Mamba mixer over whole sequences: `[B, L, M]` -> `[B, L, M]` (channels-first inside). */
  private async mambaSequence(
    w: JambaMambaWeights,
    normed: Tensor,
    layer: number,
    sink: CacheSink | undefined,
  ): Promise<Tensor> {
    const { config } = this;
    const returnState = sink !== undefined;
    // W [D, M] against hidden [B, L, M] transposed: [B, D, L], the scan's layout
    let x = await matmul(w.inProjX, normed, { transposeB: true });
    let z = await matmul(w.inProjZ, normed, { transposeB: true });
    if (w.inProjBiasX) x = await add(x, w.inProjBiasX.reshape([config.dInner, 1]));
    if (w.inProjBiasZ) z = await add(z, w.inProjBiasZ.reshape([config.dInner, 1]));
    const conv = await causalConv1d(x, w.convWeight, {
      ...(w.convBias ? { bias: w.convBias } : {}),
      returnFinalState: returnState,
    });
    const u = await silu(conv.output); // [B, D, L]
    // x_proj in the [B, L, *] layout, where the RMSNorms of dt, B and C normalize the last axis
    const dtLow = await rmsNorm(
      await matmul(u, w.xProjDt, { transposeA: true, transposeB: true }),
      w.dtNorm,
      {
        eps: config.eps,
      },
    ); // [B, L, R]
    const Bl = await rmsNorm(await matmul(u, w.xProjB, { transposeA: true, transposeB: true }), w.bNorm, {
      eps: config.eps,
    }); // [B, L, N]
    const Cl = await rmsNorm(await matmul(u, w.xProjC, { transposeA: true, transposeB: true }), w.cNorm, {
      eps: config.eps,
    });
    const B = await matmul(this.identityN, Bl, { transposeB: true }); // [B, N, L]
    const C = await matmul(this.identityN, Cl, { transposeB: true });
    const delta = await matmul(w.dtProj, dtLow, { transposeB: true }); // [B, D, L]
    const scan = await selectiveScan(u, delta, w.A, B, C, {
      D: w.D,
      z,
      deltaBias: w.dtBias,
      deltaSoftplus: true,
      returnLastState: returnState,
    });
    if (sink) {
      const m = sink.cache.mambaIndex[layer]!;
      await this.storeStates(sink.cache, m, sink.stateSlots, conv.finalState!, scan.lastState!);
    }
    let out = await matmul(scan.y, w.outProj, { transposeA: true, transposeB: true }); // [B, L, M]
    if (w.outProjBias) out = await add(out, w.outProjBias);
    return out;
  }

  /**
   * Copies a batch's new states `[B, ...]` into the cache's pools at the batch's slots (the
   * new tensors belong to the caller's scope, the pools to the cache).
   */
  private async storeStates(
    cache: JambaCache,
    m: number,
    stateSlots: readonly number[],
    conv: Tensor,
    ssm: Tensor,
  ): Promise<void> {
    const pairs = stateSlots.map((s, b) => [b, s] as const);
    await copyBlocks(conv, cache.conv[m]!, pairs);
    await copyBlocks(ssm, cache.ssm[m]!, pairs);
  }

  /**
   * A batch's states `[B, ...]` from the pools: the pools themselves when the batch is the
   * whole pool in slot order (as in generate), else gathered into new tensors.
   */
  private async loadStates(
    cache: JambaCache,
    m: number,
    stateSlots: readonly number[],
  ): Promise<{ conv: Tensor; ssm: Tensor }> {
    const pool = { conv: cache.conv[m]!, ssm: cache.ssm[m]! };
    if (stateSlots.length === cache.maxSequences && stateSlots.every((s, i) => s === i)) return pool;
    const pairs = stateSlots.map((s, b) => [s, b] as const);
    const B = stateSlots.length;
    const conv = this.backend.empty([B, ...pool.conv.shape.slice(1)]);
    const ssm = this.backend.empty([B, ...pool.ssm.shape.slice(1)]);
    await copyBlocks(pool.conv, conv, pairs);
    await copyBlocks(pool.ssm, ssm, pairs);
    return { conv, ssm };
  }

  /** The feed-forward of a layer on rows `[..., M]` (T of them), after its pre-FF norm. */
  private async feedForward(
    layer: JambaLayerWeights,
    h: Tensor,
    tokens: number,
    index: number,
    onRouting: ((layer: number, routing: MoeRouting) => void) | undefined,
  ): Promise<Tensor> {
    const normed = (await rmsNorm(h, layer.preFfNorm, { eps: this.config.eps })).reshape([
      tokens,
      this.config.dModel,
    ]);
    const ff = layer.feedForward;
    if (ff.kind === 'mlp') return swiglu(normed, ff);
    const { output, routing } = await moeForward(normed, ff, this.config.topK);
    onRouting?.(index, routing);
    return output;
  }

  /** Final norm and LM head: `[..., M]` -> `[..., V]`. */
  private async head(hidden: Tensor): Promise<Tensor> {
    return scope(async () => {
      const normed = await rmsNorm(hidden, this.weights.finalNorm, { eps: this.config.eps });
      return linear(normed, this.weights.lmHead);
    });
  }

  /**
   * One token per sequence through the cache: ids `[B]` appended to sequences `seqIds`, logits
   * `[B, V]`. Attention layers write the new K/V into the paged blocks and attend through the
   * block tables; Mamba layers advance their states. Throws CacheBudgetError (cache unchanged)
   * when a sequence needs a block and none is free.
   */
  async step(seqIds: readonly number[], ids: readonly number[], cache: JambaCache): Promise<Tensor> {
    this.checkAlive();
    this.checkCache(cache, 'cache');
    cache.checkSequences(seqIds, 'seqIds');
    if (!Array.isArray(ids) || ids.length !== seqIds.length)
      throw new ShapeError(
        'ids',
        `[${seqIds.length}] (one id per sequence)`,
        Array.isArray(ids) ? [ids.length] : String(ids),
      );
    this.checkIds(
      ids.map((id) => [id]),
      'ids',
    );
    const slots = await cache.append(seqIds, ids);
    const stateSlots = seqIds.map((s) => cache.slot(s));
    const kvSeqs = seqIds.map((s) => cache.kvSequence(s));
    const { backend, weights, config } = this;
    const batch = seqIds.length;
    registerMambaKernels();
    registerJambaKernels();
    const fused = this.decodePath === 'auto' && hasKernel(JambaMambaDecodeLayer, backend.kind);
    return scope(async () => {
      const idTensor = backend.tensor(ids, [batch], 'i32');
      let hidden = await gather(weights.embeddings, idTensor); // [B, M]
      for (let l = 0; l < weights.layers.length; l++) {
        const layer = weights.layers[l]!;
        const next = await scope(async () => {
          let h: Tensor;
          if (fused && layer.mixer.kind === 'mamba') {
            // the residual stream is updated in place: h = hidden + mixer(norm(hidden))
            await this.fusedMambaStep(layer, hidden, cache, cache.mambaIndex[l]!, stateSlots);
            h = hidden;
          } else {
            h = await add(hidden, await this.mixerStep(layer, hidden, cache, l, slots, kvSeqs, stateSlots));
          }
          if (fused) {
            // h += feedForward(norm(h)), in place
            await this.fusedFeedForward(layer, h, batch, idTensor);
            return h;
          }
          const ff = await this.feedForward(layer, h, batch, l, undefined);
          return add(h, ff);
        });
        if (next !== hidden) {
          hidden.dispose();
          hidden = next;
        }
      }
      if (!fused) return this.head(hidden);
      const out = (await runKernel(JambaNormMatvec, backend, [hidden, weights.finalNorm, weights.lmHead], {
        batch,
        width: config.dModel,
        rows: config.vocabSize,
        eps: config.eps,
        lanes: this.decodeLanes,
      })) as Tensor[];
      return out[0]!;
    });
  }

  /** The composed mixer of one decode step: normed attention (paged) or Mamba, `[B, M]` -> `[B, M]`. */
  private async mixerStep(
    layer: JambaLayerWeights,
    hidden: Tensor,
    cache: JambaCache,
    l: number,
    slots: readonly number[],
    kvSeqs: readonly number[],
    stateSlots: readonly number[],
  ): Promise<Tensor> {
    const { config } = this;
    const batch = stateSlots.length;
    const normed = await rmsNorm(hidden, layer.inputNorm, { eps: config.eps });
    let mixed: Tensor;
    if (layer.mixer.kind === 'attention') {
      const w = layer.mixer;
      const { numHeads: H, numKvHeads: Hkv, headDim: d } = config;
      const q = (await matmul(normed, w.qProj, { transposeB: true })).reshape([batch, H, d]);
      const k = (await matmul(normed, w.kProj, { transposeB: true })).reshape([batch, Hkv, d]);
      const v = (await matmul(normed, w.vProj, { transposeB: true })).reshape([batch, Hkv, d]);
      const a = cache.attentionIndex[l]!;
      await cache.kv!.write(a, slots, k, v);
      const o = await cache.kv!.attention(a, q, kvSeqs);
      mixed = await matmul(o.reshape([batch, H * d]), w.oProj, { transposeB: true });
    } else {
      mixed = await this.mambaStep(layer.mixer, normed, cache, cache.mambaIndex[l]!, stateSlots);
    }
    return mixed;
  }

  /**
   * WebGPU's fused feed-forward of a decode step, `h` [B, M] updated in place: a dense MLP in
   * two dispatches (norm + gate/up + SiLU product; down + residual), or the MoE: routed on the
   * GPU (`JambaMoeDecode`, stacked experts), or the router (norm + product) read back and
   * routed on the host, then each expert with tokens runs its gate/up on its rows (of the
   * stacks, or its own tensors), and after all of them (they read h) each adds its down
   * product times the routing weight into its rows. Experts without tokens launch nothing.
   */
  private async fusedFeedForward(
    layer: JambaLayerWeights,
    h: Tensor,
    batch: number,
    ids: Tensor,
  ): Promise<void> {
    const { backend, config } = this;
    const ff = layer.feedForward;
    const base = {
      batch,
      dModel: config.dModel,
      intermediate: config.intermediateSize,
      eps: config.eps,
      lanes: this.decodeLanes,
    };
    const gateUp = async (w: JambaMlpWeights, rows: Tensor, a: JambaSwigluDecodeAttrs) =>
      (
        (await runKernel(
          `${JambaSwigluDecode}GateUp`,
          backend,
          [h, layer.preFfNorm, w.gateProj, w.upProj, rows],
          a,
        )) as Tensor[]
      )[0]!;
    const down = (
      w: JambaMlpWeights,
      act: Tensor,
      rows: Tensor,
      weights: Tensor,
      a: JambaSwigluDecodeAttrs,
    ) => runKernel(`${JambaSwigluDecode}Down`, backend, [act, w.downProj, rows, weights, h], a);
    if (ff.kind === 'mlp') {
      const a = { ...base, tokens: batch, indexed: false, rowOffset: 0, expert: 0 };
      // ids and the norm weight stand in for the unread rows and weights
      const act = await gateUp(ff, ids, a);
      try {
        await down(ff, act, ids, layer.preFfNorm, a);
      } finally {
        act.dispose();
      }
      return;
    }
    const E = ff.router.shape[0]!;
    if (ff.stacked && this.decodeRouting === 'gpu') {
      const routing = (await runKernel(
        JambaMoeDecode,
        backend,
        [h, layer.preFfNorm, ff.router, ff.stacked.gate, ff.stacked.up, ff.stacked.down],
        { ...base, experts: E, topK: config.topK },
      )) as Tensor[];
      for (const t of routing) t.dispose();
      return;
    }
    const logitsT = (
      (await runKernel(JambaNormMatvec, backend, [h, layer.preFfNorm, ff.router], {
        batch,
        width: config.dModel,
        rows: E,
        eps: config.eps,
        lanes: this.decodeLanes,
      })) as Tensor[]
    )[0]!;
    const logits = await logitsT.read().finally(() => logitsT.dispose());
    const routing = routeTokens(logits, batch, E, config.topK);
    const rowList: number[] = [];
    const weightList: number[] = [];
    const offsets: number[] = [];
    for (let e = 0; e < E; e++) {
      offsets.push(rowList.length);
      for (const t of routing.tokensOf[e]!) {
        rowList.push(t);
        for (let j = 0; j < config.topK; j++)
          if (routing.experts[t * config.topK + j] === e)
            weightList.push(routing.weights[t * config.topK + j]!);
      }
    }
    const rows = backend.tensor(rowList, [rowList.length], 'i32');
    const weights = backend.tensor(Float32Array.from(weightList), [weightList.length]);
    const acts: Tensor[] = [];
    try {
      const used = routing.tokensOf.flatMap((list, e) => (list.length > 0 ? [e] : []));
      // stacked experts: expert e's rows of the stacks; else its own tensors
      const stacked = ff.stacked;
      const expertOf = (e: number): JambaMlpWeights =>
        stacked
          ? { kind: 'mlp', gateProj: stacked.gate, upProj: stacked.up, downProj: stacked.down }
          : ff.experts![e]!;
      const attrsOf = (e: number) => ({
        ...base,
        tokens: routing.tokensOf[e]!.length,
        indexed: true,
        rowOffset: offsets[e]!,
        expert: stacked ? e : 0,
      });
      for (const e of used) acts.push(await gateUp(expertOf(e), rows, attrsOf(e)));
      for (let i = 0; i < used.length; i++) {
        const e = used[i]!;
        await down(expertOf(e), acts[i]!, rows, weights, attrsOf(e));
      }
    } finally {
      for (const t of acts) t.dispose();
      rows.dispose();
      weights.dispose();
    }
  }

  /** WebGPU's fused decode of one Mamba layer: `hidden` [B, M] and the states updated in place. */
  private async fusedMambaStep(
    layer: JambaLayerWeights,
    hidden: Tensor,
    cache: JambaCache,
    m: number,
    stateSlots: readonly number[],
  ): Promise<void> {
    const w = layer.mixer as JambaMambaWeights;
    const { config } = this;
    const direct = stateSlots.length === cache.maxSequences && stateSlots.every((s, i) => s === i);
    const states = await this.loadStates(cache, m, stateSlots);
    const attrs: JambaMambaDecodeAttrs = {
      batch: stateSlots.length,
      dModel: config.dModel,
      dInner: config.dInner,
      dState: config.dState,
      dtRank: config.dtRank,
      dConv: config.dConv,
      eps: config.eps,
      hasInBias: w.inProjBiasX !== undefined,
      hasConvBias: w.convBias !== undefined,
      hasOutBias: w.outProjBias !== undefined,
      lanes: this.decodeLanes,
    };
    await runKernel(
      JambaMambaDecodeLayer,
      this.backend,
      [
        hidden,
        layer.inputNorm,
        w.inProjX,
        w.inProjZ,
        states.conv,
        w.decodeParams,
        w.xProjDt,
        w.xProjB,
        w.xProjC,
        w.dtProj,
        states.ssm,
        w.outProj,
        w.outProjBias ?? layer.inputNorm,
      ],
      attrs,
    );
    if (!direct) await this.storeStates(cache, m, stateSlots, states.conv, states.ssm);
  }

  /** One token of the Mamba mixer: normed `[B, M]` -> `[B, M]`, states advanced in the cache. */
  private async mambaStep(
    w: JambaMambaWeights,
    normed: Tensor,
    cache: JambaCache,
    m: number,
    stateSlots: readonly number[],
  ): Promise<Tensor> {
    const { config } = this;
    const states = await this.loadStates(cache, m, stateSlots);
    const x = await linear(normed, w.inProjX, w.inProjBiasX);
    const z = await linear(normed, w.inProjZ, w.inProjBiasZ);
    const conv = await causalConv1dStep(x, states.conv, w.convWeight, w.convBias ? { bias: w.convBias } : {});
    const u = await silu(conv.output);
    const dtLow = await rmsNorm(await linear(u, w.xProjDt), w.dtNorm, { eps: config.eps });
    const B = await rmsNorm(await linear(u, w.xProjB), w.bNorm, { eps: config.eps });
    const C = await rmsNorm(await linear(u, w.xProjC), w.cNorm, { eps: config.eps });
    const dt = await linear(dtLow, w.dtProj);
    const ssm = await mambaSsmStep({ u, dt, A: w.A, B, C, D: w.D, z, dtBias: w.dtBias, state: states.ssm });
    await this.storeStates(cache, m, stateSlots, conv.state, ssm.state);
    return linear(ssm.y, w.outProj, w.outProjBias);
  }

  /**
   * Greedy decoding's step: appends ids to the sequences and returns the next ids `[B]` (the
   * argmax of each row, first index on ties, as torch.argmax). On WebGPU the argmax runs on
   * the GPU and only B ids are read back.
   */
  async stepGreedy(seqIds: readonly number[], ids: readonly number[], cache: JambaCache): Promise<number[]> {
    const logits = await this.step(seqIds, ids, cache);
    try {
      return await argmaxRows(logits, seqIds.length, this.config.vocabSize);
    } finally {
      logits.dispose();
    }
  }

  /**
   * Generates `maxNewTokens` tokens after each prompt (`[B][L]`, or one prompt `[L]`), greedy
   * by default or sampled (temperature, topK, topP, seed), through a hybrid cache (or, with
   * `useCache: false`, recomputing the whole sequence every step).
   */
  async generate(
    prompt: readonly number[] | readonly (readonly number[])[],
    options: JambaGenerateOptions,
  ): Promise<JambaGenerateResult> {
    this.checkAlive();
    const ids = promptRows(prompt);
    this.checkIds(ids, 'prompt');
    const maxNewTokens = checkMaxNewTokens(options);
    const numSamples = options.numSamples ?? 1;
    if (!Number.isInteger(numSamples) || numSamples < 1)
      throw new ArgumentError('options.numSamples', 'an integer >= 1', numSamples);
    if (options.useCache !== undefined && typeof options.useCache !== 'boolean')
      throw new ArgumentError('options.useCache', 'a boolean', options.useCache);
    const useCache = options.useCache ?? true;
    if (options.cache !== undefined) {
      this.checkCache(options.cache, 'options.cache');
      if (!useCache) throw new ArgumentError('options.cache', 'no cache with useCache: false', 'a cache');
    }
    const sampler = new Sampler(options);
    const vocab = this.config.vocabSize;
    const rows = ids.length * numSamples;
    const returnLogits = options.returnLogits ?? false;
    if (maxNewTokens === 0)
      return { ids: Array.from({ length: rows }, () => []), ...(returnLogits ? { logits: [] } : {}) };

    if (!useCache) {
      const seqs = ids.flatMap((p) => Array.from({ length: numSamples }, () => [...p]));
      const forwardLast = async () => (await this.forward(seqs, { lastOnly: true })).logits;
      const first = await forwardLast();
      const firstLogits = await first.read().finally(() => first.dispose());
      return generateTokens({
        sampler,
        rows,
        vocab,
        maxNewTokens,
        first: firstLogits as Float32Array,
        returnLogits,
        step: (chosen) => {
          for (let r = 0; r < rows; r++) seqs[r]!.push(chosen[r]!);
          return forwardLast();
        },
      });
    }

    const length = ids[0]!.length;
    const cache =
      options.cache ??
      this.createCache({
        maxSequences: rows,
        maxTokens: length + maxNewTokens,
        ...options.cacheOptions,
      });
    // room for every sequence's prompt and new tokens (forks share the prompt's full blocks)
    const seqIds: number[] = [];
    try {
      const prefilled = await this.prefill(ids, cache);
      seqIds.push(...prefilled.seqIds);
      const promptLogits = (await prefilled.logits.read()) as Float32Array;
      prefilled.logits.dispose();
      const last = new Float32Array(rows * vocab);
      const order: number[] = [];
      for (let b = 0; b < ids.length; b++) {
        const seq = prefilled.seqIds[b]!;
        for (let s = 0; s < numSamples; s++) {
          const id = s === 0 ? seq : await cache.fork(seq);
          if (s > 0) seqIds.push(id);
          order.push(id);
          last.set(promptLogits.subarray(b * vocab, (b + 1) * vocab), (b * numSamples + s) * vocab);
        }
      }
      seqIds.splice(0, seqIds.length, ...order);
      return await generateTokens({
        sampler,
        rows,
        vocab,
        maxNewTokens,
        first: last,
        returnLogits,
        step: (chosen) => this.step(seqIds, chosen, cache),
        stepGreedy: (chosen) => this.stepGreedy(seqIds, chosen, cache),
      });
    } finally {
      if (options.cache) {
        for (const s of seqIds) if (cache.has(s)) cache.free(s);
      } else cache.dispose();
    }
  }
}
