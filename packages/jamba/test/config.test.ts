import { ConfigError } from '@longseq/nn';
import { describe, expect, it } from 'vitest';
import { jambaConfig, jambaConfigFromHf } from '../src';
import { goldenConfig } from './helpers';

describe('jambaConfigFromHf', () => {
  it("derives the layer plan as transformers' JambaConfig does", () => {
    const c = jambaConfigFromHf(goldenConfig());
    expect(c.layerTypes).toEqual(['mamba', 'attention', 'mamba', 'attention']);
    expect(c.layerExperts).toEqual([4, 1, 4, 1]);
    expect(c).toMatchObject({
      headDim: 16,
      dInner: 128,
      dtRank: 8,
      eps: 1e-6,
      convBias: true,
      projBias: false,
    });
    // ai21labs/Jamba-v0.1: 32 layers, attention at 4 of every 8, experts on odd layers
    const v01 = jambaConfigFromHf({
      architectures: ['JambaForCausalLM'],
      hidden_size: 4096,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      attn_layer_period: 8,
      attn_layer_offset: 4,
      expert_layer_period: 2,
      expert_layer_offset: 1,
      num_experts: 16,
      num_experts_per_tok: 2,
      mamba_dt_rank: 256,
      vocab_size: 65536,
    });
    expect(v01.layerTypes.flatMap((t, i) => (t === 'attention' ? [i] : []))).toEqual([4, 12, 20, 28]);
    expect(v01.layerExperts.flatMap((e, i) => (e === 16 ? [i] : []))).toEqual(
      Array.from({ length: 16 }, (_, i) => 2 * i + 1),
    );
    expect(jambaConfigFromHf({ ...goldenConfig(), mamba_dt_rank: 'auto' }).dtRank).toBe(4);
  });

  it('inconsistent or bad fields are ConfigErrors naming the field', () => {
    const base = goldenConfig();
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { attn_layer_offset: 2 },
        /config\.json: attn_layer_offset: expected an integer in \[0, attn_layer_period = 2\)/,
      ],
      [{ expert_layer_offset: 5, expert_layer_period: 3 }, /config\.json: expert_layer_offset/],
      [{ attn_layer_period: 0 }, /config\.json: attn_layer_period/],
      [
        { num_key_value_heads: 3 },
        /config\.json: num_key_value_heads: expected a divisor of num_attention_heads 4/,
      ],
      [{ num_attention_heads: 5 }, /config\.json: num_attention_heads: expected a divisor of hidden_size 64/],
      [
        { num_experts_per_tok: 5 },
        /config\.json: num_experts_per_tok: expected an integer in \[1, num_experts = 4\]/,
      ],
      [{ architectures: ['MambaForCausalLM'] }, /config\.json: architectures/],
      [{ dtype: 'float8_e4m3' }, /config\.json: dtype/],
      [{ hidden_act: 'gelu' }, /config\.json: hidden_act/],
      [{ mamba_dt_rank: 'half' }, /config\.json: mamba_dt_rank/],
      [{ mamba_d_conv: 1 }, /config\.json: mamba_d_conv/],
      [{ rms_norm_eps: -1 }, /config\.json: rms_norm_eps/],
      [{ mamba_conv_bias: 'yes' }, /config\.json: mamba_conv_bias/],
    ];
    for (const [patch, message] of cases) {
      let err: unknown;
      try {
        jambaConfigFromHf({ ...base, ...patch });
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(patch)).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(message);
    }
  });

  it('jambaConfig: the benchmark shape by default, checked like a config.json', () => {
    const c = jambaConfig();
    expect(c).toMatchObject({ dModel: 1024, nLayer: 8, numExperts: 16, topK: 2, headDim: 128 });
    expect(c.layerTypes.filter((t) => t === 'attention')).toHaveLength(1);
    expect(c.layerExperts.filter((e) => e === 16)).toHaveLength(4);
    expect(() => jambaConfig({ topK: 17 })).toThrow(ConfigError);
  });
});
