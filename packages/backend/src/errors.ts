/**
 * Typed errors. Every op validates its arguments before any GPU work and throws one of these,
 * naming the argument and what was expected, so a caller can `instanceof` or switch on `code`.
 */
export type LongseqErrorCode =
  | 'SHAPE'
  | 'DTYPE'
  | 'DEVICE_LIMIT'
  | 'DISPOSED_TENSOR'
  | 'BACKEND_UNAVAILABLE'
  | 'BACKEND_MISMATCH'
  | 'DEVICE_LOST'
  | 'KERNEL_NOT_FOUND'
  | 'KERNEL_REGISTERED'
  | 'INVALID_ARGUMENT'
  | 'VALIDATION';

export class LongseqError extends Error {
  readonly code: LongseqErrorCode;
  constructor(code: LongseqErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A tensor argument has the wrong rank or extent. */
export class ShapeError extends LongseqError {
  constructor(
    readonly argument: string,
    readonly expected: string,
    readonly actual: readonly number[] | string,
  ) {
    const got = typeof actual === 'string' ? actual : `[${actual.join(', ')}]`;
    super('SHAPE', `${argument}: expected shape ${expected}, got ${got}`);
  }
}

/** A tensor argument has the wrong element type. */
export class DTypeError extends LongseqError {
  constructor(
    readonly argument: string,
    readonly expected: readonly string[],
    readonly actual: string,
  ) {
    super('DTYPE', `${argument}: expected dtype ${expected.join(' or ')}, got ${actual}`);
  }
}

/** A size exceeds what the device (or backend) can do. */
export class DeviceLimitError extends LongseqError {
  constructor(
    readonly argument: string,
    readonly limit: string,
    readonly value: number,
    readonly max: number,
  ) {
    super('DEVICE_LIMIT', `${argument}: ${value} exceeds the device limit ${limit} = ${max}`);
  }
}

/** A tensor was used after `dispose()`. */
export class DisposedTensorError extends LongseqError {
  constructor(
    readonly argument: string,
    readonly tensorId: number,
  ) {
    super('DISPOSED_TENSOR', `${argument}: tensor #${tensorId} has been disposed`);
  }
}

/** A backend (or one of its modes) cannot run here: no adapter, an unknown name, a missing package. */
export class BackendUnavailableError extends LongseqError {
  constructor(
    readonly backend: string,
    readonly reason: string,
  ) {
    super('BACKEND_UNAVAILABLE', `backend ${backend} is unavailable: ${reason}`);
  }
}

/** Tensors from different backends were mixed in one op. */
export class BackendMismatchError extends LongseqError {
  constructor(
    readonly argument: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super('BACKEND_MISMATCH', `${argument}: expected a tensor on backend ${expected}, got one on ${actual}`);
  }
}

/** The GPU device was lost (driver reset, too long a dispatch, destroy()). Tensors on it are gone. */
export class DeviceLostError extends LongseqError {
  constructor(
    readonly backend: string,
    readonly reason: string,
  ) {
    super('DEVICE_LOST', `the ${backend} device was lost: ${reason}`);
  }
}

export class KernelNotFoundError extends LongseqError {
  constructor(
    readonly kernelName: string,
    readonly backendKind: string,
  ) {
    super('KERNEL_NOT_FOUND', `no kernel ${kernelName} is registered for backend ${backendKind}`);
  }
}

export class KernelRegisteredError extends LongseqError {
  constructor(
    readonly kernelName: string,
    readonly backendKind: string,
  ) {
    super('KERNEL_REGISTERED', `kernel ${kernelName} is already registered for backend ${backendKind}`);
  }
}

/** An option or scalar argument is out of range or of the wrong kind. */
export class ArgumentError extends LongseqError {
  constructor(
    readonly argument: string,
    readonly expected: string,
    readonly actual: unknown,
  ) {
    super('INVALID_ARGUMENT', `${argument}: expected ${expected}, got ${describe(actual)}`);
  }
}

/** The device rejected a program (WGSL compile error, bad binding): a bug in a kernel, not in user input. */
export class ValidationError extends LongseqError {
  constructor(
    readonly program: string,
    readonly details: string,
  ) {
    super('VALIDATION', `program ${program} failed validation: ${details}`);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(describe).join(', ')}]`;
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'object') return Object.prototype.toString.call(value);
  return String(value);
}
