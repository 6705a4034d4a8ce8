/**
 * MambaConfig from a Hugging Face config.json (transformers' MambaConfig field names, with
 * mamba_ssm's original names as aliases).
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
export const MAMBA_ARCHITECTURES = ['MambaForCausalLM'] as const;

/** Checkpoint dtypes (config.json `torch_dtype` / `dtype`) the loader converts to f32. */
export const CONFIG_DTYPES = ['float32', 'float16', 'bfloat16', 'float64'] as const;

export interface MambaConfig {
  /** Model width (hidden_size / d_model). */
  readonly dModel: number;
  /** Residual blocks (num_hidden_layers / n_layer). */
  readonly nLayer: number;
  readonly vocabSize: number;
  /** SSM state per channel, N (state_size / d_state). */
  readonly dState: number;
  /** Causal conv width, K (conv_kernel / d_conv). */
  readonly dConv: number;
  readonly expand: number;
  /** Mixer channels, D = intermediate_size, or expand * dModel. */
  readonly dInner: number;
  /** Rank of the dt projection (time_step_rank / dt_rank; 'auto' = ceil(dModel / 16)). */
  readonly dtRank: number;
  /** in_proj and out_proj have biases. */
  readonly useBias: boolean;
  /** conv1d has a bias. */
  readonly useConvBias: boolean;
  /** lm_head shares the embedding matrix. */
  readonly tieWordEmbeddings: boolean;
  /** RMSNorm epsilon (layer_norm_epsilon / rms_norm_eps / norm_epsilon). */
  readonly eps: number;
}

function dtRankOf(config: HfConfig, dModel: number): number {
  for (const field of ['time_step_rank', 'dt_rank']) {
    const v = config[field];
    if (v === undefined || v === null) continue;
    if (v === 'auto') return Math.ceil(dModel / 16);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new ConfigError(field, "an integer >= 1 or 'auto'", v);
    return v;
  }
  return Math.ceil(dModel / 16);
}

/**
 * Parses a config.json object. Throws ConfigError naming the field for a missing or invalid
 * field, or for `architectures` that name something other than a Mamba causal LM.
 */
export function mambaConfigFromHf(config: HfConfig): MambaConfig {
  const architectures = configArchitectures(config);
  if (
    architectures.length > 0 &&
    !architectures.some((a) => (MAMBA_ARCHITECTURES as readonly string[]).includes(a))
  ) {
    throw new ConfigError('architectures', `one of ${MAMBA_ARCHITECTURES.join(', ')}`, architectures);
  }
  const activation = config.hidden_act;
  if (activation !== undefined && activation !== 'silu' && activation !== 'swish') {
    throw new ConfigError('hidden_act', "'silu'", activation);
  }
  for (const field of ['torch_dtype', 'dtype']) {
    const dtype = config[field];
    if (dtype !== undefined && dtype !== null && !(CONFIG_DTYPES as readonly unknown[]).includes(dtype)) {
      throw new ConfigError(field, `one of ${CONFIG_DTYPES.join(', ')}`, dtype);
    }
  }
  const dModel = configInt(config, ['hidden_size', 'd_model']);
  const expand = configInt(config, ['expand'], 2);
  const dInner = configInt(config, ['intermediate_size', 'd_inner'], expand * dModel);
  return {
    dModel,
    nLayer: configInt(config, ['num_hidden_layers', 'n_layer']),
    vocabSize: configInt(config, ['vocab_size']),
    dState: configInt(config, ['state_size', 'd_state'], 16),
    dConv: configInt(config, ['conv_kernel', 'd_conv'], 4, 2),
    expand,
    dInner,
    dtRank: dtRankOf(config, dModel),
    useBias: configBool(config, ['use_bias', 'bias'], false),
    useConvBias: configBool(config, ['use_conv_bias', 'conv_bias'], true),
    tieWordEmbeddings: configBool(config, ['tie_word_embeddings', 'tie_embeddings'], true),
    eps: configNumber(config, ['layer_norm_epsilon', 'rms_norm_eps', 'norm_epsilon'], 1e-5),
  };
}

/** A config for a model of the given shape (benchmarks, tests): Mamba-130m's shape by default. */
export function mambaConfig(overrides: Partial<MambaConfig> = {}): MambaConfig {
  const dModel = overrides.dModel ?? 768;
  const expand = overrides.expand ?? 2;
  return {
    dModel,
    nLayer: 24,
    vocabSize: 50280,
    dState: 16,
    dConv: 4,
    expand,
    dInner: expand * dModel,
    dtRank: Math.ceil(dModel / 16),
    useBias: false,
    useConvBias: true,
    tieWordEmbeddings: true,
    eps: 1e-5,
    ...overrides,
  };
}
