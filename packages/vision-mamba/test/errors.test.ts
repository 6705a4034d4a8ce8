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
