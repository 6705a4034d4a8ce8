/**
 * JambaConfig from a Hugging Face config.json (transformers' JambaConfig field names), with
 * the per-layer plan transformers derives from it: which layers are attention and which
 * Mamba (`attn_layer_period` / `attn_layer_offset`), and which feed-forwards are a mixture of
 * experts (`expert_layer_period` / `expert_layer_offset`).
 */
import {
  ConfigError,
  type HfConfig,
  configArchitectures,
  configBool,
  configInt,
  configNumber,
} from '@longseq/nn';

/** The architectures (config.json `architectures`) this package loads. */
export const JAMBA_ARCHITECTURES = ['JambaForCausalLM'] as const;

/** Checkpoint dtypes (config.json `torch_dtype` / `dtype`) the loader converts to f32. */
export const JAMBA_CONFIG_DTYPES = ['float32', 'float16', 'bfloat16', 'float64'] as const;

/** The mixer of a layer. */
export type JambaLayerType = 'attention' | 'mamba';

export interface JambaConfig {
  /** Model width, M (hidden_size). */
  readonly dModel: number;
  /** Decoder layers (num_hidden_layers). */
  readonly nLayer: number;
  readonly vocabSize: number;
  /** Width of the MLP and of each expert, F (intermediate_size). */
  readonly intermediateSize: number;
  /** Query heads, H (num_attention_heads). */
  readonly numHeads: number;
  /** Key/value heads, Hkv (num_key_value_heads); H is a multiple of it. */
  readonly numKvHeads: number;
  /** dModel / numHeads. */
  readonly headDim: number;
  readonly attnLayerPeriod: number;
  readonly attnLayerOffset: number;
  readonly expertLayerPeriod: number;
  readonly expertLayerOffset: number;
  /** Experts of a mixture-of-experts layer, E (num_experts). */
  readonly numExperts: number;
  /** Experts per token, k (num_experts_per_tok). */
  readonly topK: number;
  /** Mamba: SSM state per channel, N (mamba_d_state). */
  readonly dState: number;
  /** Mamba: causal conv width, K (mamba_d_conv). */
  readonly dConv: number;
  /** Mamba: expand (mamba_expand). */
  readonly expand: number;
  /** Mamba channels, D = expand x dModel. */
  readonly dInner: number;
  /** Mamba: rank of the dt projection, R (mamba_dt_rank; 'auto' = ceil(dModel / 16)). */
  readonly dtRank: number;
  /** Mamba conv1d has a bias (mamba_conv_bias). */
  readonly convBias: boolean;
  /** Mamba in_proj and out_proj have biases (mamba_proj_bias). */
  readonly projBias: boolean;
  /** RMSNorm epsilon of every norm, the mixer's dt/B/C norms included (rms_norm_eps). */
  readonly eps: number;
  readonly tieWordEmbeddings: boolean;
  /** Per layer: 'attention' where i % attnLayerPeriod === attnLayerOffset, else 'mamba'. */
  readonly layerTypes: readonly JambaLayerType[];
  /** Per layer: numExperts where i % expertLayerPeriod === expertLayerOffset, else 1 (a dense MLP). */
  readonly layerExperts: readonly number[];
}

/** The layer plan of transformers' JambaConfig (`layers_block_type`, `layers_num_experts`). */
export function jambaLayerPlan(
  config: Pick<
    JambaConfig,
    | 'nLayer'
    | 'attnLayerPeriod'
    | 'attnLayerOffset'
    | 'expertLayerPeriod'
    | 'expertLayerOffset'
    | 'numExperts'
  >,
): { layerTypes: JambaLayerType[]; layerExperts: number[] } {
  const layerTypes: JambaLayerType[] = [];
  const layerExperts: number[] = [];
  for (let i = 0; i < config.nLayer; i++) {
    layerTypes.push(i % config.attnLayerPeriod === config.attnLayerOffset ? 'attention' : 'mamba');
    layerExperts.push(i % config.expertLayerPeriod === config.expertLayerOffset ? config.numExperts : 1);
  }
  return { layerTypes, layerExperts };
}

