import { caseSeed, describeEachBackend, freshSeed, randomFloats, rng } from '@longseq/test-harness';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type JambaConfig, JambaModel, type JambaTensorReader, jambaConfig, jambaRef } from './imports';
import { maxRelativeError } from './helpers';

const seed = freshSeed();

/**
 * A shape other than the golden one: in_proj/out_proj biases, no conv bias, tied embeddings, a
 * dt rank and widths that are not multiples of 4 (scalar loads in the fused kernels), attention
 * in the middle, an MoE of 3 experts top-2 and a dense MLP.
 */
const config: JambaConfig = jambaConfig({
  dModel: 34,
  nLayer: 3,
  vocabSize: 53,
  intermediateSize: 21,
  numHeads: 2,
  numKvHeads: 1,
  headDim: 17,
  attnLayerPeriod: 3,
  attnLayerOffset: 1,
  expertLayerPeriod: 2,
  expertLayerOffset: 0,
  numExperts: 3,
  topK: 2,
  dState: 5,
  dConv: 3,
  expand: 2,
  dInner: 68,
  dtRank: 3,
  convBias: false,
  projBias: true,
  eps: 1e-5,
  tieWordEmbeddings: true,
});

/** Fresh random weights by name (norm weights around 1, A_log and the dt bias in Mamba's ranges). */
function randomWeights(s: number): JambaTensorReader {
  const made = new Map<string, Float32Array>();
  return (name, shape) => {
    let data = made.get(name);
    if (!data) {
      const count = shape.reduce((a, b) => a * b, 1);
      const random = rng(caseSeed(s, name));
      const scale = 1 / Math.sqrt(shape[shape.length - 1]!);
      if (name.endsWith('norm.weight') || name.endsWith('layernorm.weight'))
        data = randomFloats(count, random, 0.5, 1.5);
      else if (name.endsWith('A_log')) data = randomFloats(count, random, 0, 1.5);
      else if (name.endsWith('dt_proj.bias')) data = randomFloats(count, random, -4, -1);
      else if (name.endsWith('.D')) data = randomFloats(count, random, 0.5, 1.5);
      else if (name.includes('embed_tokens')) data = randomFloats(count, random, -1, 1);
      else data = randomFloats(count, random, -scale, scale);
      made.set(name, data);
    }
    return data;
  };
}

describeEachBackend('JambaModel on a random shape (biases, tied embeddings, odd widths)', (ctx) => {
  const read = randomWeights(seed);
  let model: JambaModel;
  beforeAll(() => {
    model = JambaModel.fromReader(ctx.backend, config, read);
  });
  afterAll(() => model?.dispose());

  it('forward and decoding through the cache equal the float64 reference', async () => {
    expect(config.layerTypes).toEqual(['mamba', 'attention', 'mamba']);
    expect(config.layerExperts).toEqual([3, 1, 3]);
    expect(model.weights.lmHead).toBe(model.weights.embeddings);
    const random = rng(seed);
    const ids = [0, 1].map(() => Array.from({ length: 7 }, () => Math.floor(random() * 53)));
    const ref = jambaRef(config, read, ids);
    const { logits } = await model.forward(ids);
    const got = await logits.read();
    logits.dispose();
    const expected = Float64Array.from(ref.logits.flatMap((l) => Array.from(l)));
    expect(maxRelativeError(got, expected, 53), `seed ${seed}`).toBeLessThan(1e-4);
    const lanes = ctx.name === 'webgpu' ? [0, 64] : [0];
    for (const l of lanes) {
      model.decodeLanes = l;
      const cache = model.createCache({ maxSequences: 2, blockSize: 3 });
      try {
        const prefix = ids.map((row) => row.slice(0, 4));
        const { seqIds, logits: first } = await model.prefill(prefix, cache);
        first.dispose();
        for (let t = 4; t < 7; t++) {
          const step = await model.step(
            seqIds,
            ids.map((row) => row[t]!),
            cache,
          );
          const values = await step.read();
          step.dispose();
          for (let b = 0; b < 2; b++) {
            const e = ref.logits[b]!.subarray(t * 53, (t + 1) * 53);
            expect(
              maxRelativeError(values.subarray(b * 53, (b + 1) * 53), e, 53),
              `lanes ${l} position ${t} sequence ${b}, seed ${seed}`,
            ).toBeLessThan(1e-4);
          }
        }
      } finally {
        model.decodeLanes = 0;
        cache.dispose();
      }
    }
  });

  it('fromRandom: the same seed gives the same weights, and generation through the cache equals recomputing', async () => {
    const small = jambaConfig({
      dModel: 32,
      nLayer: 4,
      vocabSize: 40,
      intermediateSize: 24,
      numHeads: 2,
      numKvHeads: 1,
      attnLayerPeriod: 4,
      attnLayerOffset: 2,
      numExperts: 4,
      topK: 2,
      dState: 4,
      dtRank: 2,
    });
    const a = JambaModel.fromRandom(ctx.backend, small, 5);
    const b = JambaModel.fromRandom(ctx.backend, small, 5);
    try {
      const moe = a.weights.layers[1]!.feedForward;
      const moeB = b.weights.layers[1]!.feedForward;
      if (moe.kind !== 'moe' || moeB.kind !== 'moe') throw new Error('layer 1 has experts');
      // expert 2's up projection (WebGPU holds the experts stacked)
      const up = (ff: typeof moe) => (ff.stacked ? ff.stacked.up : ff.experts![2]!.upProj).read();
      expect(Array.from(await up(moe))).toEqual(Array.from(await up(moeB)));
      const options = { maxNewTokens: 5, returnLogits: true };
      const cached = await a.generate([[1, 2, 3, 4]], options);
      const recomputed = await a.generate([[1, 2, 3, 4]], { ...options, useCache: false });
      for (let t = 0; t < 5; t++)
        expect(maxRelativeError(cached.logits![t]!, recomputed.logits![t]!, 40), `step ${t}`).toBeLessThan(
          1e-4,
        );
      expect(cached.ids).toEqual(recomputed.ids);
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});
