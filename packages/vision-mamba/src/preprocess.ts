/**
 * Images to model input, on the host: raw pixels (8-bit or float, gray, gray + alpha, RGB or
 * RGBA, row-major, channels interleaved) or a browser `ImageData` become a planar float
 * image `[C, size, size]`: resized bilinearly (half-pixel centres, as PyTorch's
 * `interpolate(mode='bilinear', align_corners=False)` without antialiasing), converted to
 * the model's channel count, scaled to [0, 1] (8-bit input) and normalized by mean / std.
 */
import { ArgumentError, ShapeError } from '@longseq/backend';

/** Raw pixels, row-major with interleaved channels (`channels` per pixel; inferred from the length when absent). */
export interface RawImage {
  readonly data: Uint8Array | Uint8ClampedArray | Float32Array | ArrayLike<number>;
  readonly width: number;
  readonly height: number;
  /** 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA. ImageData is always 4. */
  readonly channels?: 1 | 2 | 3 | 4;
}

export interface PreprocessOptions {
  /** Output side (the model's img_size). */
  readonly size: number;
  /** Output channels: 1 (gray: 0.299 R + 0.587 G + 0.114 B) or 3 (gray replicated); default 3. */
  readonly channels?: number;
  /** Per channel (or one for all), subtracted after scaling to [0, 1]; default 0. */
  readonly mean?: number | readonly number[];
  /** Per channel (or one for all), divided by; default 1. */
  readonly std?: number | readonly number[];
  /**
   * Alpha: 'ignore' (default) drops it; 'white' / 'black' composites over that background
   * first (a canvas drawing on a transparent background).
   */
  readonly background?: 'ignore' | 'white' | 'black';
  /** 1 - value after scaling (white digits on black from black-on-white drawings). Default false. */
  readonly invert?: boolean;
}

function perChannel(
  v: number | readonly number[] | undefined,
  fallback: number,
  channels: number,
  name: string,
) {
  if (v === undefined) return new Array<number>(channels).fill(fallback);
  const list = typeof v === 'number' ? new Array<number>(channels).fill(v) : [...v];
  if (list.length !== channels || list.some((x) => typeof x !== 'number' || !Number.isFinite(x)))
    throw new ArgumentError(name, `a finite number or ${channels} of them`, v);
  return list;
}

/** One image to a planar `[C, size, size]` Float32Array. */
export function preprocessImage(image: RawImage, options: PreprocessOptions): Float32Array {
  if (image === null || typeof image !== 'object' || image.data === undefined)
    throw new ArgumentError(
      'image',
      'an object with data, width and height (raw pixels or ImageData)',
      image,
    );
  const { width, height } = image;
  if (!Number.isInteger(width) || width < 1) throw new ArgumentError('image.width', 'an integer >= 1', width);
  if (!Number.isInteger(height) || height < 1)
    throw new ArgumentError('image.height', 'an integer >= 1', height);
  const pixels = width * height;
  const inChannels = image.channels ?? image.data.length / pixels;
  if (![1, 2, 3, 4].includes(inChannels))
    throw new ShapeError('image.data', `${pixels} x 1, 2, 3 or 4 values (width x height x channels)`, [
      image.data.length,
    ]);
  if (image.data.length !== pixels * inChannels)
    throw new ShapeError(
      'image.data',
      `${pixels * inChannels} values (${width} x ${height} x ${inChannels})`,
      [image.data.length],
    );
  const size = options.size;
  if (!Number.isInteger(size) || size < 1) throw new ArgumentError('options.size', 'an integer >= 1', size);
  const outChannels = options.channels ?? 3;
  if (outChannels !== 1 && outChannels !== 3)
    throw new ArgumentError('options.channels', '1 or 3', options.channels);
  const mean = perChannel(options.mean, 0, outChannels, 'options.mean');
  const std = perChannel(options.std, 1, outChannels, 'options.std');
  if (std.some((s) => s === 0)) throw new ArgumentError('options.std', 'non-zero values', options.std);
  const background = options.background ?? 'ignore';
  if (!['ignore', 'white', 'black'].includes(background))
    throw new ArgumentError('options.background', "'ignore', 'white' or 'black'", background);
  // 8-bit input (typed or plain integers) scales by 1/255; float input is taken as [0, 1].
  const byteScale = image.data instanceof Float32Array || image.data instanceof Float64Array ? 1 : 1 / 255;
  const hasAlpha = inChannels === 2 || inChannels === 4;
  const colors = hasAlpha ? inChannels - 1 : inChannels;
  const bg = background === 'white' ? 1 : 0;

  // The source in [0, 1], planar, in the output's channels.
  const src = new Float64Array(outChannels * pixels);
  for (let i = 0; i < pixels; i++) {
    const at = (c: number) => image.data[i * inChannels + c]! * byteScale;
    let rgb = colors === 1 ? [at(0), at(0), at(0)] : [at(0), at(1), at(2)];
    if (hasAlpha && background !== 'ignore') {
      const a = at(inChannels - 1);
      rgb = rgb.map((v) => v * a + bg * (1 - a));
    }
    if (outChannels === 1)
      src[i] = colors === 1 ? rgb[0]! : 0.299 * rgb[0]! + 0.587 * rgb[1]! + 0.114 * rgb[2]!;
    else for (let c = 0; c < 3; c++) src[c * pixels + i] = rgb[c]!;
  }

  const out = new Float32Array(outChannels * size * size);
  const sy = height / size;
  const sx = width / size;
  for (let y = 0; y < size; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), height - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, height - 1);
    const wy = fy - y0;
    for (let x = 0; x < size; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), width - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, width - 1);
      const wx = fx - x0;
      for (let c = 0; c < outChannels; c++) {
        const plane = c * pixels;
        const top = src[plane + y0 * width + x0]! * (1 - wx) + src[plane + y0 * width + x1]! * wx;
        const bottom = src[plane + y1 * width + x0]! * (1 - wx) + src[plane + y1 * width + x1]! * wx;
        let v = top * (1 - wy) + bottom * wy;
        if (options.invert) v = 1 - v;
        out[(c * size + y) * size + x] = (v - mean[c]!) / std[c]!;
      }
    }
  }
  return out;
}

/** Several images to one batch `[B, C, size, size]` (a Float32Array the model's classify takes). */
export function preprocessImages(images: readonly RawImage[], options: PreprocessOptions): Float32Array {
  if (!Array.isArray(images) || images.length === 0)
    throw new ArgumentError('images', 'a non-empty array of images', images);
  const parts = images.map((img) => preprocessImage(img, options));
  const out = new Float32Array(parts.length * parts[0]!.length);
  parts.forEach((p, i) => {
    out.set(p, i * p.length);
  });
  return out;
}
