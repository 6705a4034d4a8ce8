/**
 * Vision Mamba (hustvl/Vim): an image becomes a sequence of patch tokens (a convolution with
 * kernel = patch size), a class token joins it (in the middle or at the head), an absolute
 * position embedding is added, and `depth` blocks run
 *   residual = residual + hidden;  hidden = mixer(norm(residual))
 * with a bidirectional Mamba mixer (bimamba v2): the shared in_proj gives x and z, each scan
 * direction (Vim: forward and backward; VMamba's cross-scan: four) runs its own causal conv,
 * x_proj, dt_proj and selective scan over the tokens in its order, the outputs are merged
 * back into token order (summed, divided by the count when if_devide_out) and the shared
 * out_proj maps them back. A final add + norm, then the class token's features (or the pooled
 * tokens) and the head.
 *
 * On the device the directions are stacked along the channels ([B, K*D, L]): one gather puts
 * each direction's sequence in place, then one conv, one scan (B and C grouped by direction)
 * and one merge serve them all, whatever K is. Channels-first inside the mixer, as in
 * @longseq/mamba.
 */
import {
  ArgumentError,
  type Backend,
  ShapeError,
  type Tensor,
  add,
  checkTensor,
  gather,
  layerNorm,
  matmul,
  max,
  mean,
  mul,
  rmsNorm,
  scope,
  silu,
} from '@longseq/backend';
import {
  type FileSource,
  causalConv1d,
  linear,
  loadCheckpoint,
  loadConfig,
  nodeFileSource,
} from '@longseq/nn';
import { selectiveScan } from '@longseq/selective-scan';
import { type VimConfig, vimConfigFromJson } from './config';
import { vimGather, vimScanMerge, vimTokens } from './ops';
import { type ScanOrder, scanOrder } from './scan-order';
import {
  type TensorReader,
  type VimLayerWeights,
  type VimWeights,
  checkVimTensorNames,
  uploadVimWeights,
  vimRandomReader,
  vimWeightTensors,
} from './weights';

/** Images for the model: a tensor `[B, C, H, W]`, or host data with its shape, or a flat array of B images. */
export type VimImages =
  | Tensor
  | { readonly data: ArrayLike<number>; readonly shape: readonly number[] }
  | Float32Array;

export class VisionMamba {
  private disposed = false;
  /** The token sequence and the orders the scans visit it in (for visualisations). */
  readonly order: ScanOrder;
  /**
   * How the mixer's projections run (the results agree within float32 rounding):
   * - 'channels' (default): in_proj x and z as two matmuls straight into channels-first
   *   [B, D, L], a gather per direction, out_proj reading the merged [B, D, L] transposed;
   * - 'tokens': in_proj as one GEMM over all B*L tokens into [B, L, 2D], the gathers transpose
   *   while they reorder, the merge writes [B, L, D] and out_proj is one GEMM again.
   */
  layout: 'channels' | 'tokens' = 'channels';
  /**
   * The selective scan's algorithm (see @longseq/selective-scan). Default 'parallel': Vim's
   * sequences are short (197 tokens at 224 px / patch 16), and on an H100 the parallel kernel
   * beat the sequential one at Vim-tiny's shape at batch 1 (GPU time 11.5 vs 18.4 ms) and at
   * batch 64 (41.4 vs 45.0 ms), although 'auto' would pick sequential for 64 x 768 channels
   * (BENCHMARKS.md, "Vision Mamba").
   */
  scanAlgorithm: 'auto' | 'sequential' | 'parallel' = 'parallel';

  private constructor(
    readonly backend: Backend,
    readonly config: VimConfig,
    readonly weights: VimWeights,
  ) {
    this.order = scanOrder(config);
  }

  /** Loads a hustvl/Vim-layout folder (`config.json` + `model.safetensors` or a sharded index). */
  static async load(backend: Backend, source: FileSource | string): Promise<VisionMamba> {
    const files = typeof source === 'string' ? nodeFileSource(source) : source;
    const json = await loadConfig(files);
    vimConfigFromJson(json); // a bad config is refused before the weights are read
    const checkpoint = await loadCheckpoint(files);
    // fields config.json leaves out (hustvl's Mamba `bias`, `conv_bias`, `init_layer_scale`)
    // follow the tensors the checkpoint holds; a tensor the config leaves unused is an error
    const config = vimConfigFromJson(json, (name) => checkpoint.has(name));
    checkVimTensorNames(config, checkpoint.names);
    return new VisionMamba(
      backend,
      config,
      uploadVimWeights(backend, config, (n, s) => checkpoint.read(n, s)),
    );
  }

  /** A model from a config and a reader of its tensors by checkpoint name. */
  static fromReader(backend: Backend, config: VimConfig, read: TensorReader): VisionMamba {
    return new VisionMamba(backend, config, uploadVimWeights(backend, config, read));
  }

