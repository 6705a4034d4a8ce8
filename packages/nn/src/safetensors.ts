/**
 * The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes
 * of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}`, then the
 * tensor bytes, offsets relative to the end of the header. Parsed by hand; tensors are
 * converted to f32 when read (F32, F16, BF16, F64).
 */
import { DTypeError, ShapeError } from '@longseq/backend';
import { bf16BitsToNumber, f16BitsToNumber, numberToBf16Bits, numberToF16Bits } from './dtype';
import { MissingTensorError, SafetensorsFormatError } from './errors';

/** The stored element types this loader converts to f32. */
export const SAFETENSORS_DTYPES = ['F32', 'F16', 'BF16', 'F64'] as const;
export type SafetensorsDType = (typeof SAFETENSORS_DTYPES)[number];

const BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

export interface SafetensorsEntry {
  readonly name: string;
  /** As stored; `read()` converts to f32. */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Byte range in the data section. */
  readonly begin: number;
  readonly end: number;
}

/** A parsed safetensors file: the header, and the bytes converted on demand. */
export class SafetensorsFile {
  private constructor(
    /** Names the file in errors. */
    readonly file: string,
    readonly entries: ReadonlyMap<string, SafetensorsEntry>,
    readonly metadata: Readonly<Record<string, string>>,
    private readonly data: Uint8Array,
  ) {}

  /** Parses the header and checks every entry's offsets against the data (no conversion yet). */
  static parse(bytes: Uint8Array, file = 'model.safetensors'): SafetensorsFile {
    if (bytes.length < 8) throw new SafetensorsFormatError(file, `only ${bytes.length} bytes`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const headerLength = Number(view.getBigUint64(0, true));
    if (headerLength > bytes.length - 8) {
      throw new SafetensorsFormatError(
        file,
        `header length ${headerLength} exceeds the file (${bytes.length} bytes)`,
      );
    }
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
    } catch (err) {
      throw new SafetensorsFormatError(
        file,
        `header is not JSON (${err instanceof Error ? err.message : err})`,
      );
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) {
      throw new SafetensorsFormatError(file, 'header is not a JSON object');
    }
    const data = bytes.subarray(8 + headerLength);
    const entries = new Map<string, SafetensorsEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        metadata = (value ?? {}) as Record<string, string>;
        continue;
      }
      const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const shape = v?.shape;
      const offsets = v?.data_offsets;
      if (
        typeof v?.dtype !== 'string' ||
        !Array.isArray(shape) ||
        !shape.every((d) => Number.isInteger(d) && d >= 0) ||
        !Array.isArray(offsets) ||
        offsets.length !== 2 ||
        !offsets.every((o) => Number.isInteger(o) && o >= 0)
      ) {
        throw new SafetensorsFormatError(file, `entry ${name} lacks a dtype, shape or data_offsets`);
      }
      const [begin, end] = offsets as [number, number];
      if (begin > end || end > data.length) {
        throw new SafetensorsFormatError(
          file,
          `${name}: data_offsets [${begin}, ${end}] outside the ${data.length} data bytes`,
        );
      }
      const bytesPer = BYTES[v.dtype as SafetensorsDType];
      const count = (shape as number[]).reduce((a, b) => a * b, 1);
      if (bytesPer !== undefined && end - begin !== count * bytesPer) {
        throw new ShapeError(
          name,
          `${end - begin} bytes / ${bytesPer} = ${(end - begin) / bytesPer} elements (its data_offsets)`,
          shape as number[],
        );
      }
      entries.set(name, { name, dtype: v.dtype, shape: shape as number[], begin, end });
    }
    return new SafetensorsFile(file, entries, metadata, data);
  }

  get names(): string[] {
    return [...this.entries.keys()];
  }

  /** The tensor's values as f32 (a fresh array). Unknown dtypes throw DTypeError naming the tensor. */
  read(name: string): Float32Array {
    const entry = this.entries.get(name);
    if (!entry) throw new MissingTensorError(name, this.file);
    const raw = this.data.subarray(entry.begin, entry.end);
    const count = entry.shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(count);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    switch (entry.dtype as SafetensorsDType) {
      case 'F32':
        for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
        break;
      case 'F64':
        for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true);
        break;
      case 'F16':
        for (let i = 0; i < count; i++) out[i] = f16BitsToNumber(view.getUint16(i * 2, true));
        break;
      case 'BF16':
        for (let i = 0; i < count; i++) out[i] = bf16BitsToNumber(view.getUint16(i * 2, true));
        break;
      default:
        throw new DTypeError(name, SAFETENSORS_DTYPES, entry.dtype);
    }
    return out;
  }
}

export interface SafetensorsTensorInput {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
  /** Stored type; default 'F32'. Values are rounded to nearest even for F16 and BF16. */
  readonly dtype?: SafetensorsDType;
}

/** Writes a safetensors file (tests, tools, fixtures): tensors in insertion order, 8-byte aligned header. */
export function encodeSafetensors(
  tensors: Readonly<Record<string, SafetensorsTensorInput>>,
  metadata: Readonly<Record<string, string>> = { format: 'pt' },
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const parts: { begin: number; dtype: SafetensorsDType; data: ArrayLike<number> }[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = t.dtype ?? 'F32';
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== count)
      throw new ShapeError(name, `${t.data.length} elements (its data)`, [...t.shape]);
    const size = count * BYTES[dtype];
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    parts.push({ begin: offset, dtype, data: t.data });
    offset += size;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data section starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  const base = 8 + headerBytes.length;
  for (const p of parts) {
    for (let i = 0; i < p.data.length; i++) {
      const at = base + p.begin + i * BYTES[p.dtype];
      const v = p.data[i]!;
      if (p.dtype === 'F32') view.setFloat32(at, v, true);
      else if (p.dtype === 'F64') view.setFloat64(at, v, true);
      else if (p.dtype === 'F16') view.setUint16(at, numberToF16Bits(v), true);
      else view.setUint16(at, numberToBf16Bits(v), true);
    }
  }
  return out;
}
