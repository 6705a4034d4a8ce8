import {
  ArgumentError,
  BackendBase,
  type BackendLimits,
  BackendUnavailableError,
  type DType,
  DeviceLostError,
  type GpuJsProgram,
  type Program,
  type Tensor,
  type TypedArray,
  ValidationError,
} from '@longseq/backend';
import {
  type GpuJsInstance,
  type GpuJsKernel,
  type GpuJsMode,
  type KernelResult,
  type WebGpuBufferResult,
  type WebGpuContext,
  gpujs,
  isGlTexture,
  isWebGpuBufferResult,
  kernelClassMode,
} from './gpu-js';

/**
 * gpu.js does its index arithmetic in f32 on every compiled mode (even `Integer` scalars are
 * converted with `f32(...)` in the generated WGSL), so an element index is exact only below
 * 2^24. Tensors are capped there rather than silently reading the wrong element.
 */
export const MAX_F32_EXACT_ELEMENTS = 2 ** 24;

/**
 * gpu.js caps every dynamic loop at `loopMaxIterations` (default 1000, on every mode, cpu
 * included) and silently stops there. Kernels loop at most over one tensor's elements, so
 * this bound never cuts a loop short; a loop that exits early costs nothing extra.
 */
export const DEFAULT_LOOP_MAX_ITERATIONS = MAX_F32_EXACT_ELEMENTS;

// GPUBufferUsage / GPUMapMode values, pinned by the WebGPU spec; spelled out so this module
// also loads where those globals do not exist (Node before the `webgpu` package is set up).
const USAGE_MAP_READ = 0x0001;
const USAGE_COPY_SRC = 0x0004;
const USAGE_COPY_DST = 0x0008;
const USAGE_STORAGE = 0x0080;
const MAP_MODE_READ = 0x0001;

/**
 * GL has no "write a texture" in gpu.js' API: this identity kernel renders an array into one.
 * A source string, like every kernel here (see kernels/math.ts).
 */
export const uploadKernel = /* js */ `function uploadKernel(a) {
  return a[this.thread.x];
}`;

/**
 * The name a `function name(...) { ... }` source declares, or undefined. gpu.js links
 * helpers by name, so every helper source must declare one.
 */
export function nameOf(source: string): string | undefined {
  return /^\s*function\s+([A-Za-z_$][\w$]*)/.exec(source)?.[1];
}

function excerpt(source: string): string {
  const line = source.trim().split('\n')[0] ?? '';
  return line.length > 60 ? `${line.slice(0, 60)}…` : line;
}

/**
 * The device handle of a gpujs tensor: a mutable box, because `allocate` must hand out a
 * handle before any kernel has produced the texture/buffer/array that holds the values.
 * `execute` fills it with the kernel's pipeline result; `free` deletes what it holds.
 */
export interface GpuJsHandle {
  value: KernelResult | undefined;
}

export interface GpuJsBackendStats {
  /** gpu.js kernels created for programs (cache misses). Uploads are not counted. */
  readonly compilations: number;
  /** Program runs served by an already-compiled kernel. */
  readonly cacheHits: number;
  /** Distinct compiled programs held. */
  readonly cachedKernels: number;
}

export interface GpuJsBackendInit {
  readonly mode: GpuJsMode;
  readonly gpu: GpuJsInstance;
  /** The shared gpu.js WebGPU device; present exactly in webgpu mode. */
  readonly webgpu?: WebGpuContext;
  readonly limits: BackendLimits;
}

/**
 * The gpu.js backend: every program is one gpu.js kernel (one thread per output element)
 * run with `pipeline: true`, so results stay where the mode keeps them: GL textures on
 * webgl2, GPU buffers on webgpu, typed arrays on webasm and cpu. All values are f32 on the
 * device; i32/u32 tensors are stored as floats (exact up to 2^24) and converted on read.
 */
