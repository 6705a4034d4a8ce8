import { BackendUnavailableError } from '@longseq/backend';
import { type AcquiredDevice, type WebGpuAdapterInfo, WebGpuBackend } from './backend';
import { registerWebGpuKernels } from './kernels/index';

export interface WebGpuBackendOptions {
  /** A navigator.gpu-like object to ask for an adapter (default: navigator.gpu, or Dawn in Node). */
  readonly gpu?: GPU;
  /** Use this adapter instead of requesting one. */
  readonly adapter?: GPUAdapter;
  /** Use this device as is (it is not destroyed by dispose()). */
  readonly device?: GPUDevice;
  readonly powerPreference?: GPUPowerPreference;
  /**
   * Node only: flags for the `webgpu` package's `create()`, e.g.
   * 'enable-dawn-features=allow_unsafe_apis'. Flags in the environment variable
   * LONGSEQ_DAWN_TOGGLES (separated by ';') are added, so benchmarks can try Dawn toggles
   * without code changes.
   */
  readonly dawnToggles?: readonly string[];
  /** Features the device must have, besides the optional ones requested when offered. */
  readonly requiredFeatures?: readonly string[];
  /** Bytes the free-buffer pool may hold. Default 512 MiB. */
  readonly maxPoolBytes?: number;
  /** Dispatches recorded before a submit. Default 48. */
  readonly maxBatch?: number;
  /**
   * Opt-in: Dawn's `allow_unsafe_apis` toggle (Node) and the experimental feature
   * 'chromium-experimental-subgroup-matrix' requested when the adapter offers it. Default
   * false, or true when the environment has LONGSEQ_WEBGPU_SUBGROUP_MATRIX=1.
   */
  readonly subgroupMatrix?: boolean;
}

const SUBGROUP_MATRIX = 'chromium-experimental-subgroup-matrix';

function envToggles(): string[] {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  const value = proc?.env?.LONGSEQ_DAWN_TOGGLES ?? '';
  return value
    .split(';')
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
}

function wantsSubgroupMatrix(options: WebGpuBackendOptions): boolean {
  if (options.subgroupMatrix !== undefined) return options.subgroupMatrix;
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.LONGSEQ_WEBGPU_SUBGROUP_MATRIX === '1';
}

/** Requested whenever the adapter offers them; kernels check `backend.features`. */
const OPTIONAL_FEATURES = ['subgroups', 'timestamp-query', 'shader-f16'] as const;

/** Limits raised to the adapter's maxima, so large sequences fit where the hardware allows. */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupsPerDimension',
] as const;

const NO_ADAPTER_HINT =
  'no WebGPU adapter was found. In Node on Linux without a GPU, install libvulkan1 and a software Vulkan ' +
  "driver (SwiftShader ships in Debian's chromium package) and set " +
  'VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json. In a browser, WebGPU needs a secure context ' +
  'and a browser that supports it (Chrome/Edge 113+, or --enable-unsafe-webgpu).';

function isNode(): boolean {
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof proc?.versions?.node === 'string';
}

interface DawnModule {
  create(toggles: string[]): GPU;
  globals: Record<string, unknown>;
}

const dawnInstances = new Map<string, GPU>();

/**
 * Loads Dawn for Node. The specifier is a variable so bundlers building for the browser
 * neither follow nor bundle it: the `webgpu` package is a native addon and Node-only.
 */
async function nodeGpu(toggles: readonly string[]): Promise<GPU> {
  const key = toggles.join('\n');
  const existing = dawnInstances.get(key);
  if (existing) return existing;
  const specifier = 'webgpu';
  let dawn: DawnModule;
  try {
    dawn = (await import(/* @vite-ignore */ specifier)) as DawnModule;
  } catch (err) {
    throw new BackendUnavailableError(
      'webgpu',
      `the 'webgpu' package (Dawn for Node) could not be loaded (${(err as Error).message}); install it with \`npm install webgpu\``,
    );
  }
  // Kernels and user code expect the browser globals (GPUBufferUsage, GPUMapMode, ...).
  const g = globalThis as Record<string, unknown>;
  for (const [name, value] of Object.entries(dawn.globals)) if (!(name in g)) g[name] = value;
  const gpu = dawn.create([...toggles]);
  dawnInstances.set(key, gpu);
  return gpu;
}

