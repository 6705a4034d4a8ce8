import { ShapeError } from '@longseq/backend';
import { ConfigError, MissingTensorError } from '@longseq/nn';
import { describeEachBackend } from '@longseq/test-harness';
import { afterAll, expect, it } from 'vitest';
import { JambaModel } from '../src';
import { GOLDEN, cleanTempDirs, goldenConfig, goldenTensors, writeCheckpoint } from './helpers';

afterAll(cleanTempDirs);

describeEachBackend('JambaModel checkpoints', (ctx) => {
  it('a sharded checkpoint (index + shards) loads the same weights as the single file', async () => {
    const tensors = goldenTensors();
    const names = Object.keys(tensors);
    const dir = writeCheckpoint(goldenConfig(), tensors, [
      names.filter((n) => n.includes('layers.0.') || n.includes('layers.1.')),
      names.filter((n) => !(n.includes('layers.0.') || n.includes('layers.1.'))),
    ]);
    const sharded = await JambaModel.load(ctx.backend, dir);
    const single = await JambaModel.load(ctx.backend, GOLDEN);
    try {
      const a = sharded.weights.layers[0]!.feedForward;
      const b = single.weights.layers[0]!.feedForward;
      if (a.kind !== 'moe' || b.kind !== 'moe') throw new Error('layer 0 has experts');
      // expert 3's down projection (WebGPU holds the experts stacked)
      const down = (ff: typeof a) => (ff.stacked ? ff.stacked.down : ff.experts![3]!.downProj).read();
      expect(Array.from(await down(a))).toEqual(Array.from(await down(b)));
      expect(Array.from(await sharded.weights.lmHead.read())).toEqual(
        Array.from(await single.weights.lmHead.read()),
      );
    } finally {
      sharded.dispose();
      single.dispose();
    }
  });

  it('a missing expert tensor is a MissingTensorError naming it, and nothing stays allocated', async () => {
    const { 'model.layers.2.feed_forward.experts.3.up_proj.weight': _x, ...tensors } = goldenTensors();
    const dir = writeCheckpoint(goldenConfig(), tensors);
    const before = ctx.backend.memory();
    const err = await JambaModel.load(ctx.backend, dir).catch((e) => e);
    expect(err).toBeInstanceOf(MissingTensorError);
    expect(err.message).toMatch(/model\.layers\.2\.feed_forward\.experts\.3\.up_proj\.weight/);
    expect(ctx.backend.memory().tensors).toBe(before.tensors);
  });

  it('a misshapen tensor is a ShapeError naming it and the expected shape', async () => {
    const tensors = goldenTensors();
    tensors['model.layers.1.self_attn.k_proj.weight'] = {
      shape: [64, 64],
      data: new Float32Array(64 * 64).fill(0.5),
    };
    const dir = writeCheckpoint(goldenConfig(), tensors);
    const err = await JambaModel.load(ctx.backend, dir).catch((e) => e);
    expect(err).toBeInstanceOf(ShapeError);
    expect(err.message).toMatch(/model\.layers\.1\.self_attn\.k_proj\.weight.*\[32, 64\]/);
    const dt = goldenTensors();
    dt['model.layers.0.mamba.dt_layernorm.weight'] = { shape: [4], data: new Float32Array([1, 2, 3, 4]) };
    const err2 = await JambaModel.load(ctx.backend, writeCheckpoint(goldenConfig(), dt)).catch((e) => e);
    expect(err2).toBeInstanceOf(ShapeError);
    expect(err2.message).toMatch(/dt_layernorm/);
  });

  it('an inconsistent config.json is a ConfigError before any tensor is read', async () => {
    const dir = writeCheckpoint({ ...goldenConfig(), num_experts_per_tok: 9 }, goldenTensors());
    const before = ctx.backend.memory();
    const err = await JambaModel.load(ctx.backend, dir).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/num_experts_per_tok/);
    expect(ctx.backend.memory().tensors).toBe(before.tensors);
  });
});
