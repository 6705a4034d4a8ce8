import {
  ArgumentError,
  type BackendLimits,
  BackendUnavailableError,
  type GpuJsProgram,
} from '@longseq/backend';
import { GpuJsBackend, MAX_F32_EXACT_ELEMENTS } from './backend';
import {
  GPUJS_MODES,
  type GpuJsInstance,
  type GpuJsMode,
  type WebGpuContext,
  gpujs,
  kernelClassMode,
} from './gpu-js';
import { registerGpuJsKernels } from './kernels';

export interface CreateGpuJsBackendOptions {
  /** Which gpu.js backend runs the kernels. Nothing falls back: an unavailable mode throws. */
  readonly mode: GpuJsMode;
  /**
   * webgpu mode: the WebGPU entry point (what `navigator.gpu` is) to install when
   * `navigator.gpu` is absent. gpu.js reads only the global. In Node, when neither exists,
   * the `webgpu` package (Dawn) provides it.
   */
  readonly gpu?: GPU;
  /** webgl2 mode: a canvas for gpu.js to draw into (browsers). */
  readonly canvas?: HTMLCanvasElement | OffscreenCanvas;
  /** webgl2 mode: an existing WebGL2 context to share (browsers). */
  readonly context?: WebGL2RenderingContext;
}

/** Typed-array elements addressable on the cpu mode (plain JS, f64 index arithmetic). */
const CPU_MAX_ELEMENTS = 2 ** 28;

/**
 * Creates a gpu.js backend in one mode and proves it: a one-kernel probe must run on that
 * very mode, or this throws BackendUnavailableError instead of handing out a backend that
 * gpu.js quietly moved to another mode.
 */
export async function createGpuJsBackend(options: CreateGpuJsBackendOptions): Promise<GpuJsBackend> {
  if (options === null || typeof options !== 'object')
    throw new ArgumentError('options', 'an object with a mode', options);
  const mode = options.mode;
  if (!GPUJS_MODES.includes(mode)) {
    throw new ArgumentError('options.mode', `one of ${GPUJS_MODES.map((m) => `'${m}'`).join(', ')}`, mode);
  }
  const name = `gpujs-${mode}`;
  registerGpuJsKernels();

  let webgpu: WebGpuContext | undefined;
  if (mode === 'webgpu') webgpu = await acquireWebGpu(options.gpu);
  if (mode === 'webgl2' && !options.context && !gpujs.GPU.isWebGL2Supported) {
    throw new BackendUnavailableError(
      name,
      isNode()
        ? 'WebGL2 exists only in browsers; in Node gpu.js offers headless-gl, which is WebGL1'
        : 'this browser gives no WebGL2 context',
    );
  }
  if (mode === 'webasm' && !gpujs.GPU.isWebAssemblySupported) {
    throw new BackendUnavailableError(name, 'WebAssembly is not available here');
  }

  let gpu: GpuJsInstance;
  try {
    const settings: Record<string, unknown> = { mode };
    if (options.canvas) settings.canvas = options.canvas;
    if (options.context) settings.context = options.context;
    gpu = new gpujs.GPU(settings);
  } catch (err) {
    throw new BackendUnavailableError(name, `gpu.js refused the mode: ${messageOf(err)}`);
  }
  // with a context, gpu.js picks the kernel class from the context, not from the mode
  if (kernelClassMode(gpu.Kernel) !== mode) {
    gpu.destroy().catch(() => undefined);
    throw new BackendUnavailableError(
      name,
      `gpu.js chose its ${kernelClassMode(gpu.Kernel)} backend for mode ${mode}`,
    );
  }

  const backend = new GpuJsBackend({ mode, gpu, webgpu, limits: limitsFor(mode, gpu, webgpu) });
  try {
    await probe(backend);
  } catch (err) {
    backend.dispose();
    if (err instanceof BackendUnavailableError) throw err;
    throw new BackendUnavailableError(name, `a probe kernel failed: ${messageOf(err)}`);
  }
  return backend;
}

