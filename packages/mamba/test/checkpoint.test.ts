import { ConfigError, MissingTensorError, encodeSafetensors } from '@longseq/nn';
import { describeEachBackend, freshSeed } from '@longseq/test-harness';
import { afterAll, describe, expect, it } from 'vitest';
import { MambaModel, mambaConfig, mambaConfigFromHf, mambaRef, randomReader } from '../src';
import {
  GOLDEN,
  REL_TOL,
  cleanTempDirs,
  goldenConfig,
  goldenTensors,
  maxRelativeError,
  writeCheckpoint,
} from './helpers';

afterAll(cleanTempDirs);

describe('mambaConfigFromHf', () => {
  it("reads transformers' and mamba_ssm's field names", () => {
    const hf = mambaConfigFromHf(goldenConfig());
    expect(hf).toEqual({
      dModel: 64,
      nLayer: 2,
      vocabSize: 128,
      dState: 16,
      dConv: 4,
      expand: 2,
      dInner: 128,
      dtRank: 4,
      useBias: false,
      useConvBias: true,
      tieWordEmbeddings: true,
      eps: 1e-5,
    });
    // mamba_ssm's original config.json (state-spaces/mamba-130m): other names, dt_rank 'auto'
    const ssm = mambaConfigFromHf({
      d_model: 768,
      n_layer: 24,
      vocab_size: 50280,
      ssm_cfg: {},
      rms_norm: true,
      tie_embeddings: true,
    });
    expect(ssm).toMatchObject({ dModel: 768, nLayer: 24, dInner: 1536, dtRank: 48, dState: 16, dConv: 4 });
    expect(mambaConfigFromHf({ ...goldenConfig(), time_step_rank: 'auto' }).dtRank).toBe(4);
  });

  it('unknown architectures, dtypes and bad fields are ConfigErrors naming the field', () => {
    const base = goldenConfig();
    expect(() => mambaConfigFromHf({ ...base, architectures: ['JambaForCausalLM'] })).toThrow(
      /config\.json: architectures/,
    );
    expect(() => mambaConfigFromHf({ ...base, dtype: 'float8_e4m3' })).toThrow(
      /config\.json: dtype: expected one of/,
    );
    expect(() => mambaConfigFromHf({ ...base, state_size: 0 })).toThrow(/state_size/);
    expect(() => mambaConfigFromHf({ ...base, time_step_rank: 'half' })).toThrow(/time_step_rank/);
    expect(() => mambaConfigFromHf({ ...base, hidden_act: 'gelu' })).toThrow(/hidden_act/);
    const { vocab_size: _v, ...noVocab } = base;
    expect(() => mambaConfigFromHf(noVocab)).toThrow(ConfigError);
  });
});

