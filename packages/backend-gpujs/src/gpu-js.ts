/**
 * The slice of gpu.js 2.24 this package touches, typed locally: gpu.js' own typings cover
 * `GPU` but not the WebGPU classes it exports (`WebGPUContext`, `WebGPUBufferResult`), and
 * its kernel-shortcut type is broader than what we rely on. Keeping the surface here makes
 * every reach into gpu.js greppable.
 */
import * as gpujsModule from 'gpu.js';

export type GpuJsMode = 'webgpu' | 'webgl2' | 'webasm' | 'cpu';
export const GPUJS_MODES: readonly GpuJsMode[] = ['webgpu', 'webgl2', 'webasm', 'cpu'];

/** A GL texture produced by a pipeline kernel (gpu.js `Texture`). */
export interface GlTexture {
  readonly type: string;
  readonly output: readonly number[];
  toArray(): ArrayLike<number> | Promise<ArrayLike<number>>;
  delete(): void;
}

/** gpu.js' pipeline handle on webgpu: a refcounted GPUBuffer (src/backend/web-gpu/buffer-result.js). */
export interface WebGpuBufferResult {
  readonly type: 'WebGPUBuffer';
  readonly buffer: GPUBuffer & { _refs?: number };
  readonly output: readonly number[];
  readonly context: WebGpuContext;
  delete(): void;
}

/** The module-wide device gpu.js shares between every GPU instance in webgpu mode. */
export interface WebGpuContext {
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  readonly isLost: boolean;
}

/** What a kernel call resolves to with `pipeline: true`, per mode. */
export type KernelResult = Float32Array | GlTexture | WebGpuBufferResult;

/** The concrete kernel object behind a shortcut (`shortcut.kernel`). */
export interface GpuJsKernelInstance {
  readonly constructor: { readonly mode: string };
  readonly fallbackReason?: string | null;
  readonly fallbackRequested?: boolean;
  // webgpu only: the buffer the next run writes (see releaseKernelOutput)
  outputBuffer?: (GPUBuffer & { _refs?: number }) | null;
  bindGroupDirty?: boolean;
}

/** The callable gpu.js returns from createKernel. */
export interface GpuJsKernel {
  (...args: unknown[]): unknown;
  readonly kernel: GpuJsKernelInstance;
  setOutput(output: number[]): GpuJsKernel;
  destroy(removeCanvasReferences?: boolean): void;
}

export interface GpuJsInstance {
  readonly mode: string;
  readonly kernels: unknown[];
  readonly Kernel: { readonly mode: string; readonly features?: { readonly maxTextureSize?: number } };
  createKernel(source: unknown, settings: Record<string, unknown>): GpuJsKernel;
  destroy(): Promise<void>;
}

interface GpuJsStatics {
  GPU: (new (
    settings: Record<string, unknown>,
  ) => GpuJsInstance) & {
    readonly isWebGL2Supported: boolean;
    readonly isWebAssemblySupported: boolean;
    readonly isWebGPUSupported: boolean;
    isWebGPUAvailable(): Promise<boolean>;
  };
  WebGPUContext: { acquire(): Promise<WebGpuContext> };
  /** GL kernels all report mode 'gpu'; the class tells WebGL2 from WebGL1 and headless-gl. */
  WebGL2Kernel: { readonly mode: string };
  WebGPUBufferResult: new (settings: {
    buffer: GPUBuffer;
    output: number[];
    context: WebGpuContext;
    kernel: null;
  }) => WebGpuBufferResult;
}

// gpu.js is CommonJS: under Node's ESM loader the named exports sit on the namespace
// (cjs-module-lexer) and on `default`; bundlers put them on the namespace.
const ns = gpujsModule as unknown as GpuJsStatics & { default?: GpuJsStatics };
export const gpujs: GpuJsStatics = ns.GPU ? ns : ns.default!;

/** The mode a gpu.js kernel class really runs, with GL's 'gpu' resolved to 'webgl2' (or 'webgl'). */
export function kernelClassMode(kernelClass: { readonly mode: string }): string {
  if (kernelClass.mode !== 'gpu') return kernelClass.mode;
  return kernelClass === gpujs.WebGL2Kernel ? 'webgl2' : 'webgl';
}

export function isWebGpuBufferResult(value: unknown): value is WebGpuBufferResult {
  return typeof value === 'object' && value !== null && (value as { type?: unknown }).type === 'WebGPUBuffer';
}

export function isGlTexture(value: unknown): value is GlTexture {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as GlTexture).toArray === 'function' &&
    typeof (value as GlTexture).delete === 'function' &&
    !isWebGpuBufferResult(value)
  );
}
