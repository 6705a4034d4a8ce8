/**
 * VimConfig from a hustvl/Vim-style config.json (the fields of `VisionMamba(...)`'s
 * constructor, as in ../shared/golden/vim-tiny/config.json), plus this package's `scan`.
 */
import { ConfigError, type HfConfig, configBool, configInt, configNumber } from '@longseq/nn';

/** The architecture name (config.json `architecture`, or `architectures[0]`). */
export const VIM_ARCHITECTURE = 'VisionMamba';

/** Fields a config must name: they fix the shapes of the weights. */
export const VIM_REQUIRED_FIELDS = [
  'img_size',
  'patch_size',
  'channels',
  'embed_dim',
  'depth',
  'num_classes',
  'd_state',
] as const;

/** Which directions each block scans (see scanOrder). */
export type VimScan = 'bi' | 'cross4';
export const VIM_SCANS: readonly VimScan[] = ['bi', 'cross4'];

/** Pooling of the final tokens when there is no class token (hustvl's `final_pool_type`). */
export type VimPool = 'mean' | 'max' | 'none';
const POOLS: readonly VimPool[] = ['mean', 'max', 'none'];

export interface VimConfig {
  /** Square input images of imgSize x imgSize pixels. */
  readonly imgSize: number;
  readonly patchSize: number;
  /** Patch embedding stride (= patchSize for non-overlapping patches). */
  readonly stride: number;
  readonly channels: number;
  /** Model width M (embed_dim). */
  readonly embedDim: number;
  /** Blocks. */
  readonly depth: number;
  readonly numClasses: number;
  /** SSM state per channel, N. */
  readonly dState: number;
  /** Causal conv width, K. */
  readonly dConv: number;
  readonly expand: number;
  /** Mixer channels D = expand * embedDim. */
  readonly dInner: number;
  /** Rank of the dt projection R ('auto' = ceil(embedDim / 16)). */
  readonly dtRank: number;
  /** RMSNorm (true) or LayerNorm with bias (false). */
  readonly rmsNorm: boolean;
  /**
   * Accepted either way, results do not change: upstream it keeps the residual stream in
   * float32 when the model runs in half precision, and here every tensor and sum is float32.
   */
  readonly residualInFp32: boolean;
  /**
   * Accepted either way, results do not change: upstream it picks a Triton kernel that does
   * the residual add and the norm in one pass (the same arithmetic as add, then norm).
   */
  readonly fusedAddNorm: boolean;
  /**
   * in_proj and out_proj have biases (`mixer.in_proj.bias` [2D], `mixer.out_proj.bias` [M]):
   * hustvl's Mamba `bias` (in `ssm_cfg`), false by default.
   */
  readonly projBias: boolean;
  /** Each direction's conv has a bias (`mixer.conv1d*.bias` [D]): Mamba's `conv_bias`, true by default. */
  readonly convBias: boolean;
  /**
   * The mixer's output is scaled per channel by `mixer.gamma` [M] (hustvl's `init_layer_scale`
   * set: its value only initializes gamma, which the checkpoint holds).
   */
  readonly layerScale: boolean;
  /** Only 'v2' (separate backward parameters, shared in/out projections). */
  readonly bimambaType: 'v2';
  /** Divide the merged directions by their count (2 for 'bi', 4 for 'cross4'). */
  readonly divideOut: boolean;
  readonly clsToken: boolean;
  /** Class token in the middle of the patch sequence (index floor(P / 2)), else at its head. */
  readonly middleClsToken: boolean;
  readonly absPosEmbed: boolean;
  /**
   * Used when there is no class token: 'mean' of the final-normed tokens, 'none' (the last
   * token), or 'max', which as in hustvl/Vim takes each class's largest logit over the tokens.
   */
  readonly finalPool: VimPool;
  readonly eps: number;
  /** 'bi' (Vim: forward and backward over the row-major sequence) or 'cross4' (VMamba's four directions). */
  readonly scan: VimScan;
}

/** Patches per side: (imgSize - patchSize) / stride + 1. */
export function vimGrid(config: Pick<VimConfig, 'imgSize' | 'patchSize' | 'stride'>): number {
  return Math.floor((config.imgSize - config.patchSize) / config.stride) + 1;
}

