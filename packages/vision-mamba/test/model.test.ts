import {
  caseSeed,
  describeEachBackend,
  expectClose,
  freshSeed,
  randomFloats,
  rng,
} from '@longseq/test-harness';
import type { SafetensorsTensorInput } from '@longseq/nn';
import { afterAll, expect, it } from 'vitest';
import {
  type VimConfig,
  VisionMamba,
  vimConfig,
  vimConfigToJson,
  vimRandomReader,
  vimRef,
  vimTensorShapes,
} from '../src';
import { cleanTempDirs, writeCheckpoint } from './helpers';

const seed = freshSeed();

/** Small shapes (SwiftShader): odd patch grids, depth 0..2, one or three channels, every pooling. */
const CASES: {
  name: string;
  config: Partial<VimConfig>;
  batch: number;
  layout?: 'channels' | 'tokens';
  scanAlgorithm?: 'sequential' | 'parallel';
}[] = [
  {
    name: 'odd 3x3 grid, middle class token, depth 2, 3 channels',
    config: { imgSize: 12, patchSize: 4, embedDim: 8, depth: 2, numClasses: 5, dState: 4 },
    batch: 2,
  },
  {
    name: 'one channel, depth 1, class token at the head, overlapping 5x5 patches (stride 2 < patch 3)',
    config: {
      imgSize: 11,
      patchSize: 3,
      stride: 2,
      channels: 1,
      embedDim: 6,
      depth: 1,
      numClasses: 3,
      dState: 3,
      middleClsToken: false,
    },
    batch: 3,
  },
  {
    name: 'no class token, mean pooling, LayerNorm, no position embedding, undivided output, d_conv 3',
    config: {
      imgSize: 10,
      patchSize: 5,
      embedDim: 8,
      depth: 2,
      numClasses: 4,
      dState: 5,
      dConv: 3,
      clsToken: false,
      absPosEmbed: false,
      rmsNorm: false,
      divideOut: false,
    },
    batch: 2,
  },
  {
    name: 'no class token, max pooling, depth 1, one image',
    config: {
      imgSize: 9,
      patchSize: 3,
      embedDim: 4,
      depth: 1,
      numClasses: 2,
      dState: 2,
      clsToken: false,
      finalPool: 'max',
    },
    batch: 1,
  },
  {
    name: "no class token, pooling 'none' (the last token), depth 0",
    config: {
      imgSize: 8,
      patchSize: 4,
      embedDim: 4,
      depth: 0,
      numClasses: 3,
      dState: 2,
      clsToken: false,
      finalPool: 'none',
    },
    batch: 2,
  },
  {
    name: "odd 3x3 grid, 'tokens' layout (one in_proj GEMM, transposing gathers and merge), sequential scan",
    config: { imgSize: 12, patchSize: 4, embedDim: 8, depth: 2, numClasses: 5, dState: 4 },
    batch: 3,
    layout: 'tokens',
    scanAlgorithm: 'sequential',
  },
  {
    name: "cross4 over a 3x3 grid, 'tokens' layout, parallel scan",
    config: { imgSize: 9, patchSize: 3, embedDim: 8, depth: 1, numClasses: 4, dState: 4, scan: 'cross4' },
    batch: 2,
    layout: 'tokens',
    scanAlgorithm: 'parallel',
  },
  {
    name: 'in_proj and out_proj biases, layer scale (gamma), convs without bias, depth 2',
    config: {
      imgSize: 12,
      patchSize: 4,
      embedDim: 8,
      depth: 2,
      numClasses: 5,
      dState: 4,
      projBias: true,
      layerScale: true,
      convBias: false,
    },
    batch: 2,
  },
  {
    name: "in_proj and out_proj biases, layer scale, cross4, 'tokens' layout (biases through linear)",
    config: {
      imgSize: 9,
      patchSize: 3,
      embedDim: 8,
      depth: 1,
      numClasses: 4,
      dState: 4,
      scan: 'cross4',
      projBias: true,
      layerScale: true,
    },
    batch: 2,
    layout: 'tokens',
  },
  {
    name: 'cross4 scan over a 3x3 grid with the middle class token, depth 2',
    config: { imgSize: 9, patchSize: 3, embedDim: 8, depth: 2, numClasses: 4, dState: 4, scan: 'cross4' },
    batch: 2,
  },
];

describeEachBackend('VisionMamba against vimRef (random weights and images)', (ctx) => {
  for (const c of CASES) {
    it(c.name, async () => {
      const s = caseSeed(seed, c.name);
      const random = rng(s);
      const config = vimConfig({ ...c.config, dtRank: Math.ceil((c.config.embedDim ?? 8) / 4) });
      const read = vimRandomReader(config, s);
      const shape = [c.batch, config.channels, config.imgSize, config.imgSize];
      const images = {
        data: randomFloats(
          shape.reduce((a, b) => a * b, 1),
          random,
        ),
        shape,
      };
      const ref64 = vimRef(config, read, images);
      const ref32 = vimRef(config, read, images, { precision: 'f32' });
      const model = VisionMamba.fromReader(ctx.backend, config, read);
      if (c.layout) model.layout = c.layout;
      if (c.scanAlgorithm) model.scanAlgorithm = c.scanAlgorithm;
      try {
        const features = await model.features(images);
        const logits = await model.classify(images);
        const tokens = await model.tokenStates(images);
        expect(features.shape).toEqual([c.batch, config.embedDim]);
        expect(logits.shape).toEqual([c.batch, config.numClasses]);
        expect(tokens.shape).toEqual([c.batch, model.order.length, config.embedDim]);
        const got = {
          features: await features.read(),
          logits: await logits.read(),
          tokens: await tokens.read(),
        };
        features.dispose();
        logits.dispose();
        tokens.dispose();
        for (const key of ['features', 'logits', 'tokens'] as const) {
          expectClose(got[key], ref64[key], ref32[key], { label: `${c.name}: ${key}`, seed: s, atol: 1e-5 });
        }
      } finally {
        model.dispose();
      }
    });
  }
});

