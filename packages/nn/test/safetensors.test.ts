import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DTypeError, ShapeError } from '@longseq/backend';
import { freshSeed, randomFloats, rng } from '@longseq/test-harness';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  MissingFileError,
  MissingTensorError,
  SafetensorsFile,
  SafetensorsFormatError,
  bf16BitsToNumber,
  configArchitectures,
  configBool,
  configInt,
  configNumber,
  encodeSafetensors,
  f16BitsToNumber,
  fetchFileSource,
  loadCheckpoint,
  loadConfig,
  memoryFileSource,
  nodeFileSource,
  numberToBf16Bits,
  numberToF16Bits,
} from '../src';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'longseq-nn-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('half-precision conversions', () => {
  it('every f16 bit pattern decodes and re-encodes to itself (NaNs stay NaN)', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = f16BitsToNumber(h);
      if (Number.isNaN(v)) {
        expect(Number.isNaN(f16BitsToNumber(numberToF16Bits(v)))).toBe(true);
        continue;
      }
      expect(numberToF16Bits(v)).toBe(h);
    }
  });

  it('f16 and bf16 spot values: one, the largest, the smallest subnormal, infinities', () => {
    expect(f16BitsToNumber(0x3c00)).toBe(1);
    expect(f16BitsToNumber(0x7bff)).toBe(65504);
    expect(f16BitsToNumber(0x0001)).toBe(2 ** -24);
    expect(f16BitsToNumber(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
    expect(numberToF16Bits(1e6)).toBe(0x7c00);
    expect(bf16BitsToNumber(0x3f80)).toBe(1);
    expect(bf16BitsToNumber(0xc040)).toBe(-3);
    // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1)
    expect(numberToBf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(numberToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
  });

  it('rounding to f16 picks the nearest representable value', () => {
    const random = rng(freshSeed());
    for (const v of randomFloats(2000, random, -65000, 65000)) {
      const h = numberToF16Bits(v);
      const got = f16BitsToNumber(h);
      const err = Math.abs(got - v);
      // neighbours one ulp either side are no closer
      for (const n of [h - 1, h + 1]) {
        const other = f16BitsToNumber(n & 0xffff);
        if (Number.isFinite(other) && Math.sign(other) === Math.sign(got))
          expect(Math.abs(other - v)).toBeGreaterThanOrEqual(err);
      }
    }
  });
});

describe('safetensors', () => {
  const random = rng(freshSeed());
  const a = randomFloats(3 * 5, random, -4, 4);
  const b = randomFloats(7, random, -4, 4);

  for (const dtype of ['F32', 'F16', 'BF16', 'F64'] as const) {
    it(`${dtype} tensors round-trip through a file on disk`, async () => {
      const dir = tempDir();
      const bytes = encodeSafetensors({
        'layer.a': { shape: [3, 5], data: a, dtype },
        'layer.b': { shape: [7], data: b, dtype },
      });
      writeFileSync(join(dir, 'model.safetensors'), bytes);
      const ckpt = await loadCheckpoint(nodeFileSource(dir));
      expect(ckpt.names.sort()).toEqual(['layer.a', 'layer.b']);
      expect(ckpt.info('layer.a')).toMatchObject({ dtype, shape: [3, 5] });
      const decode =
        dtype === 'F16'
          ? (v: number) => f16BitsToNumber(numberToF16Bits(v))
          : dtype === 'BF16'
            ? (v: number) => bf16BitsToNumber(numberToBf16Bits(v))
            : (v: number) => v;
      expect(Array.from(ckpt.read('layer.a', [3, 5]))).toEqual(Array.from(a, decode));
      expect(Array.from(ckpt.read('layer.b'))).toEqual(Array.from(b, decode));
    });
  }

  it('a sharded checkpoint (model.safetensors.index.json) reads each tensor from its shard', async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, 'model-00001-of-00002.safetensors'),
      encodeSafetensors({ 'x.a': { shape: [3, 5], data: a } }),
    );
    writeFileSync(
      join(dir, 'model-00002-of-00002.safetensors'),
      encodeSafetensors({ 'x.b': { shape: [7], data: b, dtype: 'BF16' } }),
    );
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({
        metadata: { total_size: 74 },
        weight_map: { 'x.a': 'model-00001-of-00002.safetensors', 'x.b': 'model-00002-of-00002.safetensors' },
      }),
    );
    const ckpt = await loadCheckpoint(nodeFileSource(dir));
    expect(ckpt.info('x.a')?.file).toBe('model-00001-of-00002.safetensors');
    expect(ckpt.info('x.b')?.file).toBe('model-00002-of-00002.safetensors');
    expect(Array.from(ckpt.read('x.a'))).toEqual(Array.from(a));
    expect(Array.from(ckpt.read('x.b'))).toEqual(Array.from(b, (v) => bf16BitsToNumber(numberToBf16Bits(v))));
  });

  it('an index naming a missing shard or a tensor its shard lacks throws, naming it', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'one.safetensors'), encodeSafetensors({ 'x.a': { shape: [3, 5], data: a } }));
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { 'x.a': 'one.safetensors', 'x.c': 'two.safetensors' } }),
    );
    await expect(loadCheckpoint(nodeFileSource(dir))).rejects.toMatchObject({
      name: 'MissingFileError',
      file: 'two.safetensors',
    });
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { 'x.a': 'one.safetensors', 'x.c': 'one.safetensors' } }),
    );
    await expect(loadCheckpoint(nodeFileSource(dir))).rejects.toMatchObject({
      name: 'MissingTensorError',
      tensor: 'x.c',
    });
    writeFileSync(join(dir, 'model.safetensors.index.json'), '{"weight_map": 3}');
    await expect(loadCheckpoint(nodeFileSource(dir))).rejects.toThrow(SafetensorsFormatError);
  });

  it('missing tensors, wrong shapes, unknown dtypes and broken headers are typed errors naming the tensor', async () => {
    const good = encodeSafetensors({ 'w.a': { shape: [3, 5], data: a } });
    const ckpt = await loadCheckpoint(memoryFileSource({ 'model.safetensors': good }));
    expect(() => ckpt.read('w.missing')).toThrow(MissingTensorError);
    expect(() => ckpt.read('w.missing')).toThrow(/w\.missing/);
    expect(() => ckpt.read('w.a', [5, 3])).toThrow(ShapeError);
    expect(() => ckpt.read('w.a', [5, 3])).toThrow(/w\.a: expected shape \[5, 3\], got \[3, 5\]/);

    // An I8 tensor: parsed (its bytes are in range) but not convertible.
    const header = JSON.stringify({ 'w.int': { dtype: 'I8', shape: [4], data_offsets: [0, 4] } });
    const odd = new Uint8Array(8 + header.length + 4);
    new DataView(odd.buffer).setBigUint64(0, BigInt(header.length), true);
    odd.set(new TextEncoder().encode(header), 8);
    const file = SafetensorsFile.parse(odd);
    expect(() => file.read('w.int')).toThrow(DTypeError);
    expect(() => file.read('w.int')).toThrow(/w\.int: expected dtype F32 or F16 or BF16 or F64, got I8/);

    // offsets past the end, a byte count that disagrees with the shape, a truncated file
    const past = JSON.stringify({ 'w.b': { dtype: 'F32', shape: [4], data_offsets: [0, 16] } });
    const short = new Uint8Array(8 + past.length + 8);
    new DataView(short.buffer).setBigUint64(0, BigInt(past.length), true);
    short.set(new TextEncoder().encode(past), 8);
    expect(() => SafetensorsFile.parse(short)).toThrow(SafetensorsFormatError);
    const mismatch = JSON.stringify({ 'w.c': { dtype: 'F32', shape: [3], data_offsets: [0, 8] } });
    const mm = new Uint8Array(8 + mismatch.length + 8);
    new DataView(mm.buffer).setBigUint64(0, BigInt(mismatch.length), true);
    mm.set(new TextEncoder().encode(mismatch), 8);
    expect(() => SafetensorsFile.parse(mm)).toThrow(/w\.c/);
    expect(() => SafetensorsFile.parse(good.subarray(0, 20))).toThrow(SafetensorsFormatError);
    await expect(loadCheckpoint(memoryFileSource({}))).rejects.toThrow(MissingFileError);
  });

  it('fetchFileSource reads through fetch and reports HTTP errors', async () => {
    const files: Record<string, Uint8Array> = {
      'https://example.test/m/model.safetensors': encodeSafetensors({ t: { shape: [2], data: [1.5, -2] } }),
    };
    const fakeFetch = async (url: string) => ({
      ok: url in files,
      status: url in files ? 200 : 404,
      arrayBuffer: async () => files[url]!.slice().buffer,
    });
    const source = fetchFileSource('https://example.test/m', { fetch: fakeFetch });
    const ckpt = await loadCheckpoint(source);
    expect(Array.from(ckpt.read('t'))).toEqual([1.5, -2]);
    await expect(source.read('config.json')).rejects.toThrow(/HTTP 404/);
  });
});