function configString<T extends string>(
  config: HfConfig,
  field: string,
  allowed: readonly T[],
  fallback: T,
): T {
  const v = config[field];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new ConfigError(field, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, v);
  }
  return v as T;
}

/**
 * A boolean of the Mamba mixer, at the top level of config.json (as this package writes it) or
 * in hustvl's `ssm_cfg` (the keyword arguments of its Mamba); undefined when neither names it.
 */
function mixerBool(config: HfConfig, field: string): boolean | undefined {
  const ssm = config.ssm_cfg;
  if (ssm !== undefined && ssm !== null && (typeof ssm !== 'object' || Array.isArray(ssm)))
    throw new ConfigError('ssm_cfg', "an object (the Mamba mixer's arguments)", ssm);
  const top = config[field];
  const nested = (ssm as HfConfig | null | undefined)?.[field];
  const [name, v] = top !== undefined && top !== null ? [field, top] : [`ssm_cfg.${field}`, nested];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new ConfigError(name, 'true or false', v);
  return v;
}

/**
 * Which optional tensors a checkpoint holds, for the fields config.json leaves out (hustvl's
 * configs rarely carry `ssm_cfg`): layer 0's in_proj bias, conv bias and gamma.
 */
export type VimTensorPresence = (name: string) => boolean;

function requireFalse(config: HfConfig, field: string, why: string): void {
  const v = config[field];
  if (v !== undefined && v !== null && v !== false) throw new ConfigError(field, `false (${why})`, v);
}

/**
 * Parses a config.json object. Throws ConfigError naming the field for a missing required
 * field, a value of the wrong type, or an unsupported option (bimamba_type other than 'v2',
 * if_rope, use_double_cls_token, if_bidirectional). Defaults follow the training script's
 * Vim (apps/training/vim-mnist/vim_model.py): stride = patch_size, d_conv 4, expand 2,
 * dt_rank 'auto', RMSNorm, middle class token, absolute position embedding, divided output.
 * The mixer's optional tensors follow `bias`, `conv_bias` (top level or in `ssm_cfg`) and
 * `init_layer_scale`; where config.json names none of them, `has` (the checkpoint's tensor
 * names) decides, else Mamba's defaults (no projection biases, conv bias, no gamma).
 */
export function vimConfigFromJson(config: HfConfig, has?: VimTensorPresence): VimConfig {
  const architecture =
    typeof config.architecture === 'string'
      ? config.architecture
      : Array.isArray(config.architectures)
        ? config.architectures[0]
        : undefined;
  if (architecture !== undefined && architecture !== VIM_ARCHITECTURE) {
    throw new ConfigError('architecture', `'${VIM_ARCHITECTURE}'`, architecture);
  }
  for (const field of VIM_REQUIRED_FIELDS) {
    if (config[field] === undefined || config[field] === null)
      throw new ConfigError(field, 'a value (required)', undefined);
  }
  const bimamba = config.bimamba_type ?? 'v2';
  if (bimamba !== 'v2')
    throw new ConfigError('bimamba_type', "'v2' (the only bidirectional mixer supported)", bimamba);
  requireFalse(config, 'if_rope', 'rotary position embedding is not supported');
  requireFalse(config, 'if_rope_residual', 'rotary position embedding is not supported');
  requireFalse(config, 'use_double_cls_token', 'one class token is supported');
  requireFalse(config, 'if_bidirectional', "bimamba 'v2' scans both directions inside each block");
  const imgSize = configInt(config, ['img_size']);
  const patchSize = configInt(config, ['patch_size']);
  const stride = configInt(config, ['stride'], patchSize);
  if (patchSize > imgSize)
    throw new ConfigError('patch_size', `an integer <= img_size (${imgSize})`, patchSize);
  const embedDim = configInt(config, ['embed_dim']);
  const expand = configInt(config, ['expand'], 2);
  const dtRankRaw = config.dt_rank;
  let dtRank = Math.ceil(embedDim / 16);
  if (dtRankRaw !== undefined && dtRankRaw !== null && dtRankRaw !== 'auto') {
    if (typeof dtRankRaw !== 'number' || !Number.isInteger(dtRankRaw) || dtRankRaw < 1)
      throw new ConfigError('dt_rank', "an integer >= 1 or 'auto'", dtRankRaw);
    dtRank = dtRankRaw;
  }
  const clsToken = configBool(config, ['if_cls_token'], true);
  const layer0 = 'layers.0.mixer.';
  const projBias = mixerBool(config, 'bias') ?? has?.(`${layer0}in_proj.bias`) ?? false;
  const convBias = mixerBool(config, 'conv_bias') ?? has?.(`${layer0}conv1d.bias`) ?? true;
  const scale = config.init_layer_scale;
  if (scale !== undefined && scale !== null && typeof scale !== 'number')
    throw new ConfigError('init_layer_scale', 'a number or null', scale);
  const layerScale = scale !== undefined ? scale !== null : (has?.(`${layer0}gamma`) ?? false);
  return {
    imgSize,
    patchSize,
    stride,
    channels: configInt(config, ['channels']),
    embedDim,
    depth: configInt(config, ['depth'], undefined, 0),
    numClasses: configInt(config, ['num_classes']),
    dState: configInt(config, ['d_state']),
    dConv: configInt(config, ['d_conv'], 4),
    expand,
    dInner: expand * embedDim,
    dtRank,
    rmsNorm: configBool(config, ['rms_norm'], true),
    residualInFp32: configBool(config, ['residual_in_fp32'], true),
    fusedAddNorm: configBool(config, ['fused_add_norm'], true),
    projBias,
    convBias,
    layerScale,
    bimambaType: 'v2',
    divideOut: configBool(config, ['if_devide_out', 'if_divide_out'], true),
    clsToken,
    middleClsToken: configBool(config, ['use_middle_cls_token'], true),
    absPosEmbed: configBool(config, ['if_abs_pos_embed'], true),
    finalPool: configString(config, 'final_pool_type', POOLS, 'mean'),
    eps: configNumber(config, ['norm_epsilon', 'eps'], 1e-5),
    scan: configString(config, 'scan', VIM_SCANS, 'bi'),
  };
}

