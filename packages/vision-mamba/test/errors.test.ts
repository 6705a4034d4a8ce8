import { describeEachBackend } from '@longseq/test-harness';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisionMamba, vimConfigFromJson } from '../src';
import { GOLDEN, cleanTempDirs, goldenConfig, goldenTensors, writeCheckpoint } from './helpers';

afterAll(cleanTempDirs);

describe('vimConfigFromJson: typed errors naming the field', () => {
  it('a missing required field', () => {
    for (const field of ['img_size', 'embed_dim', 'depth', 'd_state', 'channels']) {
      const { [field]: _, ...config } = goldenConfig();
      expect(() => vimConfigFromJson(config)).toThrow(
        expect.objectContaining({ name: 'ConfigError', field }),
      );
    }
  });

  it('an unsupported bimamba_type, scan, pooling or option', () => {
    const bad = (patch: Record<string, unknown>, field: string) =>
      expect(() => vimConfigFromJson({ ...goldenConfig(), ...patch })).toThrow(
        expect.objectContaining({ name: 'ConfigError', field }),
      );
    bad({ bimamba_type: 'v1' }, 'bimamba_type');
    bad({ bimamba_type: 'none' }, 'bimamba_type');
    bad({ scan: 'cross8' }, 'scan');
    bad({ final_pool_type: 'all' }, 'final_pool_type');
    bad({ if_rope: true }, 'if_rope');
    bad({ embed_dim: 0 }, 'embed_dim');
    bad({ architecture: 'MambaForCausalLM' }, 'architecture');
    bad({ bias: 1 }, 'bias');
    bad({ ssm_cfg: { conv_bias: 'no' } }, 'ssm_cfg.conv_bias');
    bad({ ssm_cfg: [true] }, 'ssm_cfg');
    bad({ init_layer_scale: 'small' }, 'init_layer_scale');
  });

  it('square images only: an img_size of two sides names config.img_size', () => {
    // hustvl's PatchEmbed takes (H, W); this package's grid, scan orders and position
    // embedding are square, so a pair is refused rather than read as one side
    expect(() => vimConfigFromJson({ ...goldenConfig(), img_size: [32, 48] })).toThrow(
      expect.objectContaining({ name: 'ConfigError', field: 'img_size' }),
    );
    expect(() => vimConfigFromJson({ ...goldenConfig(), img_size: [32, 48] })).toThrow(
      /config\.json: img_size/,
    );
  });

  it('bias, conv_bias and init_layer_scale: from config.json (top level or ssm_cfg), else from the tensors', () => {
    const golden = goldenConfig();
    expect(vimConfigFromJson(golden)).toMatchObject({ projBias: false, convBias: true, layerScale: false });
    expect(
      vimConfigFromJson({ ...golden, ssm_cfg: { bias: true, conv_bias: false }, init_layer_scale: 1e-6 }),
    ).toMatchObject({ projBias: true, convBias: false, layerScale: true });
    const has = (n: string) => n === 'layers.0.mixer.in_proj.bias' || n === 'layers.0.mixer.gamma';
    expect(vimConfigFromJson(golden, has)).toMatchObject({
      projBias: true,
      convBias: false,
      layerScale: true,
    });
    // config.json wins over the tensors (a mismatch is then refused by load)
    expect(vimConfigFromJson({ ...golden, bias: false, init_layer_scale: null }, has)).toMatchObject({
      projBias: false,
      layerScale: false,
    });
  });
});