describe('config.json', () => {
  it('reads fields by their aliases and names bad ones', async () => {
    const source = memoryFileSource({
      'config.json': JSON.stringify({
        hidden_size: 64,
        n_layer: 2.5,
        use_bias: 'no',
        architectures: ['MambaForCausalLM'],
        eps: -1,
      }),
    });
    const config = await loadConfig(source);
    expect(configInt(config, ['d_model', 'hidden_size'])).toBe(64);
    expect(() => configInt(config, ['n_layer', 'num_hidden_layers'])).toThrow(ConfigError);
    expect(() => configInt(config, ['n_layer'])).toThrow(
      /config\.json: n_layer: expected an integer >= 1, got 2\.5/,
    );
    expect(() => configInt(config, ['vocab_size'])).toThrow(/vocab_size/);
    expect(configInt(config, ['vocab_size'], 7)).toBe(7);
    expect(() => configBool(config, ['use_bias'], false)).toThrow(/use_bias/);
    expect(configBool(config, ['tie_word_embeddings'], true)).toBe(true);
    expect(() => configNumber(config, ['eps'])).toThrow(/eps/);
    expect(configArchitectures(config)).toEqual(['MambaForCausalLM']);
    await expect(loadConfig(memoryFileSource({ 'config.json': '{oops' }))).rejects.toThrow(ConfigError);
    await expect(loadConfig(memoryFileSource({}))).rejects.toThrow(MissingFileError);
  });
});
