/**
 * A small PNG decoder for `longseq run --image`: 8-bit grayscale, grayscale + alpha, RGB and
 * RGBA, non-interlaced (what image tools write by default), through node:zlib. Anything else
 * (palette, 16-bit, Adam7, a broken file) is a PngFormatError naming what it found.
 */
import { deflateSync, inflateSync } from 'node:zlib';
import { UnsupportedFormatError } from './errors';

/** The file is not a PNG this decoder reads. Exit code 2, like any unsupported input. */
export class PngFormatError extends UnsupportedFormatError {}

export interface DecodedPng {
  readonly width: number;
  readonly height: number;
  /** 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA. */
  readonly channels: 1 | 2 | 3 | 4;
  /** Row-major, channels interleaved. */
  readonly data: Uint8Array;
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const CHANNELS: Record<number, 1 | 2 | 3 | 4> = { 0: 1, 4: 2, 2: 3, 6: 4 };
const COLOR_NAMES: Record<number, string> = { 3: 'palette (color type 3)' };

export function decodePng(bytes: Uint8Array, file = 'image'): DecodedPng {
  const fail = (problem: string): never => {
    throw new PngFormatError(
      `${file}: ${problem}; supported: 8-bit grayscale, grayscale + alpha, RGB or RGBA PNG, not interlaced`,
    );
  };
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) fail('not a PNG file (bad signature)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 8;
  let header: { width: number; height: number; depth: number; color: number; interlace: number } | undefined;
  const idat: Uint8Array[] = [];
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    const start = offset + 8;
    if (start + length + 4 > bytes.length) fail(`chunk ${type} runs past the end of the file`);
    const body = bytes.subarray(start, start + length);
    if (type === 'IHDR') {
      if (length < 13) fail('IHDR chunk too short');
      const d = new DataView(body.buffer, body.byteOffset, body.byteLength);
      header = {
        width: d.getUint32(0),
        height: d.getUint32(4),
        depth: body[8]!,
        color: body[9]!,
        interlace: body[12]!,
      };
    } else if (type === 'IDAT') idat.push(body);
    else if (type === 'IEND') break;
    offset = start + length + 4; // + CRC
  }
  if (!header) return fail('no IHDR chunk');
  const { width, height, depth, color, interlace } = header;
  const channels = CHANNELS[color];
  if (channels === undefined) fail(`color type ${COLOR_NAMES[color] ?? color}`);
  if (depth !== 8) fail(`bit depth ${depth}`);
  if (interlace !== 0) fail('interlaced (Adam7)');
  if (width < 1 || height < 1) fail(`size ${width} x ${height}`);
  if (idat.length === 0) fail('no IDAT chunk');
  let raw: Uint8Array;
  try {
    raw = new Uint8Array(inflateSync(Buffer.concat(idat)));
  } catch (err) {
    return fail(`image data does not inflate (${err instanceof Error ? err.message : err})`);
  }
  const bpp = channels!;
  const stride = width * bpp;
  if (raw.length < height * (stride + 1))
    fail(`image data too short: ${raw.length} bytes for ${width} x ${height}`);
  const data = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = data.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? data.subarray((y - 1) * stride, y * stride) : undefined;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? out[x - bpp]! : 0;
      const b = prev ? prev[x]! : 0;
      const c = prev && x >= bpp ? prev[x - bpp]! : 0;
      let v: number;
      switch (filter) {
        case 0:
          v = line[x]!;
          break;
        case 1:
          v = line[x]! + a;
          break;
        case 2:
          v = line[x]! + b;
          break;
        case 3:
          v = line[x]! + ((a + b) >> 1);
          break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          v = line[x]! + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default:
          return fail(`row ${y} has filter type ${filter}`);
      }
      out[x] = v & 0xff;
    }
  }
  return { width, height, channels: channels!, data };
}

/** Encodes 8-bit pixels as a PNG (filter 0 rows; for tests and for writing example images). */
export function encodePng(image: DecodedPng): Uint8Array {
  const { width, height, channels, data } = image;
  const color = { 1: 0, 2: 4, 3: 2, 4: 6 }[channels];
  const raw = new Uint8Array(height * (width * channels + 1));
  for (let y = 0; y < height; y++)
    raw.set(data.subarray(y * width * channels, (y + 1) * width * channels), y * (width * channels + 1) + 1);
  const chunk = (type: string, body: Uint8Array) => {
    const out = new Uint8Array(12 + body.length);
    const v = new DataView(out.buffer);
    v.setUint32(0, body.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(body, 8);
    v.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
    return out;
  };
  const ihdr = new Uint8Array(13);
  const h = new DataView(ihdr.buffer);
  h.setUint32(0, width);
  h.setUint32(4, height);
  ihdr.set([8, color, 0, 0, 0], 8);
  return Buffer.concat([
    Uint8Array.from(SIGNATURE),
    chunk('IHDR', ihdr),
    chunk('IDAT', new Uint8Array(deflateSync(raw))),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** PNG's chunk CRC (CRC-32, as zlib's). */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
