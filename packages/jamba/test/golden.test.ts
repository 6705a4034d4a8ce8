import { loadCheckpoint, nodeFileSource } from '@longseq/nn';
import { describeEachBackend, referenceAgainstGolden } from '@longseq/test-harness';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JambaModel, argmaxOf, jambaCheckpointReader, jambaConfigFromHf, jambaRef } from './imports';
import { GOLDEN, REL_TOL, goldenConfig, maxRelativeError, readGolden } from './helpers';

const golden = readGolden();
const vocab = 128;

describe('jambaRef on jamba-tiny', () => {
  it("the float64 reference reproduces transformers' logits and greedy ids", async () => {
    const config = jambaConfigFromHf(goldenConfig());
    const read = jambaCheckpointReader(await loadCheckpoint(nodeFileSource(GOLDEN)));
    const result = referenceAgainstGolden(
      (ids) => jambaRef(config, read, ids),
      (ids, state) => jambaRef(config, read, ids, { state }),
      golden,
      argmaxOf,
    );
    // float64 against float64, apart from transformers' float32 exp(A_log): ~1e-7
    expect(result.logitsError).toBeLessThan(1e-6);
    expect(result.worstStepError).toBeLessThan(1e-6);
    // greedy generation through the reference's recurrence
    expect(result.ids).toEqual(golden.generate.new_ids);
  });
});

describeEachBackend('JambaModel on jamba-tiny', (ctx) => {
  let model: JambaModel;
  beforeAll(async () => {
    model = await JambaModel.load(ctx.backend, GOLDEN);
  });
  afterAll(() => model?.dispose());

  it('loads the config and the layer plan of transformers (mamba+MoE, attention+MLP, ...)', () => {
    expect(model.config).toMatchObject({
      dModel: 64,
      nLayer: 4,
      vocabSize: 128,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 16,
      numExperts: 4,
      topK: 2,
      dState: 8,
      dConv: 4,
      dInner: 128,
      dtRank: 8,
      layerTypes: ['mamba', 'attention', 'mamba', 'attention'],
      layerExperts: [4, 1, 4, 1],
    });
    expect(model.weights.layers.map((l) => `${l.mixer.kind}+${l.feedForward.kind}`)).toEqual([
      'mamba+moe',
      'attention+mlp',
      'mamba+moe',
      'attention+mlp',
    ]);
  });

  it('forward logits [2, 20, 128] match transformers within the relative tolerance', async () => {
    const { logits } = await model.forward(golden.input_ids);
    expect(logits.shape).toEqual([2, 20, vocab]);
    const err = maxRelativeError(await logits.read(), golden.logits.flat(2), vocab);
    logits.dispose();
    expect(err, `max relative error ${err}`).toBeLessThan(REL_TOL);
  });

  it('forward with lastOnly gives the last position of each sequence, [B, 1, V]', async () => {
    const { logits } = await model.forward(golden.input_ids, { lastOnly: true });
    expect(logits.shape).toEqual([2, 1, vocab]);
    const got = await logits.read();
    logits.dispose();
    for (let b = 0; b < 2; b++) {
      const err = maxRelativeError(got.subarray(b * vocab, (b + 1) * vocab), golden.logits[b]![19]!, vocab);
      expect(err).toBeLessThan(REL_TOL);
    }
  });

  // WebGPU decodes the Mamba layers through its fused kernels by default ('auto') and can be
  // made to take the composed path that gpu.js always takes; both are checked there.
  // The GPU shapes of the fused matrix-vector kernels (32..256 threads per row) are what a real
  // GPU runs; forced here so they are checked on every machine.
  if (ctx.name === 'webgpu') {
    for (const lanes of [32, 256]) {
      it(`fused decode with ${lanes} threads per row gives transformers' greedy ids and step logits`, async () => {
        model.decodeLanes = lanes;
        try {
          const g = golden.generate;
          const result = await model.generate(g.prompt_ids, { maxNewTokens: 4, returnLogits: true });
          expect(result.ids[0]).toEqual(g.new_ids.slice(0, 4));
          for (let t = 0; t < 4; t++)
            expect(maxRelativeError(result.logits![t]!, g.step_logits[t]!, vocab)).toBeLessThan(REL_TOL);
        } finally {
          model.decodeLanes = 0;
        }
      });
    }
  }

  const paths: ['auto' | 'composed', 'gpu' | 'host'][] =
    ctx.name === 'webgpu'
      ? [
          ['auto', 'gpu'],
          ['auto', 'host'],
          ['composed', 'host'],
        ]
      : [['auto', 'host']];
  for (const [path, routing] of paths) {
    it(`greedy generation through the hybrid cache (decode path ${path}, MoE routing on the ${routing}) gives transformers' ids exactly and each step's logits`, async () => {
      model.decodePath = path;
      model.decodeRouting = routing;
      try {
        const g = golden.generate;
        const result = await model.generate(g.prompt_ids, {
          maxNewTokens: g.new_ids.length,
          returnLogits: true,
        });
        expect(result.ids).toEqual([g.new_ids]);
        expect(result.logits).toHaveLength(g.step_logits.length);
        for (let t = 0; t < g.step_logits.length; t++) {
          const err = maxRelativeError(result.logits![t]!, g.step_logits[t]!, vocab);
          expect(err, `step ${t}: max relative error ${err}`).toBeLessThan(REL_TOL);
        }
        // ids only: greedy through stepGreedy (the argmax on the GPU where it can)
        const idsOnly = await model.generate(g.prompt_ids, { maxNewTokens: g.new_ids.length });
        expect(idsOnly.ids).toEqual([g.new_ids]);
      } finally {
        model.decodePath = 'auto';
        model.decodeRouting = 'gpu';
      }
    });
  }
});
