import { hasKernel, runKernel, type Tensor } from '@longseq/backend';
import { describeEachBackend, freshSeed, randomFloats, rng } from '@longseq/test-harness';
import { expect, it } from 'vitest';
import { MambaArgmax, MambaModel, argmax, mambaConfig, randomReader, registerMambaKernels } from '../src';

describeEachBackend('greedy decoding', (ctx) => {
  // The GPU argmax (WebGPU only) against the host argmax: first index on ties, NaN never
  // wins, all NaN gives the last index; rows shorter and longer than a workgroup.
  it('the GPU argmax of each row equals the host argmax (ties, NaN, -Infinity, all NaN)', async () => {
    registerMambaKernels();
    if (!hasKernel(MambaArgmax, ctx.backend.kind)) {
      expect(ctx.backend.kind).not.toBe('webgpu');
      return;
    }
    const random = rng(freshSeed());
    for (const vocab of [1, 7, 1000, 5003]) {
      const batch = 6;
      const values = randomFloats(batch * vocab, random, -5, 5);
      const row = (b: number) => values.subarray(b * vocab, (b + 1) * vocab);
      // Row 1: the maximum twice (the first must win); row 2: NaNs before and at the maximum;
      // row 3: all -Infinity; row 4: all NaN; row 5: the maximum at the last index.
      const r1 = row(1);
      const at = Math.floor(random() * vocab);
      r1[at] = 9;
      r1[vocab - 1 - Math.floor((vocab - 1 - at) / 2)] = 9;
      const r2 = row(2);
      r2[0] = Number.NaN;
      r2[Math.floor(vocab / 2)] = Number.NaN;
      row(3).fill(Number.NEGATIVE_INFINITY);
      row(4).fill(Number.NaN);
      row(5)[vocab - 1] = 10;
      const logits = ctx.backend.tensor(values, [batch, vocab]);
      const ids = (await runKernel(MambaArgmax, ctx.backend, [logits], { batch, vocab })) as Tensor;
      const got = Array.from(await ids.read());
      const expected = Array.from({ length: batch }, (_, b) => argmax(values, b * vocab, (b + 1) * vocab));
      expect(got, `vocab ${vocab}`).toEqual(expected);
      logits.dispose();
      ids.dispose();
    }
  });

  // d_model 18: the in_proj and LM head rows are not vec4 multiples (scalar loads), d_inner 36 is.
  it('stepGreedy chooses the host argmax of step() on the same state; fused and composed steps agree', async () => {
    const config = mambaConfig({ dModel: 18, nLayer: 2, vocabSize: 301, dState: 4 });
    const model = MambaModel.fromReader(ctx.backend, config, randomReader(config, freshSeed()));
    const viaLogits = model.createState(3);
    const greedy = model.createState(3);
    const composed = model.createState(3);
    try {
      let ids = [5, 17, 300];
      for (let t = 0; t < 3; t++) {
        const logits = await model.step(ids, viaLogits);
        const values = await logits.read();
        logits.dispose();
        const expected = ids.map((_, b) => argmax(values, b * 301, (b + 1) * 301));
        model.decodePath = 'composed';
        const composedLogits = await model.step(ids, composed);
        model.decodePath = 'auto';
        const reference = await composedLogits.read();
        composedLogits.dispose();
        let worst = 0;
        let scale = 0;
        for (let i = 0; i < values.length; i++) {
          worst = Math.max(worst, Math.abs(values[i]! - reference[i]!));
          scale = Math.max(scale, Math.abs(reference[i]!));
        }
        expect(worst / scale).toBeLessThan(1e-5);
        const chosen = await model.stepGreedy(ids, greedy);
        expect(chosen).toEqual(expected);
        ids = chosen;
      }
    } finally {
      viaLogits.dispose();
      greedy.dispose();
      composed.dispose();
      model.dispose();
    }
  });
});
