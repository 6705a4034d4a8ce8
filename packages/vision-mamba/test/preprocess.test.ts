import { describe, expect, it } from 'vitest';
import { preprocessImage, preprocessImages } from '../src';

const close = (a: ArrayLike<number>, b: readonly number[]) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < b.length; i++) expect(a[i]).toBeCloseTo(b[i]!, 6);
};

describe('preprocessImage', () => {
  it('bilinear upscaling uses half-pixel centres (PyTorch align_corners=False): [0, 1] -> [0, .25, .75, 1]', () => {
    // A 2 x 2 gray float image, columns 0 and 1.
    const out = preprocessImage(
      { data: new Float32Array([0, 1, 0, 1]), width: 2, height: 2, channels: 1 },
      { size: 4, channels: 1 },
    );
    close(out, [0, 0.25, 0.75, 1, 0, 0.25, 0.75, 1, 0, 0.25, 0.75, 1, 0, 0.25, 0.75, 1]);
  });

  it('downscaling 4 -> 2 averages neighbouring pixels (8-bit input scaled to [0, 1])', () => {
    const row = [0, 255, 51, 102];
    const out = preprocessImage(
      { data: Uint8Array.from([...row, ...row, ...row, ...row]), width: 4, height: 4, channels: 1 },
      { size: 2, channels: 1 },
    );
    close(out, [0.5, 0.3, 0.5, 0.3]);
  });

  it('RGBA (ImageData-like) to gray by luminance, alpha ignored by default or composited over white', () => {
    // 1 x 2 pixels: pure red opaque, pure green half transparent.
    const image = { data: new Uint8ClampedArray([255, 0, 0, 255, 0, 255, 0, 0]), width: 2, height: 1 };
    close(preprocessImage(image, { size: 2, channels: 1 }).subarray(0, 2), [0.299, 0.587]);
    close(preprocessImage(image, { size: 2, channels: 1, background: 'white' }).subarray(0, 2), [0.299, 1]);
  });

  it('gray to 3 channels replicates it; RGB stays planar [C, H, W]; mean / std per channel', () => {
    const gray = preprocessImage({ data: Uint8Array.from([0, 255]), width: 2, height: 1 }, { size: 2 });
    expect(gray.length).toBe(12);
    close([gray[0]!, gray[1]!, gray[4]!, gray[5]!, gray[8]!, gray[9]!], [0, 1, 0, 1, 0, 1]);
    const rgb = preprocessImage(
      { data: Uint8Array.from([255, 0, 51, 255, 0, 51]), width: 2, height: 1 },
      { size: 2, mean: [0.5, 0, 0.1], std: [0.5, 1, 0.2], invert: false },
    );
    // Top row of each channel: R (1 - .5) / .5 = 1, G 0, B (.2 - .1) / .2 = .5
    close([rgb[0]!, rgb[1]!, rgb[4]!, rgb[5]!, rgb[8]!, rgb[9]!], [1, 1, 0, 0, 0.5, 0.5]);
  });

  it('invert gives 1 - value (white strokes on black from a black-on-white drawing)', () => {
    close(
      preprocessImage(
        { data: Uint8Array.from([0, 255]), width: 2, height: 1 },
        { size: 2, channels: 1, invert: true },
      ).subarray(0, 2),
      [1, 0],
    );
  });

  it('preprocessImages stacks a batch [B, C, size, size]', () => {
    const img = { data: Uint8Array.from({ length: 5 * 7 * 3 }, (_, i) => i % 256), width: 5, height: 7 };
    const batch = preprocessImages([img, img, img], { size: 6 });
    expect(batch.length).toBe(3 * 3 * 36);
    expect(Array.from(batch.subarray(108, 216))).toEqual(Array.from(preprocessImage(img, { size: 6 })));
  });

  it('bad input: typed errors naming the argument', () => {
    expect(() => preprocessImage({ data: new Uint8Array(7), width: 2, height: 2 }, { size: 4 })).toThrow(
      expect.objectContaining({ name: 'ShapeError', argument: 'image.data' }),
    );
    expect(() =>
      preprocessImage({ data: new Uint8Array(12), width: 2, height: 2, channels: 4 }, { size: 4 }),
    ).toThrow(expect.objectContaining({ name: 'ShapeError', argument: 'image.data' }));
    expect(() => preprocessImage({ data: new Uint8Array(4), width: 0, height: 2 }, { size: 4 })).toThrow(
      expect.objectContaining({ argument: 'image.width' }),
    );
    expect(() =>
      preprocessImage({ data: new Uint8Array(4), width: 2, height: 2 }, { size: 4, channels: 2 }),
    ).toThrow(expect.objectContaining({ argument: 'options.channels' }));
    expect(() =>
      preprocessImage({ data: new Uint8Array(4), width: 2, height: 2 }, { size: 4, mean: [0, 0] }),
    ).toThrow(expect.objectContaining({ argument: 'options.mean' }));
    expect(() => preprocessImages([], { size: 4 })).toThrow(expect.objectContaining({ argument: 'images' }));
  });
});
