import { describeEachBackend, freshSeed, randomFloats, rng } from '@longseq/test-harness';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { maxRelativeError } from './helpers';
import {
  type JambaConfig,
  JambaModel,
  type JambaTensorReader,
  copyExpert,
  jambaConfig,
  jambaRandomReader,
  jambaRef,
} from './imports';

const seed = freshSeed();

/**
 * Two MoE layers (4 experts top-2) around a dense one, attention in the middle; M and F such
 * that an expert's blocks are not whole vec4s (F * M = 18 * 13 = 234).
 */
const widths = { dModel: 18, intermediateSize: 13, vocabSize: 29, headDim: 16, dInner: 36, dState: 3 };
const attentionLayout = { numHeads: 2, numKvHeads: 1, attnLayerPeriod: 3, attnLayerOffset: 1 };
const expertLayout = { numExperts: 4, topK: 2, expertLayerPeriod: 2, expertLayerOffset: 0 };
const config: JambaConfig = jambaConfig({
  ...widths,
  ...attentionLayout,
  ...expertLayout,
  nLayer: 3,
  dConv: 3,
  dtRank: 2,
});

/**
 * Seeded random weights (jambaRandomReader) kept by name: the reference, which reads in its
 * own order, sees the tensors the model loaded.
 */
function keptByName(read: JambaTensorReader): JambaTensorReader {
  const kept = new Map<string, Float32Array>();
  return (name, shape) => kept.get(name) ?? kept.set(name, read(name, shape)).get(name)!;
}

describeEachBackend('copyExpert (one expert out of stacked weights)', (ctx) => {
  for (const [R, C] of [
    [5, 7],
    [4, 6],
  ] as const) {
    it(`copies each expert's [${R}, ${C}] block exactly, into one reused tensor (${(R * C) % 4 === 0 ? 'vec4' : 'scalar'} path)`, async () => {
      const E = 3;
      const host = randomFloats(E * R * C, rng(seed ^ (R * C)), -2, 2);
      const b = ctx.backend;
      const stacked = b.tensor(host, [E * R, C]);
      const out = b.empty([R, C]);
      try {
        // the last expert first: a copy must overwrite what the one before left
        for (const e of [2, 0, 1]) {
          await copyExpert(stacked, e, out);
          expect(Array.from(await out.read()), `expert ${e}`).toEqual(
            Array.from(host.subarray(e * R * C, (e + 1) * R * C)),
          );
        }
      } finally {
        stacked.dispose();
        out.dispose();
      }
    });
  }

  it('refuses a bad stack, expert or dtype before any GPU work, naming the argument', async () => {
    const b = ctx.backend;
    const stacked = b.tensor(randomFloats(3 * 4 * 5, rng(seed)), [12, 5]);
    const out = b.tensor(new Float32Array(20).fill(0.5), [4, 5]);
    const notRows = b.tensor(new Float32Array(10 * 5).fill(0.5), [10, 5]);
    const otherCols = b.tensor(new Float32Array(12 * 4).fill(0.5), [12, 4]);
    const ints = b.tensor(new Int32Array(20), [4, 5], 'i32');
    const run = vi.spyOn(b, 'run');
    try {
      for (const bad of [notRows, otherCols])
        await expect(copyExpert(bad, 0, out)).rejects.toMatchObject({
          name: 'ShapeError',
          argument: 'stacked',
        });
      for (const expert of [-1, 3, 1.5, Number.NaN])
        await expect(copyExpert(stacked, expert, out)).rejects.toMatchObject({
          name: 'ArgumentError',
          argument: 'expert',
        });
      await expect(copyExpert(stacked, 0, ints)).rejects.toMatchObject({
        name: 'DTypeError',
        argument: 'out',
      });
      expect(run).not.toHaveBeenCalled();
      expect(Array.from(await out.read())).toEqual(new Array(20).fill(0.5));
    } finally {
      run.mockRestore();
      for (const t of [stacked, out, notRows, otherCols, ints]) t.dispose();
    }
  });
});

