/**
 * The Vim digit classifier the playground ships (public/models/vim-mnist, trained by
 * apps/training/vim-mnist/train.py) runs the same in longseq as in the training script's
 * PyTorch model: expected.json holds test digits with the features and logits that model
 * computed in float64 on the CPU. Here longseq's float64 reference reproduces them, every
 * backend matches them within the golden README's rule (relative 1e-4 of each row's largest
 * |value|), the predicted classes are the stored labels, and the page's canvas preprocessing
 * (mnistFromGray) keeps those digits' classes when they come in drawn 10x larger.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCheckpoint, nodeFileSource } from '@longseq/nn';
import { describeEachBackend } from '@longseq/test-harness';
import { VisionMamba, vimConfigFromJson, vimRef } from '@longseq/vision-mamba';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mnistFromGray } from '../src/pages/vim';

const FOLDER = fileURLToPath(new URL('../public/models/vim-mnist/', import.meta.url));

interface Expected {
  readonly images: number[][][][];
  readonly features: number[][];
  readonly logits: number[][];
  readonly labels: number[];
}

const expected = JSON.parse(readFileSync(join(FOLDER, 'expected.json'), 'utf8')) as Expected;
const config = JSON.parse(readFileSync(join(FOLDER, 'config.json'), 'utf8')) as Record<string, number>;
const B = expected.images.length;
const SIDE = 28;
const images = { data: expected.images.flat(3), shape: [B, 1, SIDE, SIDE] };
const REL_TOL = 1e-4;

/** Worst |actual - expected| over each row, divided by the row's largest |expected|. */
function maxRelativeError(actual: ArrayLike<number>, want: ArrayLike<number>, row: number): number {
  let worst = 0;
  for (let start = 0; start < want.length; start += row) {
    let scale = 0;
    for (let i = start; i < start + row; i++) scale = Math.max(scale, Math.abs(want[i]!));
    for (let i = start; i < start + row; i++) {
      const err = Math.abs(actual[i]! - want[i]!) / scale;
      if (!(err <= worst)) worst = Number.isNaN(err) ? Number.POSITIVE_INFINITY : err;
    }
  }
  return worst;
}

function argmaxRows(values: ArrayLike<number>, row: number): number[] {
  const out: number[] = [];
  for (let start = 0; start < values.length; start += row) {
    let best = start;
    for (let i = start; i < start + row; i++) if (values[i]! > values[best]!) best = i;
    out.push(best - start);
  }
  return out;
}

/** A 28 x 28 digit drawn 10x larger (each pixel a 10 x 10 block), as the page's canvas holds it. */
function upscale(digit: readonly number[]): Float32Array {
  const big = new Float32Array(280 * 280);
  for (let y = 0; y < 280; y++)
    for (let x = 0; x < 280; x++) big[y * 280 + x] = digit[Math.floor(y / 10) * SIDE + Math.floor(x / 10)]!;
  return big;
}

describe('the shipped vim-mnist checkpoint', () => {
  it('is a small hustvl/Vim checkpoint for 28 x 28 gray digits, and expected.json covers every class', () => {
    expect(config).toMatchObject({ img_size: 28, channels: 1, num_classes: 10, bimamba_type: 'v2' });
    expect(B).toBe(10);
    expect([...expected.labels].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(expected.logits.length).toBe(B);
  });

  it("longseq's float64 reference reproduces the training script's features and logits", async () => {
    const checkpoint = await loadCheckpoint(nodeFileSource(FOLDER));
    const { features, logits } = vimRef(vimConfigFromJson(config), (n, s) => checkpoint.read(n, s), images);
    // float64 against float64: only the order of the sums differs
    expect(maxRelativeError(features, expected.features.flat(), config.embed_dim!)).toBeLessThan(1e-9);
    expect(maxRelativeError(logits, expected.logits.flat(), 10)).toBeLessThan(1e-9);
  });

  it('the stored logits predict the stored labels', () => {
    expect(argmaxRows(expected.logits.flat(), 10)).toEqual(expected.labels);
  });
});

describeEachBackend('VisionMamba on the shipped vim-mnist weights', (ctx) => {
  let model: VisionMamba;
  beforeAll(async () => {
    model = await VisionMamba.load(ctx.backend, FOLDER);
  });
  afterAll(() => model?.dispose());

  it('features and logits match the PyTorch float64 values; the classes are the labels', async () => {
    const features = await model.features(images);
    const logits = await model.classify(images);
    const f = await features.read();
    const l = await logits.read();
    features.dispose();
    logits.dispose();
    const fErr = maxRelativeError(f, expected.features.flat(), config.embed_dim!);
    const lErr = maxRelativeError(l, expected.logits.flat(), 10);
    expect(fErr, `features: max relative error ${fErr}`).toBeLessThan(REL_TOL);
    expect(lErr, `logits: max relative error ${lErr}`).toBeLessThan(REL_TOL);
    expect(argmaxRows(l, 10)).toEqual(expected.labels);
  });

  it("the page's canvas preprocessing keeps each digit's class", async () => {
    const batch = new Float32Array(B * SIDE * SIDE);
    expected.images.forEach((img, b) => {
      const x = mnistFromGray(upscale(img.flat(2)), 280, 280);
      expect(x).not.toBeNull();
      batch.set(x!, b * SIDE * SIDE);
    });
    const logits = await model.classify({ data: batch, shape: [B, 1, SIDE, SIDE] });
    const l = await logits.read();
    logits.dispose();
    expect(argmaxRows(l, 10)).toEqual(expected.labels);
  });
});
