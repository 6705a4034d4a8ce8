/** Element types a tensor can hold. `f32` is the compute type; `i32`/`u32` hold ids, lengths and block tables. */
export type DType = 'f32' | 'i32' | 'u32';

export type TypedArray = Float32Array | Int32Array | Uint32Array;

export type TypedArrayFor<D extends DType> = D extends 'f32'
  ? Float32Array
  : D extends 'i32'
    ? Int32Array
    : Uint32Array;

export const DTYPES: readonly DType[] = ['f32', 'i32', 'u32'];

export function isDType(value: unknown): value is DType {
  return value === 'f32' || value === 'i32' || value === 'u32';
}

/** Every dtype is four bytes wide, which keeps WGSL bindings and gpu.js floats one-to-one. */
export function bytesPerElement(_dtype: DType): number {
  return 4;
}

export function allocTypedArray(dtype: DType, length: number): TypedArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(length);
    case 'i32':
      return new Int32Array(length);
    case 'u32':
      return new Uint32Array(length);
  }
}

/** Copies (and converts) any array-like of numbers into the typed array of `dtype`. */
export function toTypedArray(data: ArrayLike<number>, dtype: DType): TypedArray {
  if (dtype === 'f32' && data instanceof Float32Array) return data;
  if (dtype === 'i32' && data instanceof Int32Array) return data;
  if (dtype === 'u32' && data instanceof Uint32Array) return data;
  const out = allocTypedArray(dtype, data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i]!;
  return out;
}

/** The dtype a typed array naturally holds, or undefined for plain arrays and Float64Array. */
export function dtypeOf(data: ArrayLike<number>): DType | undefined {
  if (data instanceof Float32Array) return 'f32';
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof Uint32Array) return 'u32';
  return undefined;
}