function dtRankOf(config: HfConfig, dModel: number): number {
  const v = config.mamba_dt_rank;
  if (v === undefined || v === null || v === 'auto') return Math.ceil(dModel / 16);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw new ConfigError('mamba_dt_rank', "an integer >= 1 or 'auto'", v);
  return v;
}

/**
 * Checks the relations between fields that each parse on their own: heads divide the width
 * and are a multiple of the kv heads, offsets lie inside their periods, top-k fits the experts.
 * Throws ConfigError naming the field (config.json's name).
 */
export function checkJambaConfig(c: Omit<JambaConfig, 'layerTypes' | 'layerExperts'>): void {
  const positive: [string, number][] = [
    ['hidden_size', c.dModel],
    ['num_hidden_layers', c.nLayer],
    ['vocab_size', c.vocabSize],
    ['intermediate_size', c.intermediateSize],
    ['num_attention_heads', c.numHeads],
    ['num_key_value_heads', c.numKvHeads],
    ['attn_layer_period', c.attnLayerPeriod],
    ['expert_layer_period', c.expertLayerPeriod],
    ['num_experts', c.numExperts],
    ['num_experts_per_tok', c.topK],
    ['mamba_d_state', c.dState],
    ['mamba_d_conv', c.dConv],
    ['mamba_expand', c.expand],
    ['mamba_dt_rank', c.dtRank],
  ];
  for (const [field, v] of positive)
    if (!Number.isInteger(v) || v < 1) throw new ConfigError(field, 'an integer >= 1', v);
  if (c.dModel % c.numHeads !== 0)
    throw new ConfigError('num_attention_heads', `a divisor of hidden_size ${c.dModel}`, c.numHeads);
  if (c.numHeads % c.numKvHeads !== 0)
    throw new ConfigError(
      'num_key_value_heads',
      `a divisor of num_attention_heads ${c.numHeads}`,
      c.numKvHeads,
    );
  if (!Number.isInteger(c.attnLayerOffset) || c.attnLayerOffset < 0 || c.attnLayerOffset >= c.attnLayerPeriod)
    throw new ConfigError(
      'attn_layer_offset',
      `an integer in [0, attn_layer_period = ${c.attnLayerPeriod})`,
      c.attnLayerOffset,
    );
  if (
    !Number.isInteger(c.expertLayerOffset) ||
    c.expertLayerOffset < 0 ||
    c.expertLayerOffset >= c.expertLayerPeriod
  )
    throw new ConfigError(
      'expert_layer_offset',
      `an integer in [0, expert_layer_period = ${c.expertLayerPeriod})`,
      c.expertLayerOffset,
    );
  if (c.topK > c.numExperts)
    throw new ConfigError('num_experts_per_tok', `an integer in [1, num_experts = ${c.numExperts}]`, c.topK);
  if (c.dConv < 2) throw new ConfigError('mamba_d_conv', 'an integer >= 2', c.dConv);
  if (!(c.eps > 0)) throw new ConfigError('rms_norm_eps', 'a number > 0', c.eps);
}

/**
 * Parses a config.json object. Throws ConfigError naming the field for a missing or invalid
 * field, an inconsistent one (see checkJambaConfig), or `architectures` that name something
 * other than a Jamba causal LM.
 */
