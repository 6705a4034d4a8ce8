import { loadCheckpoint, nodeFileSource } from '@longseq/nn';
import { describeEachBackend } from '@longseq/test-harness';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisionMamba, vimConfigFromJson, vimRef } from '../src';
import { GOLDEN, REL_TOL, goldenConfig, maxRelativeError, readGolden } from './helpers';

const golden = readGolden();
const images = { data: golden.images.flat(3), shape: [golden.images.length, 3, 32, 32] };

describe('vimRef on vim-tiny', () => {
  it('the float64 reference reproduces the golden features and logits', async () => {
    const config = vimConfigFromJson(goldenConfig());
    const checkpoint = await loadCheckpoint(nodeFileSource(GOLDEN));
    const { features, logits } = vimRef(config, (n, s) => checkpoint.read(n, s), images);
    // float64 against float64: only the summation order differs
    expect(maxRelativeError(features, golden.features.flat(), 32)).toBeLessThan(1e-9);
    expect(maxRelativeError(logits, golden.logits.flat(), 10)).toBeLessThan(1e-9);
  });
});

describeEachBackend('VisionMamba on vim-tiny', (ctx) => {
  let model: VisionMamba;
  beforeAll(async () => {
    model = await VisionMamba.load(ctx.backend, GOLDEN);
  });
  afterAll(() => model?.dispose());

  it('reads the config: bimamba v2, middle class token, 4 x 4 patches', () => {
    expect(model.config).toMatchObject({
      imgSize: 32,
      patchSize: 8,
      embedDim: 32,
      depth: 2,
      dInner: 64,
      dtRank: 2,
    });
    expect(model.order).toMatchObject({ grid: 4, patches: 16, length: 17, clsIndex: 8 });
  });

  it('features [2, 32] and logits [2, 10] match the golden float64 model within the relative tolerance', async () => {
    const features = await model.features(images);
    const logits = await model.classify(images);
    expect(features.shape).toEqual([2, 32]);
    expect(logits.shape).toEqual([2, 10]);
    const fErr = maxRelativeError(await features.read(), golden.features.flat(), 32);
    const lErr = maxRelativeError(await logits.read(), golden.logits.flat(), 10);
    features.dispose();
    logits.dispose();
    expect(fErr, `features: max relative error ${fErr}`).toBeLessThan(REL_TOL);
    expect(lErr, `logits: max relative error ${lErr}`).toBeLessThan(REL_TOL);
  });

  it('classifies image by image as it does in a batch', async () => {
    const per = 3 * 32 * 32;
    const one = await model.classify(new Float32Array(images.data.slice(per, 2 * per)));
    const err = maxRelativeError(await one.read(), golden.logits[1]!, 10);
    one.dispose();
    expect(err).toBeLessThan(REL_TOL);
  });
});
