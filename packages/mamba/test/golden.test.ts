import { nodeFileSource } from '@longseq/nn';
import { describeEachBackend, referenceAgainstGolden } from '@longseq/test-harness';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MambaModel, argmax, mambaConfigFromHf, mambaRef } from '../src';
import { loadCheckpoint } from '@longseq/nn';
import { checkpointReader } from '../src';
import { GOLDEN, REL_TOL, goldenConfig, maxRelativeError, readGolden } from './helpers';

const golden = readGolden();
const vocab = 128;

describe('mambaRef on mamba-tiny', () => {
  it("the float64 reference reproduces transformers' logits and greedy ids", async () => {
    const config = mambaConfigFromHf(goldenConfig());
    const read = checkpointReader(await loadCheckpoint(nodeFileSource(GOLDEN)));
    const result = referenceAgainstGolden(
      (ids) => mambaRef(config, read, ids),
      (ids, state) => mambaRef(config, read, ids, { state }),
      golden,
      argmax,
    );
    // float64 against float64, apart from transformers' float32 exp(A_log): ~1e-7
    expect(result.logitsError).toBeLessThan(1e-6);
    expect(result.worstStepError).toBeLessThan(1e-6);
    // greedy generation through the reference's recurrence
    expect(result.ids).toEqual(golden.generate.new_ids);
  });
});