export class GpuJsBackend extends BackendBase {
  readonly kind = 'gpujs' as const;
  readonly name: string;
  readonly mode: GpuJsMode;
  readonly limits: BackendLimits;
  /** gpu.js has no subgroups, timestamps, f16 or workgroup memory to offer. */
  readonly features: ReadonlySet<string> = new Set<string>();
  /** The gpu.js instance, for inspection (e.g. `gpu.kernels.length`); do not create kernels on it. */
  readonly gpu: GpuJsInstance;

  private readonly webgpu: WebGpuContext | undefined;
  private readonly cache = new Map<string, GpuJsKernel>();
  private compilations = 0;
  private cacheHits = 0;
  private uploader: GpuJsKernel | undefined;
  // stands in for zero-size inputs, which have no device storage (WebGPU cannot bind an
  // empty buffer); kernels never read it because their loops are bounded by the sizes
  private placeholder: KernelResult | undefined;

  constructor(init: GpuJsBackendInit) {
    super();
    this.mode = init.mode;
    this.name = `gpujs-${init.mode}`;
    this.gpu = init.gpu;
    this.webgpu = init.webgpu;
    this.limits = init.limits;
  }

  stats(): GpuJsBackendStats {
    return { compilations: this.compilations, cacheHits: this.cacheHits, cachedKernels: this.cache.size };
  }

  /** The device object a tensor holds now (texture, buffer handle or array), for tests and debugging. */
  deviceValue(t: Tensor): KernelResult | undefined {
    this.assertOwn(t, 'tensor');
    return (t.handle as GpuJsHandle).value;
  }

  protected allocate(_bytes: number, _dtype: DType, _size: number): GpuJsHandle {
    return { value: undefined };
  }

  protected upload(data: TypedArray, _dtype: DType): GpuJsHandle {
    if (data.length === 0) return { value: undefined };
    // always a fresh Float32Array: i32/u32 become floats, and on cpu/webasm the array *is*
    // the device storage, so it must not alias the caller's data
    return { value: this.uploadFloats(Float32Array.from(data)) };
  }

  protected async download(handle: unknown, dtype: DType, size: number): Promise<TypedArray> {
    const box = handle as GpuJsHandle;
    let floats: ArrayLike<number>;
    if (size === 0 || box.value === undefined) floats = new Float32Array(size);
    else floats = await this.readFloats(box.value, size);
    switch (dtype) {
      case 'f32':
        return Float32Array.from(floats);
      case 'i32':
        return Int32Array.from(floats);
      case 'u32':
        return Uint32Array.from(floats);
    }
  }

  protected free(handle: unknown): void {
    const box = handle as GpuJsHandle;
    if (box.value !== undefined) releaseValue(box.value);
    box.value = undefined;
  }

  async sync(): Promise<void> {
    // GL and the CPU modes finish each kernel call before it returns; only WebGPU queues
    if (this.webgpu) await this.webgpu.device.queue.onSubmittedWorkDone();
  }

  protected async execute(program: Program): Promise<void> {
    if (program.kind !== 'gpujs') throw new ArgumentError('program.kind', "'gpujs'", program.kind);
    const out = program.output;
    if (out.size === 0) return;
    this.checkDevice();
    const kernel = this.kernelFor(program);
    const args: unknown[] = program.inputs.map((t) => this.argumentFor(t));
    for (const s of program.scalars ?? []) args.push(s);
    let result: unknown;
    try {
      kernel.setOutput([out.size]);
      result = await kernel(...args);
    } catch (err) {
      this.checkDevice();
      // a fallback kernel that then failed is still a fallback: say so, not "invalid program"
      this.checkModeRan(kernel, program, undefined);
      const message = err instanceof Error ? err.message : String(err);
      throw new ValidationError(program.name, `gpu.js (${this.mode}): ${message}`);
    }
    const value = result as KernelResult;
    this.checkModeRan(kernel, program, value);
    this.releaseKernelOutput(kernel, value);
    const box = out.handle as GpuJsHandle;
    const previous = box.value;
    box.value = value;
    if (previous !== undefined && previous !== value) releaseValue(previous);
  }