async function defaultGpu(options: WebGpuBackendOptions): Promise<GPU> {
  if (options.gpu) return options.gpu;
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (isNode()) {
    const toggles = [...(options.dawnToggles ?? []), ...envToggles()];
    if (wantsSubgroupMatrix(options)) toggles.push('enable-dawn-features=allow_unsafe_apis');
    return nodeGpu(toggles);
  }
  throw new BackendUnavailableError('webgpu', 'navigator.gpu is missing: this browser has no WebGPU');
}

function describeAdapter(info: GPUAdapterInfo | undefined): WebGpuAdapterInfo {
  return {
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    device: info?.device ?? '',
    description: info?.description ?? '',
  };
}

function subgroupMinSize(info: GPUAdapterInfo | undefined): number {
  const size = (info as { subgroupMinSize?: number } | undefined)?.subgroupMinSize;
  return typeof size === 'number' && size > 0 ? size : 0;
}

async function requestDevice(adapter: GPUAdapter, options: WebGpuBackendOptions): Promise<AcquiredDevice> {
  const features = new Set<string>();
  for (const f of OPTIONAL_FEATURES) if (adapter.features.has(f)) features.add(f);
  if (wantsSubgroupMatrix(options) && adapter.features.has(SUBGROUP_MATRIX)) features.add(SUBGROUP_MATRIX);
  for (const f of options.requiredFeatures ?? []) {
    if (!adapter.features.has(f)) {
      throw new BackendUnavailableError('webgpu', `the adapter lacks required feature '${f}'`);
    }
    features.add(f);
  }
  const requiredLimits: Record<string, number> = {};
  const limits = adapter.limits as unknown as Record<string, number | undefined>;
  for (const name of RAISED_LIMITS) {
    const value = limits[name];
    if (typeof value === 'number') requiredLimits[name] = value;
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      requiredFeatures: [...features] as GPUFeatureName[],
      requiredLimits,
      label: 'longseq',
    });
  } catch (err) {
    throw new BackendUnavailableError('webgpu', `requestDevice failed: ${(err as Error).message}`);
  }
  const configs = (info: unknown) =>
    (info as { subgroupMatrixConfigs?: readonly unknown[] } | undefined)?.subgroupMatrixConfigs?.length ?? 0;
  if (features.has(SUBGROUP_MATRIX) && configs(device.adapterInfo) < configs(adapter.info)) {
    // Kernels read the matrix shapes from device.adapterInfo; Dawn for Node (webgpu 0.6.2)
    // reports them on the adapter's info only, so the device gets that info.
    Object.defineProperty(device, 'adapterInfo', { value: adapter.info });
  }
  return {
    device,
    adapterInfo: describeAdapter(adapter.info),
    subgroupMinSize: subgroupMinSize(adapter.info),
    owned: true,
  };
}

async function requestAdapter(gpu: GPU, options: WebGpuBackendOptions): Promise<GPUAdapter> {
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter(
      options.powerPreference ? { powerPreference: options.powerPreference } : {},
    );
  } catch (err) {
    throw new BackendUnavailableError(
      'webgpu',
      `requestAdapter failed: ${(err as Error).message}. ${NO_ADAPTER_HINT}`,
    );
  }
  if (!adapter) throw new BackendUnavailableError('webgpu', NO_ADAPTER_HINT);
  return adapter;
}

/**
 * Creates the WebGPU backend and registers its kernels. In a browser it uses
 * navigator.gpu; in Node, the `webgpu` package (Dawn). Throws BackendUnavailableError
 * when no adapter or device can be had.
 */
export async function createWebGpuBackend(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  registerWebGpuKernels();
  let acquired: AcquiredDevice;
  let adapter = options.adapter;
  if (options.device) {
    const info = (options.device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    acquired = {
      device: options.device,
      adapterInfo: describeAdapter(info),
      subgroupMinSize: subgroupMinSize(info),
      owned: false,
    };
  } else {
    adapter ??= await requestAdapter(await defaultGpu(options), options);
    acquired = await requestDevice(adapter, options);
  }
  // A fresh device needs a fresh adapter: an adapter is spent once it has handed out a device.
  const reacquire = async (): Promise<AcquiredDevice> => {
    const gpu = options.gpu ?? (options.adapter ? undefined : await defaultGpu(options));
    const next = gpu ? await requestAdapter(gpu, options) : options.adapter!;
    return requestDevice(next, options);
  };
  return new WebGpuBackend(acquired, {
    reacquire,
    ...(options.maxPoolBytes !== undefined ? { maxPoolBytes: options.maxPoolBytes } : {}),
    ...(options.maxBatch !== undefined ? { maxBatch: options.maxBatch } : {}),
  });
}