describeEachBackend('MambaModel checkpoints', (ctx) => {
  it('a missing tensor is a MissingTensorError naming it, and nothing stays allocated', async () => {
    const { 'backbone.layers.1.mixer.D': _d, ...tensors } = goldenTensors();
    const dir = writeCheckpoint(goldenConfig(), tensors);
    const before = ctx.backend.memory();
    const err = await MambaModel.load(ctx.backend, dir).catch((e) => e);
    expect(err).toBeInstanceOf(MissingTensorError);
    expect(err.message).toMatch(/backbone\.layers\.1\.mixer\.D/);
    expect(ctx.backend.memory().tensors).toBe(before.tensors);
  });

  it("mamba_ssm's name for the embedding (backbone.embedding.weight) loads like transformers'", async () => {
    const { 'backbone.embeddings.weight': embeddings, ...rest } = goldenTensors();
    const dir = writeCheckpoint(goldenConfig(), { 'backbone.embedding.weight': embeddings!, ...rest });
    const model = await MambaModel.load(ctx.backend, dir);
    const reference = await MambaModel.load(ctx.backend, GOLDEN);
    const [a, b] = [await model.forward([[1, 2, 3]]), await reference.forward([[1, 2, 3]])];
    expect(Array.from(await a.logits.read())).toEqual(Array.from(await b.logits.read()));
    a.logits.dispose();
    b.logits.dispose();
    model.dispose();
    reference.dispose();
  });

  it('a misshapen tensor is a ShapeError naming it and both shapes', async () => {
    const tensors = goldenTensors();
    const x = tensors['backbone.layers.0.mixer.x_proj.weight']!;
    tensors['backbone.layers.0.mixer.x_proj.weight'] = { shape: [128, 36], data: x.data };
    const dir = writeCheckpoint(goldenConfig(), tensors);
    await expect(MambaModel.load(ctx.backend, dir)).rejects.toThrow(
      /backbone\.layers\.0\.mixer\.x_proj\.weight: expected shape \[36, 128\], got \[128, 36\]/,
    );
  });

  it('a tensor in an unknown dtype is a DTypeError naming it', async () => {
    // Rewrite one entry's dtype in the header: I32 has the same byte count as F32.
    const bytes = encodeSafetensors(goldenTensors());
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + headerLength));
    const patched = header.replace(/("backbone\.norm_f\.weight":\{"dtype":)"F32"/, '$1"I32"');
    expect(patched).not.toBe(header);
    bytes.set(new TextEncoder().encode(patched), 8);
    const dir = writeCheckpoint(goldenConfig(), bytes);
    await expect(MambaModel.load(ctx.backend, dir)).rejects.toMatchObject({
      name: 'DTypeError',
      argument: 'backbone.norm_f.weight',
    });
  });

  it('an unknown architecture in config.json is refused before any tensor is read', async () => {
    const dir = writeCheckpoint(
      { ...goldenConfig(), architectures: ['VimForImageClassification'] },
      goldenTensors(),
    );
    await expect(MambaModel.load(ctx.backend, dir)).rejects.toMatchObject({ name: 'ConfigError' });
  });

  it('untied embeddings, biases and f16/bf16 storage: forward and step match the float64 reference', async () => {
    const config = mambaConfig({
      dModel: 24,
      nLayer: 2,
      vocabSize: 37,
      dState: 5,
      dConv: 3,
      expand: 2,
      dInner: 48,
      dtRank: 3,
      useBias: true,
      tieWordEmbeddings: false,
    });
    const read = randomReader(config, freshSeed());
    // Every tensor the model needs, drawn once; the lm_head differs from the embeddings.
    const names: [string, number[]][] = [
      ['backbone.embeddings.weight', [37, 24]],
      ['backbone.norm_f.weight', [24]],
      ['lm_head.weight', [37, 24]],
    ];
    for (let i = 0; i < 2; i++) {
      const m = `backbone.layers.${i}.mixer.`;
      names.push(
        [`backbone.layers.${i}.norm.weight`, [24]],
        [`${m}in_proj.weight`, [96, 24]],
        [`${m}in_proj.bias`, [96]],
        [`${m}conv1d.weight`, [48, 1, 3]],
        [`${m}conv1d.bias`, [48]],
        [`${m}x_proj.weight`, [13, 48]],
        [`${m}dt_proj.weight`, [48, 3]],
        [`${m}dt_proj.bias`, [48]],
        [`${m}A_log`, [48, 5]],
        [`${m}D`, [48]],
        [`${m}out_proj.weight`, [24, 48]],
        [`${m}out_proj.bias`, [24]],
      );
    }
    // Norm weights of 1 would hide a missing norm: perturb them.
    const tensors = Object.fromEntries(
      names.map(([name, shape], i) => {
        let data = read(name, shape);
        if (name.includes('norm')) data = data.map((v, j) => v + 0.1 * Math.sin(j + i));
        return [
          name,
          {
            shape,
            data,
            dtype: i % 3 === 0 ? ('BF16' as const) : i % 3 === 1 ? ('F16' as const) : ('F32' as const),
          },
        ];
      }),
    );
    const hfConfig = {
      architectures: ['MambaForCausalLM'],
      hidden_size: 24,
      num_hidden_layers: 2,
      vocab_size: 37,
      state_size: 5,
      conv_kernel: 3,
      expand: 2,
      time_step_rank: 3,
      use_bias: true,
      use_conv_bias: true,
      tie_word_embeddings: false,
      layer_norm_epsilon: 1e-5,
      torch_dtype: 'bfloat16',
    };
    const dir = writeCheckpoint(hfConfig, tensors);
    const model = await MambaModel.load(ctx.backend, dir);
    expect(model.weights.lmHead).not.toBe(model.weights.embeddings);
    // The reference reads what the loader stored (f16/bf16-rounded), through the same checkpoint.
    const { loadCheckpoint, nodeFileSource } = await import('@longseq/nn');
    const ckpt = await loadCheckpoint(nodeFileSource(dir));
    const ids = [
      [1, 5, 36, 0, 7, 7, 20],
      [3, 3, 2, 30, 11, 0, 1],
    ];
    const ref = mambaRef(model.config, (n, s) => ckpt.read(n, s), ids);
    const { logits } = await model.forward(ids);
    const expected = Float64Array.from(ref.logits.flatMap((l) => Array.from(l)));
    expect(maxRelativeError(await logits.read(), expected, 37)).toBeLessThan(REL_TOL);
    logits.dispose();
    const state = model.createState(2);
    for (let t = 0; t < ids[0]!.length; t++) {
      const stepLogits = await model.step(
        ids.map((r) => r[t]!),
        state,
      );
      const got = await stepLogits.read();
      stepLogits.dispose();
      for (let b = 0; b < 2; b++) {
        const exp = ref.logits[b]!.subarray(t * 37, (t + 1) * 37);
        expect(maxRelativeError(got.subarray(b * 37, (b + 1) * 37), exp, 37)).toBeLessThan(REL_TOL);
      }
    }
    state.dispose();
    model.dispose();
  });
});