/** A config of the given shape (benchmarks, tests): Vim-tiny's by default (224 px, patch 16, 192 wide, 24 blocks). */
export function vimConfig(overrides: Partial<VimConfig> = {}): VimConfig {
  const embedDim = overrides.embedDim ?? 192;
  const expand = overrides.expand ?? 2;
  const patchSize = overrides.patchSize ?? 16;
  return {
    imgSize: 224,
    patchSize,
    stride: patchSize,
    channels: 3,
    embedDim,
    depth: 24,
    numClasses: 1000,
    dState: 16,
    dConv: 4,
    expand,
    dInner: expand * embedDim,
    dtRank: Math.ceil(embedDim / 16),
    rmsNorm: true,
    residualInFp32: true,
    fusedAddNorm: true,
    projBias: false,
    convBias: true,
    layerScale: false,
    bimambaType: 'v2',
    divideOut: true,
    clsToken: true,
    middleClsToken: true,
    absPosEmbed: true,
    finalPool: 'mean',
    eps: 1e-5,
    scan: 'bi',
    ...overrides,
  };
}

/** The config.json fields of a VimConfig (hustvl's names), e.g. to save random weights as a checkpoint. */
export function vimConfigToJson(c: VimConfig): Record<string, unknown> {
  return {
    architecture: VIM_ARCHITECTURE,
    img_size: c.imgSize,
    patch_size: c.patchSize,
    stride: c.stride,
    channels: c.channels,
    embed_dim: c.embedDim,
    depth: c.depth,
    num_classes: c.numClasses,
    d_state: c.dState,
    d_conv: c.dConv,
    expand: c.expand,
    dt_rank: c.dtRank,
    rms_norm: c.rmsNorm,
    residual_in_fp32: c.residualInFp32,
    fused_add_norm: c.fusedAddNorm,
    bias: c.projBias,
    conv_bias: c.convBias,
    // its value only initializes gamma; the checkpoint holds the trained one
    init_layer_scale: c.layerScale ? 1 : null,
    bimamba_type: c.bimambaType,
    if_devide_out: c.divideOut,
    if_cls_token: c.clsToken,
    use_middle_cls_token: c.middleClsToken,
    if_abs_pos_embed: c.absPosEmbed,
    final_pool_type: c.finalPool,
    norm_epsilon: c.eps,
    scan: c.scan,
  };
}