  /** A model with seeded random weights (benchmarks, tests). */
  static fromRandom(backend: Backend, config: VimConfig, seed = 0): VisionMamba {
    return VisionMamba.fromReader(backend, config, vimRandomReader(config, seed));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of vimWeightTensors(this.weights)) t.dispose();
  }

  /** The input shape of one image, `[C, H, W]`. */
  get imageShape(): [number, number, number] {
    const { channels, imgSize } = this.config;
    return [channels, imgSize, imgSize];
  }

  /**
   * Checks images on the host (typed errors before any GPU work) and returns them as a
   * tensor `[B, C, H, W]` (uploaded when given as host data; `owned` says so).
   */
  private toTensor(images: VimImages): { tensor: Tensor; owned: boolean } {
    if (this.disposed) throw new ArgumentError('model', 'a model that has not been disposed', 'disposed');
    const [C, H, W] = this.imageShape;
    const expected = `[B, ${C}, ${H}, ${W}] with B >= 1`;
    const check = (shape: readonly number[]) => {
      if (shape.length !== 4 || shape[0]! < 1 || shape[1] !== C || shape[2] !== H || shape[3] !== W)
        throw new ShapeError('images', expected, shape);
    };
    if (images instanceof Float32Array) {
      const per = C * H * W;
      if (images.length === 0 || images.length % per !== 0)
        throw new ShapeError('images', `B x ${C} x ${H} x ${W} values (B >= 1)`, [images.length]);
      return { tensor: this.backend.tensor(images, [images.length / per, C, H, W]), owned: true };
    }
    if (images !== null && typeof images === 'object' && 'backend' in images && 'dtype' in images) {
      checkTensor(images as Tensor, 'images');
      check(images.shape);
      if (images.dtype !== 'f32') throw new ArgumentError('images', 'an f32 tensor', images.dtype);
      if (images.backend !== this.backend)
        throw new ArgumentError('images', "a tensor on the model's backend", images.backend.name);
      return { tensor: images as Tensor, owned: false };
    }
    const host = images as { data?: ArrayLike<number>; shape?: readonly number[] };
    if (!host || !Array.isArray(host.shape) || host.data === undefined)
      throw new ArgumentError('images', 'a Tensor, { data, shape } or a Float32Array', images);
    check(host.shape);
    const size = host.shape.reduce((a, b) => a * b, 1);
    if (host.data.length !== size)
      throw new ShapeError('images.data', `${size} values (the product of images.shape)`, [host.data.length]);
    return { tensor: this.backend.tensor(host.data, host.shape), owned: true };
  }

  /**
   * Logits `[B, numClasses]`: the head on the final-normed class token (or on the tokens
   * pooled by `finalPool`; with 'max', as in hustvl/Vim, the head runs on every token and each
   * class takes its largest logit).
   */
  async classify(images: VimImages): Promise<Tensor> {
    const { tensor, owned } = this.toTensor(images);
    try {
      return await scope(async () => {
        const { weights } = this;
        if (this.order.clsIndex < 0 && this.config.finalPool === 'max') {
          // hustvl's 'max': the head on every token, then the max of each class's logits
          const normed = await this.norm(await this.backbone(tensor), weights.normF, weights.normFBias);
          return max(await linear(normed, weights.head, weights.headBias), { axis: 1 });
        }
        return linear(await this.featuresOf(tensor), weights.head, weights.headBias);
      });
    } finally {
      if (owned) tensor.dispose();
    }
  }

  /**
   * The final-normed class token `[B, embedDim]` (or the tokens pooled by `finalPool` without a
   * class token; for 'max' the per-channel max, where hustvl returns every token: see
   * `tokenStates`).
   */
  async features(images: VimImages): Promise<Tensor> {
    const { tensor, owned } = this.toTensor(images);
    try {
      return await scope(() => this.featuresOf(tensor));
    } finally {
      if (owned) tensor.dispose();
    }
  }

  /**
   * Every token's final-normed state `[B, L, embedDim]` (token order: `order.patchToken`,
   * the class token at `order.clsIndex`), e.g. to show what each patch carries.
   */
  async tokenStates(images: VimImages): Promise<Tensor> {
    const { tensor, owned } = this.toTensor(images);
    try {
      return await scope(async () =>
        this.norm(await this.backbone(tensor), this.weights.normF, this.weights.normFBias),
      );
    } finally {
      if (owned) tensor.dispose();
    }
  }

  private norm(x: Tensor, weight: Tensor, bias?: Tensor): Promise<Tensor> {
    const eps = this.config.eps;
    return bias ? layerNorm(x, weight, bias, { eps }) : rmsNorm(x, weight, { eps });
  }

  private async featuresOf(images: Tensor): Promise<Tensor> {
    const { config, weights, order } = this;
    const residual = await this.backbone(images);
    const batch = images.shape[0]!;
    const L = order.length;
    const M = config.embedDim;
    if (order.clsIndex >= 0 || config.finalPool === 'none') {
      // One token per image: norm only that row (the norm is per token).
      const token = order.clsIndex >= 0 ? order.clsIndex : L - 1;
      const rows = this.backend.tensor(
        Array.from({ length: batch }, (_, b) => b * L + token),
        [batch],
        'i32',
      );
      const picked = await gather(residual.reshape([batch * L, M]), rows);
      return this.norm(picked, weights.normF, weights.normFBias);
    }
    const normed = await this.norm(residual, weights.normF, weights.normFBias);
    return config.finalPool === 'max' ? max(normed, { axis: 1 }) : mean(normed, { axis: 1 });
  }

  /** Patch embedding, tokens and the blocks: the final residual stream `[B, L, M]` (before norm_f). */
  private async backbone(images: Tensor): Promise<Tensor> {
    const { weights, order } = this;
    const patches = await vimGather(images, weights.patchIndex); // [B, P, C*p*p]
    const embedded = await matmul(patches, weights.patchWeight, { transposeB: true }); // [B, P, M]
    let residual = await vimTokens(embedded, weights.patchBias, {
      ...(weights.cls ? { cls: weights.cls, clsIndex: order.clsIndex } : {}),
      ...(weights.pos ? { pos: weights.pos } : {}),
    });
    let hidden: Tensor | undefined;
    for (const layer of weights.layers) {
      const next = await scope(async () => {
        const sum = hidden ? await add(residual, hidden) : residual;
        const normed = await this.norm(sum, layer.norm, layer.normBias);
        return { sum, out: await this.mixer(layer, normed) };
      });
      if (next.sum !== residual) residual.dispose();
      hidden?.dispose();
      residual = next.sum;
      hidden = next.out;
    }
    if (!hidden) return residual;
    const out = await add(residual, hidden);
    residual.dispose();
    hidden.dispose();
    return out;
  }

  /** The bidirectional (or cross) mixer: normed `[B, L, M]` -> `[B, L, M]`. */
  private async mixer(layer: VimLayerWeights, normed: Tensor): Promise<Tensor> {
    const { config, weights, order } = this;
    const batch = normed.shape[0]!;
    const L = order.length;
    const K = order.directions.length;
    const { dInner: D, dState: N } = config;
    const tokens = this.layout === 'tokens';
    let xs: Tensor;
    let zs: Tensor;
    if (tokens) {
      // One GEMM over every token: [B, L, 2D]; the gathers reorder and transpose to [B, K*D, L].
      const xz = await linear(normed, layer.inProj, layer.inProjBias);
      xs = (await vimGather(xz, weights.scanIndexX)).reshape([batch, K * D, L]);
      zs = (await vimGather(xz, weights.scanIndexZ)).reshape([batch, K * D, L]);
    } else {
      // in_proj [D, M] against normed [B, L, M] transposed: [B, D, L], channels-first (its
      // bias a [D, 1] column broadcast over the tokens).
      let x = await matmul(layer.inProjX, normed, { transposeB: true });
      let z = await matmul(layer.inProjZ, normed, { transposeB: true });
      if (layer.inProjBiasX && layer.inProjBiasZ) {
        x = await add(x, layer.inProjBiasX);
        z = await add(z, layer.inProjBiasZ);
      }
      // Each direction's sequence, stacked along the channels: [B, K*D, L].
      xs = (await vimGather(x, weights.scanIndex)).reshape([batch, K * D, L]);
      zs = (await vimGather(z, weights.scanIndex)).reshape([batch, K * D, L]);
    }
    const conv = await causalConv1d(xs, layer.convWeight, layer.convBias ? { bias: layer.convBias } : {});
    const u = await silu(conv.output);
    // Block-diagonal projections: each direction's x_proj / dt_proj on its own channels.
    const dtLow = await matmul(layer.xProjDt, u); // [B, K*R, L]
    const B = (await matmul(layer.xProjB, u)).reshape([batch, K, N, L]);
    const C = (await matmul(layer.xProjC, u)).reshape([batch, K, N, L]);
    const delta = await matmul(layer.dtProj, dtLow); // [B, K*D, L]
    const { y } = await selectiveScan(u, delta, layer.A, B, C, {
      D: layer.D,
      z: zs,
      deltaBias: layer.dtBias,
      deltaSoftplus: true,
      algorithm: this.scanAlgorithm,
    });
    const scale = config.divideOut ? 1 / K : 1;
    const merged = await vimScanMerge(y.reshape([batch, K, D, L]), weights.scanInverse, scale, {
      tokenMajor: tokens,
    });
    // [B, L, D] through out_proj as one GEMM, or merged [B, D, L] read transposed: [B, L, M].
    let out = tokens
      ? await linear(merged, layer.outProj, layer.outProjBias)
      : await matmul(merged, layer.outProj, { transposeA: true, transposeB: true });
    if (!tokens && layer.outProjBias) out = await add(out, layer.outProjBias);
    // hustvl's layer scale: out * gamma, per channel
    if (layer.gamma) out = await mul(out, layer.gamma);
    return out;
  }
}