describeEachBackend('VisionMamba.load: the mixer biases and layer scale a checkpoint holds', (ctx) => {
  afterAll(cleanTempDirs);

  it('config.json without bias / conv_bias / init_layer_scale: the tensors decide, and are used', async () => {
    const name = 'load with biases';
    const s = caseSeed(seed, name);
    const config = vimConfig({
      imgSize: 8,
      patchSize: 4,
      embedDim: 8,
      depth: 2,
      numClasses: 3,
      dState: 3,
      dtRank: 2,
      projBias: true,
      layerScale: true,
      convBias: false,
    });
    const read = vimRandomReader(config, s);
    const tensors: Record<string, SafetensorsTensorInput> = {};
    for (const [n, shape] of vimTensorShapes(config)) tensors[n] = { shape, data: read(n, shape) };
    const { bias: _b, conv_bias: _c, init_layer_scale: _g, ...json } = vimConfigToJson(config);
    const model = await VisionMamba.load(ctx.backend, writeCheckpoint(json, tensors));
    try {
      expect(model.config).toMatchObject({ projBias: true, layerScale: true, convBias: false });
      const shape = [2, 3, 8, 8];
      const images = { data: randomFloats(2 * 3 * 64, rng(s)), shape };
      const logits = await model.classify(images);
      const got = await logits.read();
      logits.dispose();
      const ref64 = vimRef(config, read, images);
      const ref32 = vimRef(config, read, images, { precision: 'f32' });
      expectClose(got, ref64.logits, ref32.logits, { label: `${name}: logits`, seed: s, atol: 1e-5 });
    } finally {
      model.dispose();
    }
  });
});

it("vimRef with final_pool_type 'max' (no class token): each class's largest per-token logit, as hustvl's forward", () => {
  // hustvl/Vim: forward_features returns every normed token for 'max', forward applies the
  // head to each and takes x.max(dim=1); the head of the max-pooled features is another thing
  const config = vimConfig({
    imgSize: 9,
    patchSize: 3,
    embedDim: 6,
    depth: 1,
    numClasses: 4,
    dState: 2,
    dtRank: 2,
    clsToken: false,
    finalPool: 'max',
  });
  const s = caseSeed(seed, 'max pooling');
  const read = vimRandomReader(config, s);
  const images = { data: randomFloats(2 * 3 * 81, rng(s)), shape: [2, 3, 9, 9] };
  const ref = vimRef(config, read, images);
  const head = read('head.weight', [4, 6]);
  const bias = read('head.bias', [4]);
  const L = 9;
  const logit = (row: ArrayLike<number>, o: number) => {
    let acc = bias[o]!;
    for (let m = 0; m < 6; m++) acc += head[o * 6 + m]! * row[m]!;
    return acc;
  };
  const perToken = new Float64Array(2 * 4);
  const ofFeatures = new Float64Array(2 * 4);
  for (let b = 0; b < 2; b++)
    for (let o = 0; o < 4; o++) {
      const tokens = Array.from({ length: L }, (_, t) =>
        ref.tokens.subarray((b * L + t) * 6, (b * L + t + 1) * 6),
      );
      perToken[b * 4 + o] = Math.max(...tokens.map((row) => logit(row, o)));
      ofFeatures[b * 4 + o] = logit(ref.features.subarray(b * 6, (b + 1) * 6), o);
    }
  for (let i = 0; i < 8; i++) expect(ref.logits[i]).toBeCloseTo(perToken[i]!, 12);
  expect(Math.max(...perToken.map((v, i) => Math.abs(v - ofFeatures[i]!)))).toBeGreaterThan(1e-3);
});

it('vimRandomReader gives each tensor the same values whatever order they are read in', () => {
  const config = vimConfig({ imgSize: 8, patchSize: 4, embedDim: 4, depth: 1 });
  const a = vimRandomReader(config, 5);
  const b = vimRandomReader(config, 5);
  const first = a('layers.0.mixer.x_proj_b.weight', [6, 8]);
  b('patch_embed.proj.weight', [4, 3, 4, 4]);
  expect(Array.from(b('layers.0.mixer.x_proj_b.weight', [6, 8]))).toEqual(Array.from(first));
  expect(Array.from(vimRandomReader(config, 6)('layers.0.mixer.x_proj_b.weight', [6, 8]))).not.toEqual(
    Array.from(first),
  );
});