describeEachBackend('MambaModel on mamba-tiny', (ctx) => {
  let model: MambaModel;
  beforeAll(async () => {
    model = await MambaModel.load(ctx.backend, GOLDEN);
  });
  afterAll(() => model?.dispose());

  it('loads the config and tied weights', () => {
    expect(model.config).toMatchObject({
      dModel: 64,
      nLayer: 2,
      vocabSize: 128,
      dState: 16,
      dConv: 4,
      dInner: 128,
      dtRank: 4,
    });
    expect(model.weights.lmHead).toBe(model.weights.embeddings);
  });

  it('forward logits [2, 24, 128] match transformers within the relative tolerance', async () => {
    const { logits } = await model.forward(golden.input_ids);
    expect(logits.shape).toEqual([2, 24, vocab]);
    const err = maxRelativeError(await logits.read(), golden.logits.flat(2), vocab);
    expect(err, `max relative error ${err}`).toBeLessThan(REL_TOL);
    logits.dispose();
  });

  it('forward with lastOnly gives the last position of each sequence, [B, 1, V]', async () => {
    const { logits } = await model.forward(golden.input_ids, { lastOnly: true });
    expect(logits.shape).toEqual([2, 1, vocab]);
    const got = await logits.read();
    for (let b = 0; b < 2; b++) {
      const err = maxRelativeError(got.subarray(b * vocab, (b + 1) * vocab), golden.logits[b]![23]!, vocab);
      expect(err).toBeLessThan(REL_TOL);
    }
    logits.dispose();
  });

  // WebGPU decodes through its fused kernels by default ('auto'), and can be made to take the
  // composed path that gpu.js always takes; both are checked there.
  const paths: ('auto' | 'composed')[] = ctx.name === 'webgpu' ? ['auto', 'composed'] : ['auto'];
  for (const path of paths) {
    describe(`decode path ${path}`, () => {
      beforeAll(() => {
        model.decodePath = path;
      });
      afterAll(() => {
        model.decodePath = 'auto';
      });
      for (const prefill of ['scan', 'step'] as const) {
        it(`greedy generation (prefill by ${prefill}) gives transformers' ids exactly and each step's logits`, async () => {
          const g = golden.generate;
          const result = await model.generate(g.prompt_ids, {
            maxNewTokens: g.new_ids.length,
            prefill,
            returnLogits: true,
          });
          expect(result.ids).toEqual([g.new_ids]);
          expect(result.logits).toHaveLength(g.step_logits.length);
          for (let t = 0; t < g.step_logits.length; t++) {
            const err = maxRelativeError(result.logits![t]!, g.step_logits[t]!, vocab);
            expect(err, `step ${t}: max relative error ${err}`).toBeLessThan(REL_TOL);
          }
        });
      }

      it('forward(prefix) logits at every position equal the logits of stepping token by token', async () => {
        const ids = golden.input_ids.map((row) => row.slice(0, 9));
        const { logits } = await model.forward(ids);
        const all = await logits.read();
        logits.dispose();
        const state = model.createState(2);
        for (let t = 0; t < 9; t++) {
          const stepLogits = await model.step(
            ids.map((row) => row[t]!),
            state,
          );
          const got = await stepLogits.read();
          stepLogits.dispose();
          for (let b = 0; b < 2; b++) {
            const expected = all.subarray((b * 9 + t) * vocab, (b * 9 + t + 1) * vocab);
            const err = maxRelativeError(got.subarray(b * vocab, (b + 1) * vocab), expected, vocab);
            expect(err, `position ${t}, sequence ${b}`).toBeLessThan(REL_TOL);
          }
        }
        expect(state.position).toBe(9);
        state.dispose();
      });

      it('decoding holds O(1) memory: bytes in use do not grow with the tokens decoded', async () => {
        const state = model.createState(2);
        const stepOnce = async (t: number) => (await model.step([t % 128, (t * 7) % 128], state)).dispose();
        await stepOnce(0);
        const after1 = ctx.backend.memory();
        for (let t = 1; t < 12; t++) await stepOnce(t);
        const after12 = ctx.backend.memory();
        expect({ tensors: after12.tensors, bytes: after12.bytes }).toEqual({
          tensors: after1.tensors,
          bytes: after1.bytes,
        });
        state.dispose();
      });

      it('forward with returnState then step continues the sequence like one longer forward', async () => {
        const ids = golden.input_ids;
        const { logits: whole } = await model.forward(ids);
        const all = await whole.read();
        whole.dispose();
        const { logits: head, state } = await model.forward(
          ids.map((row) => row.slice(0, 20)),
          { returnState: true },
        );
        head.dispose();
        for (let t = 20; t < 24; t++) {
          const stepLogits = await model.step(
            ids.map((row) => row[t]!),
            state!,
          );
          const got = await stepLogits.read();
          stepLogits.dispose();
          for (let b = 0; b < 2; b++) {
            const expected = all.subarray((b * 24 + t) * vocab, (b * 24 + t + 1) * vocab);
            expect(maxRelativeError(got.subarray(b * vocab, (b + 1) * vocab), expected, vocab)).toBeLessThan(
              REL_TOL,
            );
          }
        }
        state!.dispose();
      });
    });
  }

  // The GPU shapes of the fused matrix-vector kernels (32..256 threads per row) are what a
  // real GPU runs; force them here so they are checked on every machine.
  if (ctx.name === 'webgpu') {
    for (const lanes of [32, 256]) {
      it(`fused decode with ${lanes} threads per row gives transformers' greedy ids and step logits`, async () => {
        model.decodeLanes = lanes;
        try {
          const g = golden.generate;
          const result = await model.generate(g.prompt_ids, { maxNewTokens: 4, returnLogits: true });
          expect(result.ids[0]).toEqual(g.new_ids.slice(0, 4));
          for (let t = 0; t < 4; t++) {
            expect(maxRelativeError(result.logits![t]!, g.step_logits[t]!, vocab)).toBeLessThan(REL_TOL);
          }
        } finally {
          model.decodeLanes = 0;
        }
      });
    }
  }

  it('seeded sampling is reproducible, and another seed gives another text', async () => {
    const options = { maxNewTokens: 12, temperature: 1.5, topK: 40, topP: 0.95 };
    const prompts = [golden.generate.prompt_ids, golden.input_ids[0]!.slice(0, 5)];
    const a = await model.generate(prompts, { ...options, seed: 7 });
    const b = await model.generate(prompts, { ...options, seed: 7 });
    const c = await model.generate(prompts, { ...options, seed: 8 });
    expect(a.ids).toEqual(b.ids);
    expect(a.ids[0]).toHaveLength(12);
    expect(c.ids).not.toEqual(a.ids);
    for (const row of a.ids) for (const id of row) expect(id >= 0 && id < vocab).toBe(true);
  });

  it('bad ids are refused before any GPU work, naming the argument', async () => {
    await expect(model.forward([[1, 2], [3]])).rejects.toMatchObject({ argument: 'ids' });
    await expect(model.forward([[]])).rejects.toMatchObject({ name: 'ShapeError', argument: 'ids' });
    await expect(model.forward([[1, 128]])).rejects.toMatchObject({
      name: 'ArgumentError',
      argument: 'ids[0]',
    });
    await expect(model.forward([[1.5]])).rejects.toThrow(/token ids in \[0, 128\)/);
    await expect(model.generate([1, 2], { maxNewTokens: -1 })).rejects.toMatchObject({
      argument: 'options.maxNewTokens',
    });
    await expect(model.generate([1, 2], { maxNewTokens: 2, temperature: 0 })).rejects.toMatchObject({
      argument: 'options.temperature',
    });
    await expect(model.generate([1, 2], { maxNewTokens: 2, topP: 1.5 })).rejects.toMatchObject({
      argument: 'options.topP',
    });
    const state = model.createState(2);
    await expect(model.step([1], state)).rejects.toMatchObject({ argument: 'ids' });
    state.dispose();
  });
});