describeEachBackend('JambaModel holds each expert once', (ctx) => {
  const read = keptByName(jambaRandomReader(config, seed));
  let model: JambaModel;
  beforeAll(() => {
    model = JambaModel.fromReader(ctx.backend, config, read);
  });
  afterAll(() => model?.dispose());

  it("the weights' bytes are the parameters x 4 (+ the packed decode params and the scan's identity): no second copy of the experts", () => {
    const {
      dModel: M,
      dInner: D,
      dState: N,
      dConv: K,
      dtRank: R,
      vocabSize: V,
      intermediateSize: F,
    } = config;
    expect(config.layerExperts).toEqual([4, 1, 4]);
    expect(config.layerTypes).toEqual(['mamba', 'attention', 'mamba']);
    // the checkpoint's parameters, counted from the config (conv bias, no projection biases,
    // untied embeddings: jambaConfig's defaults)
    expect([config.convBias, config.projBias, config.tieWordEmbeddings]).toEqual([true, false, false]);
    const norms = 2 * M;
    const mamba = 2 * D * M + D * K + D + (R + 2 * N) * D + R + 2 * N + D * R + D + D * N + D + M * D;
    const attention = (2 + 1 + 1 + 2) * 16 * M; // q [2 x 16, M], k and v [16, M], o [M, 2 x 16]
    const mlp = 3 * F * M;
    const moe = 4 * M + 4 * mlp; // router [E, M] and 4 experts
    const parameters = 2 * V * M + M + (norms + mamba + moe) * 2 + (norms + attention + mlp);
    // and counted as the loader reads them: each tensor once
    let read = 0;
    const random = jambaRandomReader(config, 3);
    const before = ctx.backend.memory().bytes;
    const counted = JambaModel.fromReader(ctx.backend, config, (name, shape) => {
      read += shape.reduce((a, b) => a * b, 1);
      return random(name, shape);
    });
    try {
      expect(read).toBe(parameters);
      // on top: per Mamba layer the decode kernels' packed small parameters (conv weight and
      // bias, dt bias, D, A, in_proj bias, the dt/B/C norm weights), and the identity [N, N]
      const packed = D * K + 5 * D + D * N + R + 2 * N;
      expect(ctx.backend.memory().bytes - before).toBe(4 * (parameters + 2 * packed + N * N));
      for (const l of [0, 2]) {
        const ff = counted.weights.layers[l]!.feedForward;
        if (ff.kind !== 'moe') throw new Error(`layer ${l} has experts`);
        if (ctx.name === 'webgpu') {
          expect(ff.experts, 'WebGPU: only the stacks').toBeUndefined();
          expect(ff.stacked!.gate.shape).toEqual([4 * F, M]);
          expect(ff.stacked!.down.shape).toEqual([4 * M, F]);
        } else {
          expect(ff.stacked, 'gpu.js: only the per-expert tensors').toBeUndefined();
          expect(ff.experts).toHaveLength(4);
        }
      }
    } finally {
      counted.dispose();
    }
    expect(ctx.backend.memory().bytes).toBe(before);
  });

  it('forward, prefill and decode (every routing and decode path) equal the float64 reference', async () => {
    const random = rng(seed + 5);
    const ids = [0, 1].map(() => Array.from({ length: 6 }, () => Math.floor(random() * config.vocabSize)));
    const V = config.vocabSize;
    const ref = jambaRef(config, read, ids);
    const { logits } = await model.forward(ids);
    const got = await logits.read();
    logits.dispose();
    const expected = Float64Array.from(ref.logits.flatMap((l) => Array.from(l)));
    expect(maxRelativeError(got, expected, V), `forward, seed ${seed}`).toBeLessThan(1e-4);
    // WebGPU: fused decode routed on the GPU or the host, and the composed ops; gpu.js composes
    const paths = (ctx.name === 'webgpu' ? ['auto/gpu', 'auto/host', 'composed/host'] : ['auto/host']).map(
      (p) => p.split('/') as ['auto' | 'composed', 'gpu' | 'host'],
    );
    for (const [path, routing] of paths) {
      model.decodePath = path;
      model.decodeRouting = routing;
      const cache = model.createCache({ maxSequences: 2, blockSize: 4 });
      try {
        const { seqIds, logits: first } = await model.prefill(
          ids.map((row) => row.slice(0, 3)),
          cache,
        );
        const prefilled = await first.read();
        first.dispose();
        for (let t = 2; t < 6; t++) {
          let values = prefilled;
          if (t > 2) {
            const step = await model.step(
              seqIds,
              ids.map((row) => row[t]!),
              cache,
            );
            values = await step.read();
            step.dispose();
          }
          for (let b = 0; b < 2; b++)
            expect(
              maxRelativeError(
                values.subarray(b * V, (b + 1) * V),
                ref.logits[b]!.subarray(t * V, (t + 1) * V),
                V,
              ),
              `${path} / ${routing}: position ${t} sequence ${b}, seed ${seed}`,
            ).toBeLessThan(1e-4);
        }
      } finally {
        model.decodePath = 'auto';
        model.decodeRouting = 'gpu';
        cache.dispose();
      }
    }
  });
});