  protected destroyDevice(): void {
    for (const k of this.cache.values()) k.destroy();
    this.cache.clear();
    this.uploader?.destroy();
    this.uploader = undefined;
    if (this.placeholder !== undefined) releaseValue(this.placeholder);
    this.placeholder = undefined;
    // gpu.destroy() defers to a timer and resolves later; nothing waits on it. The WebGPU
    // device itself is a gpu.js module singleton shared by every GPU instance, so it stays.
    this.gpu.destroy().catch(() => undefined);
  }

  /** Compiled kernels are cached by name, variant, argument kinds and compile-time settings: never by shape. */
  private kernelFor(program: GpuJsProgram): GpuJsKernel {
    const loopMax = program.loopMaxIterations ?? DEFAULT_LOOP_MAX_ITERATIONS;
    const constants = program.constants ?? {};
    const constantKey = Object.keys(constants)
      .sort()
      .map((k) => `${k}=${constants[k]}`)
      .join(',');
    const argKinds = `${program.inputs.length}t${program.scalars?.length ?? 0}s`;
    const key = `${program.name}|${program.cacheKey}|${argKinds}|${constantKey}|${loopMax}`;
    const cached = this.cache.get(key);
    if (cached) {
      this.cacheHits++;
      return cached;
    }
    const settings: Record<string, unknown> = {
      output: [1],
      pipeline: true,
      // a fresh texture/buffer/array per call: the tensor owns it, the next call must not overwrite it
      immutable: true,
      // a new size is setOutput + new argument sizes, not a new kernel
      dynamicOutput: true,
      dynamicArguments: true,
      asyncMode: true,
      precision: 'single',
      loopMaxIterations: loopMax,
    };
    // gpu.js merges settings with Object.assign, so an explicit `undefined` would erase defaults
    if (program.constants) settings.constants = { ...program.constants };
    if (program.functions && program.functions.length > 0) {
      // each helper under the name its source declares, which is the name kernels call it by
      const functions: { source: string; settings: { name: string } }[] = [];
      for (const source of program.functions) {
        const name = nameOf(source);
        if (name === undefined) {
          throw new ValidationError(
            program.name,
            `a helper function source has no name (expected 'function name(...) { ... }'): ${excerpt(source)}`,
          );
        }
        functions.push({ source: source.trimStart(), settings: { name } });
      }
      settings.functions = functions;
    }
    if (this.mode === 'webgl2') settings.tactic = 'precision';
    let kernel: GpuJsKernel;
    try {
      // gpu.js takes a string only if it starts with `function`
      kernel = this.gpu.createKernel(program.kernel.trimStart(), settings);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new ValidationError(program.name, `gpu.js (${this.mode}): ${message}`);
    }
    this.compilations++;
    this.cache.set(key, kernel);
    return kernel;
  }

  /** gpu.js degrades silently (e.g. webasm to cpu on an unsupported return type); refuse instead. */
  private checkModeRan(kernel: GpuJsKernel, program: GpuJsProgram, result: KernelResult | undefined): void {
    const ran = kernelClassMode(kernel.kernel.constructor);
    // a fallback that threw never replaced the kernel: only the flag on the original tells
    if (ran === this.mode && !kernel.kernel.fallbackRequested) return;
    const reason = kernel.kernel.fallbackReason ?? 'no reason given';
    if (result !== undefined && result !== null) releaseValue(result);
    for (const [key, k] of this.cache) if (k === kernel) this.cache.delete(key);
    kernel.destroy();
    throw new BackendUnavailableError(
      this.name,
      `gpu.js moved program ${program.name} from ${this.mode} to ${ran === this.mode ? 'cpu' : ran} (${reason})`,
    );
  }