export function jambaConfigFromHf(config: HfConfig): JambaConfig {
  if (config === null || typeof config !== 'object' || Array.isArray(config))
    throw new ConfigError('(file)', 'a JSON object', config);
  const architectures = configArchitectures(config);
  if (
    architectures.length > 0 &&
    !architectures.some((a) => (JAMBA_ARCHITECTURES as readonly string[]).includes(a))
  ) {
    throw new ConfigError('architectures', `one of ${JAMBA_ARCHITECTURES.join(', ')}`, architectures);
  }
  const activation = config.hidden_act;
  if (activation !== undefined && activation !== 'silu' && activation !== 'swish') {
    throw new ConfigError('hidden_act', "'silu'", activation);
  }
  for (const field of ['torch_dtype', 'dtype']) {
    const dtype = config[field];
    if (
      dtype !== undefined &&
      dtype !== null &&
      !(JAMBA_CONFIG_DTYPES as readonly unknown[]).includes(dtype)
    ) {
      throw new ConfigError(field, `one of ${JAMBA_CONFIG_DTYPES.join(', ')}`, dtype);
    }
  }
  const dModel = configInt(config, ['hidden_size'], 4096);
  const numHeads = configInt(config, ['num_attention_heads'], 32);
  const expand = configInt(config, ['mamba_expand'], 2);
  const numExperts = configInt(config, ['num_experts'], 16);
  const parsed = {
    dModel,
    nLayer: configInt(config, ['num_hidden_layers'], 32),
    vocabSize: configInt(config, ['vocab_size'], 65536),
    intermediateSize: configInt(config, ['intermediate_size'], 14336),
    numHeads,
    numKvHeads: configInt(config, ['num_key_value_heads'], 8),
    headDim: Math.floor(dModel / numHeads),
    attnLayerPeriod: configInt(config, ['attn_layer_period'], 8),
    attnLayerOffset: configInt(config, ['attn_layer_offset'], 4, 0),
    expertLayerPeriod: configInt(config, ['expert_layer_period'], 2),
    expertLayerOffset: configInt(config, ['expert_layer_offset'], 1, 0),
    numExperts,
    topK: configInt(config, ['num_experts_per_tok'], 2),
    dState: configInt(config, ['mamba_d_state'], 16),
    dConv: configInt(config, ['mamba_d_conv'], 4),
    expand,
    dInner: expand * dModel,
    dtRank: dtRankOf(config, dModel),
    convBias: configBool(config, ['mamba_conv_bias'], true),
    projBias: configBool(config, ['mamba_proj_bias'], false),
    eps: configNumber(config, ['rms_norm_eps'], 1e-6),
    tieWordEmbeddings: configBool(config, ['tie_word_embeddings'], false),
  };
  checkJambaConfig(parsed);
  return { ...parsed, ...jambaLayerPlan(parsed) };
}

/**
 * A config for a model of the given shape (benchmarks, tests, training). Defaults: the
 * benchmark shape of issue 9 (width 1024, 8 layers with one attention layer, experts on
 * every other layer, 16 experts top-2); the layer plan follows from the periods and offsets.
 * Throws ConfigError on inconsistent fields.
 */
export function jambaConfig(
  overrides: Partial<Omit<JambaConfig, 'layerTypes' | 'layerExperts'>> = {},
): JambaConfig {
  const dModel = overrides.dModel ?? 1024;
  const expand = overrides.expand ?? 2;
  const numHeads = overrides.numHeads ?? 8;
  const parsed = {
    dModel,
    nLayer: 8,
    vocabSize: 65536,
    intermediateSize: 4 * dModel,
    numHeads,
    numKvHeads: overrides.numKvHeads ?? Math.max(1, numHeads / 4),
    headDim: Math.floor(dModel / numHeads),
    attnLayerPeriod: 8,
    attnLayerOffset: 4,
    expertLayerPeriod: 2,
    expertLayerOffset: 1,
    numExperts: 16,
    topK: 2,
    dState: 16,
    dConv: 4,
    expand,
    dInner: expand * dModel,
    dtRank: Math.ceil(dModel / 16),
    convBias: true,
    projBias: false,
    eps: 1e-6,
    tieWordEmbeddings: false,
    ...overrides,
  };
  checkJambaConfig({ ...parsed, headDim: parsed.dModel / parsed.numHeads });
  return { ...parsed, ...jambaLayerPlan(parsed) };
}
