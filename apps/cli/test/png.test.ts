import { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { PngFormatError, decodePng, encodePng } from '../src/png';

/** A PNG with the given IHDR fields and raw (already filtered) scanlines. */
function png(
  width: number,
  height: number,
  depth: number,
  color: number,
  raw: number[],
  interlace = 0,
): Uint8Array {
  const base = encodePng({ width, height, channels: 1, data: new Uint8Array(width * height) });
  // Rebuild with our IHDR fields and IDAT (CRCs are not checked by the decoder).
  const chunk = (type: string, body: Uint8Array) => {
    const out = new Uint8Array(12 + body.length);
    const v = new DataView(out.buffer);
    v.setUint32(0, body.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(body, 8);
    return out;
  };
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, width);
  new DataView(ihdr.buffer).setUint32(4, height);
  ihdr.set([depth, color, 0, 0, interlace], 8);
  return Buffer.concat([
    base.subarray(0, 8),
    chunk('IHDR', ihdr),
    chunk('IDAT', new Uint8Array(deflateSync(Uint8Array.from(raw)))),
    chunk('IEND', new Uint8Array()),
  ]);
}

describe('decodePng', () => {
  it('round-trips gray, gray + alpha, RGB and RGBA', () => {
    for (const channels of [1, 2, 3, 4] as const) {
      const data = Uint8Array.from({ length: 5 * 3 * channels }, (_, i) => (i * 53) % 256);
      const decoded = decodePng(encodePng({ width: 5, height: 3, channels, data }));
      expect(decoded).toEqual({ width: 5, height: 3, channels, data });
    }
  });

  it('undoes the Sub, Up, Average and Paeth filters (RGB, 2 x 5)', () => {
    // Rows of 2 RGB pixels; the expected pixels and each row's filtered bytes worked out by hand.
    const pixels = [
      [10, 20, 30, 40, 50, 60],
      [15, 25, 35, 45, 55, 65], // Sub: [15,25,35, 45-15, 55-25, 65-35]
      [20, 20, 20, 250, 0, 5], // Up
      [1, 2, 3, 4, 5, 6], // Average
      [9, 9, 9, 200, 100, 50], // Paeth
    ];
    const sub = [15, 25, 35, 30, 30, 30];
    const up = pixels[2]!.map((v, i) => (v - pixels[1]![i]! + 256) % 256);
    const avg = pixels[3]!.map((v, i) => {
      const a = i >= 3 ? pixels[3]![i - 3]! : 0;
      return (v - ((a + pixels[2]![i]!) >> 1) + 256) % 256;
    });
    const paeth = pixels[4]!.map((v, i) => {
      const a = i >= 3 ? pixels[4]![i - 3]! : 0;
      const b = pixels[3]![i]!;
      const c = i >= 3 ? pixels[3]![i - 3]! : 0;
      const p = a + b - c;
      const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
      const pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      return (v - pred + 256) % 256;
    });
    const raw = [0, ...pixels[0]!, 1, ...sub, 2, ...up, 3, ...avg, 4, ...paeth];
    const decoded = decodePng(png(2, 5, 8, 2, raw));
    expect(Array.from(decoded.data)).toEqual(pixels.flat());
  });

  it('refuses what it does not read with a PngFormatError naming it', () => {
    const bad = (bytes: Uint8Array, message: RegExp) => {
      expect(() => decodePng(bytes, 'x.png')).toThrow(PngFormatError);
      expect(() => decodePng(bytes, 'x.png')).toThrow(message);
    };
    bad(new TextEncoder().encode('GIF89a'), /x\.png: not a PNG file/);
    bad(png(1, 1, 16, 0, [0, 0, 0]), /bit depth 16/);
    bad(png(1, 1, 8, 3, [0, 0]), /palette/);
    bad(png(1, 1, 8, 0, [0, 0], 1), /interlaced/);
    bad(png(2, 1, 8, 0, [7, 1, 2]), /filter type 7/);
    bad(png(4, 4, 8, 0, [0, 1]), /too short/);
  });
});