  /**
   * An immutable webgpu pipeline kernel keeps a reference to its last output buffer until
   * its next run, so a freed tensor's buffer would outlive it. The handle we keep holds
   * its own reference (gpu.js refcounts buffers), so the kernel's is dropped here.
   */
  private releaseKernelOutput(kernel: GpuJsKernel, result: KernelResult): void {
    if (!isWebGpuBufferResult(result)) return;
    const inner = kernel.kernel;
    const buffer = inner.outputBuffer;
    if (!buffer || buffer !== result.buffer || (buffer._refs ?? 0) < 2) return;
    buffer._refs = (buffer._refs ?? 0) - 1;
    inner.outputBuffer = null;
    inner.bindGroupDirty = true;
  }

  private argumentFor(t: Tensor): KernelResult {
    const box = t.handle as GpuJsHandle;
    if (box.value !== undefined) return box.value;
    if (t.size > 0) {
      // read before any kernel wrote it: its contents are unspecified, so give it zeros
      box.value = this.uploadFloats(new Float32Array(t.size));
      return box.value;
    }
    if (this.placeholder === undefined) this.placeholder = this.uploadFloats(new Float32Array(1));
    return this.placeholder;
  }

  private uploadFloats(data: Float32Array): KernelResult {
    switch (this.mode) {
      case 'cpu':
      case 'webasm':
        return data;
      case 'webgpu':
        return this.uploadBuffer(data);
      case 'webgl2':
        return this.uploadTexture(data);
    }
  }

  private uploadBuffer(data: Float32Array): WebGpuBufferResult {
    this.checkDevice();
    const context = this.webgpu!;
    const buffer = context.device.createBuffer({
      size: data.byteLength,
      usage: USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST,
      mappedAtCreation: true,
    });
    new Float32Array(buffer.getMappedRange()).set(data);
    buffer.unmap();
    // the same handle class gpu.js' kernels return, so kernels bind it with no copy
    return new gpujs.WebGPUBufferResult({ buffer, output: [data.length], context, kernel: null });
  }

  private uploadTexture(data: Float32Array): KernelResult {
    // GL has no "write a texture" in gpu.js' API: an identity kernel renders the array into one
    if (!this.uploader) {
      this.uploader = this.gpu.createKernel(uploadKernel, {
        output: [data.length],
        pipeline: true,
        immutable: true,
        dynamicOutput: true,
        dynamicArguments: true,
        precision: 'single',
        tactic: 'precision',
      });
    }
    this.uploader.setOutput([data.length]);
    const texture = this.uploader(data);
    if (!isGlTexture(texture)) {
      throw new BackendUnavailableError(
        this.name,
        `gpu.js returned no texture for an upload (got ${describe(texture)})`,
      );
    }
    return texture;
  }

  private async readFloats(value: KernelResult, size: number): Promise<ArrayLike<number>> {
    if (value instanceof Float32Array) return value;
    if (isWebGpuBufferResult(value)) return this.readBuffer(value, size);
    return await value.toArray();
  }

  private async readBuffer(result: WebGpuBufferResult, size: number): Promise<Float32Array> {
    this.checkDevice();
    const device = this.webgpu!.device;
    const bytes = size * 4;
    const staging = device.createBuffer({ size: bytes, usage: USAGE_MAP_READ | USAGE_COPY_DST });
    try {
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(result.buffer, 0, staging, 0, bytes);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(MAP_MODE_READ, 0, bytes);
      return new Float32Array(staging.getMappedRange(0, bytes).slice(0));
    } finally {
      staging.destroy();
    }
  }

  private checkDevice(): void {
    if (this.webgpu?.isLost) throw new DeviceLostError(this.name, 'gpu.js reports its WebGPU device lost');
  }
}

function releaseValue(value: KernelResult): void {
  // typed arrays (cpu, webasm) are garbage collected; textures and buffers are refcounted by gpu.js
  if (!(value instanceof Float32Array)) value.delete();
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  return typeof value === 'object' ? (value.constructor?.name ?? 'object') : typeof value;
}