describeEachBackend('VisionMamba: bad input is refused before any GPU work', (ctx) => {
  let model: VisionMamba;
  beforeAll(async () => {
    model = await VisionMamba.load(ctx.backend, GOLDEN);
  });
  afterAll(() => model?.dispose());

  it('images of the wrong size or channel count', async () => {
    await expect(
      model.classify({ data: new Float32Array(3 * 16 * 16), shape: [1, 3, 16, 16] }),
    ).rejects.toMatchObject({
      name: 'ShapeError',
      argument: 'images',
    });
    await expect(model.features({ data: new Float32Array(32 * 32), shape: [1, 1, 32, 32] })).rejects.toThrow(
      /images: expected shape \[B, 3, 32, 32\]/,
    );
    await expect(model.classify(new Float32Array(3 * 32 * 32 + 5))).rejects.toMatchObject({
      argument: 'images',
    });
    await expect(model.classify({ data: new Float32Array(10), shape: [1, 3, 32, 32] })).rejects.toMatchObject(
      {
        argument: 'images.data',
      },
    );
    const wrong = ctx.backend.tensor(new Float32Array(2 * 32 * 32), [1, 2, 32, 32]);
    await expect(model.classify(wrong)).rejects.toMatchObject({ name: 'ShapeError', argument: 'images' });
    wrong.dispose();
  });

  it('a config missing a field, or with an unsupported bimamba_type, in a checkpoint folder', async () => {
    const { d_state: _, ...config } = goldenConfig();
    await expect(
      VisionMamba.load(ctx.backend, writeCheckpoint(config, goldenTensors())),
    ).rejects.toMatchObject({
      name: 'ConfigError',
      field: 'd_state',
    });
    await expect(
      VisionMamba.load(
        ctx.backend,
        writeCheckpoint({ ...goldenConfig(), bimamba_type: 'v1' }, goldenTensors()),
      ),
    ).rejects.toMatchObject({ name: 'ConfigError', field: 'bimamba_type' });
  });

  it('a missing tensor (and cross4 asked of a bi checkpoint) names it; nothing stays allocated', async () => {
    const { 'layers.1.mixer.A_b_log': _, ...tensors } = goldenTensors();
    await expect(
      VisionMamba.load(ctx.backend, writeCheckpoint(goldenConfig(), tensors)),
    ).rejects.toMatchObject({
      name: 'MissingTensorError',
      tensor: 'layers.1.mixer.A_b_log',
    });
    await expect(
      VisionMamba.load(ctx.backend, writeCheckpoint({ ...goldenConfig(), scan: 'cross4' }, goldenTensors())),
    ).rejects.toMatchObject({ name: 'MissingTensorError', tensor: 'layers.0.mixer.x_proj_c.weight' });
  });

  it('non-square images name images', async () => {
    await expect(
      model.classify({ data: new Float32Array(3 * 32 * 48), shape: [1, 3, 32, 48] }),
    ).rejects.toMatchObject({ name: 'ShapeError', argument: 'images' });
    await expect(
      model.features({ data: new Float32Array(3 * 48 * 32), shape: [1, 3, 48, 32] }),
    ).rejects.toThrow(/images: expected shape \[B, 3, 32, 32\]/);
  });

  it('a tensor the config leaves unused is refused, naming the field or the tensor', async () => {
    const M = 32;
    const D = 64;
    const withBias = goldenTensors();
    withBias['layers.1.mixer.out_proj.bias'] = { shape: [M], data: new Float32Array(M).fill(0.5) };
    withBias['layers.1.mixer.in_proj.bias'] = { shape: [2 * D], data: new Float32Array(2 * D).fill(0.5) };
    // config.json says no biases, the checkpoint has them: not silently ignored
    await expect(
      VisionMamba.load(ctx.backend, writeCheckpoint({ ...goldenConfig(), bias: false }, withBias)),
    ).rejects.toMatchObject({ name: 'ConfigError', field: 'bias' });
    // config.json silent: layer 0 has no in_proj bias, so none is read, and layer 1's is refused
    await expect(VisionMamba.load(ctx.backend, writeCheckpoint(goldenConfig(), withBias))).rejects.toThrow(
      /bias: expected a value that uses layers\.1\.mixer\.in_proj\.bias/,
    );
    const gamma = goldenTensors();
    gamma['layers.0.mixer.gamma'] = { shape: [M], data: new Float32Array(M).fill(1) };
    await expect(
      VisionMamba.load(ctx.backend, writeCheckpoint({ ...goldenConfig(), init_layer_scale: null }, gamma)),
    ).rejects.toMatchObject({ name: 'ConfigError', field: 'init_layer_scale' });
    const stray = goldenTensors();
    stray['layers.0.mixer.rope.freqs_cos'] = { shape: [4], data: new Float32Array(4).fill(1) };
    await expect(VisionMamba.load(ctx.backend, writeCheckpoint(goldenConfig(), stray))).rejects.toMatchObject(
      {
        argument: 'checkpoint',
        actual: 'unexpected tensor layers.0.mixer.rope.freqs_cos',
      },
    );
  });

  it('a misshapen tensor names it and the expected shape', async () => {
    const tensors = goldenTensors();
    tensors['layers.0.mixer.x_proj_b.weight'] = { shape: [18, 32], data: new Float32Array(18 * 32) };
    await expect(
      VisionMamba.load(ctx.backend, writeCheckpoint(goldenConfig(), tensors)),
    ).rejects.toMatchObject({
      name: 'ShapeError',
      argument: 'layers.0.mixer.x_proj_b.weight',
    });
    const pos = goldenTensors();
    pos.pos_embed = { shape: [1, 16, 32], data: new Float32Array(16 * 32) };
    await expect(VisionMamba.load(ctx.backend, writeCheckpoint(goldenConfig(), pos))).rejects.toThrow(
      /pos_embed: expected shape \[1, 17, 32\]/,
    );
  });

  it('a disposed model', async () => {
    const other = await VisionMamba.load(ctx.backend, GOLDEN);
    other.dispose();
    await expect(other.classify(new Float32Array(3 * 32 * 32))).rejects.toMatchObject({ argument: 'model' });
  });
});