function limitsFor(mode: GpuJsMode, gpu: GpuJsInstance, webgpu: WebGpuContext | undefined): BackendLimits {
  let maxElements = MAX_F32_EXACT_ELEMENTS;
  let maxBytes = maxElements * 4;
  if (mode === 'cpu') {
    maxElements = CPU_MAX_ELEMENTS;
    maxBytes = maxElements * 4;
  } else if (mode === 'webgpu' && webgpu) {
    // gpu.js asks its device for the adapter's limits and binds every tensor whole
    const l = webgpu.device.limits;
    maxBytes = Math.min(maxBytes, l.maxStorageBufferBindingSize, l.maxBufferSize);
  } else if (mode === 'webgl2') {
    // one f32 per texel, in a square texture of at most maxTextureSize on a side
    const side = gpu.Kernel.features?.maxTextureSize ?? 4096;
    maxBytes = Math.min(maxBytes, side * side * 4);
  }
  // webasm: one wasm32 memory holds all arguments and the output; the 2^24 index cap is lower
  maxElements = Math.floor(maxBytes / 4);
  return {
    maxBufferSize: maxBytes,
    maxStorageBufferBindingSize: maxBytes,
    maxWorkgroupStorageSize: 0,
    maxWorkgroupInvocations: 1,
    // one "workgroup" per output element: gpu.js folds large 1-D dispatches itself
    maxWorkgroupsPerDimension: maxElements,
    subgroupSize: 0,
  };
}

/** The probe's kernel, a source string like every kernel here (see kernels/math.ts). */
export const probeKernel = /* js */ `function probeKernel(a, s) {
  return a[this.thread.x] * s;
}`;

/** Runs one tiny kernel end to end; execute() throws if gpu.js ran it on another mode. */
async function probe(backend: GpuJsBackend): Promise<void> {
  const x = backend.tensor([1, 2, 3], [3]);
  const y = backend.empty([3]);
  try {
    const program: GpuJsProgram = {
      kind: 'gpujs',
      name: 'probe',
      cacheKey: '',
      kernel: probeKernel,
      inputs: [x],
      scalars: [2],
      output: y,
    };
    await backend.run(program);
    const got = Array.from(await y.read());
    if (got.join(',') !== '2,4,6') throw new Error(`expected [2, 4, 6], got [${got.join(', ')}]`);
  } finally {
    x.dispose();
    y.dispose();
  }
}

let dawn: Promise<GPU> | undefined;

/**
 * gpu.js' webgpu mode reads `navigator.gpu` and shares one device module-wide
 * (`WebGPUContext.acquire()`). Node has no navigator.gpu: the `webgpu` package provides it,
 * imported through a variable so bundlers for the browser never pull in its native addon.
 */
async function acquireWebGpu(provided: GPU | undefined): Promise<WebGpuContext> {
  const name = 'gpujs-webgpu';
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) {
    if (provided && provided !== nav.gpu) {
      throw new ArgumentError(
        'options.gpu',
        'navigator.gpu itself or nothing (gpu.js reads only the global)',
        provided,
      );
    }
  } else {
    let gpu = provided;
    if (!gpu) {
      if (!isNode())
        throw new BackendUnavailableError(name, 'navigator.gpu is missing: this browser has no WebGPU');
      dawn ??= loadDawn();
      try {
        gpu = await dawn;
      } catch (err) {
        dawn = undefined;
        throw new BackendUnavailableError(
          name,
          `the 'webgpu' package (Dawn for Node) did not load: ${messageOf(err)}`,
        );
      }
    }
    installNavigatorGpu(gpu);
  }
  if (!gpujs.GPU.isWebGPUSupported) throw new BackendUnavailableError(name, 'gpu.js sees no navigator.gpu');
  try {
    return await gpujs.WebGPUContext.acquire();
  } catch (err) {
    throw new BackendUnavailableError(name, messageOf(err));
  }
}

async function loadDawn(): Promise<GPU> {
  const specifier = 'webgpu';
  const mod = (await import(/* @vite-ignore */ specifier)) as {
    create(options: string[]): GPU;
    globals: Record<string, unknown>;
  };
  // the WebGPU interface globals (GPUBufferUsage, GPUAdapter, ...), only where absent
  const g = globalThis as Record<string, unknown>;
  for (const [key, value] of Object.entries(mod.globals)) if (!(key in g)) g[key] = value;
  return mod.create([]);
}

function installNavigatorGpu(gpu: GPU): void {
  const g = globalThis as { navigator?: object };
  if (g.navigator) {
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, enumerable: true });
  } else {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  }
}

function isNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
