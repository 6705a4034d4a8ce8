import { type Backend, BackendUnavailableError, LongseqError } from '@longseq/backend';

/** Backends the CLI can run on, in the order `all` tries them. gpu.js' webgl2 needs a browser. */
export const BACKEND_NAMES = ['webgpu', 'gpujs-webgpu', 'gpujs-webasm', 'gpujs-cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

function isBackendName(name: string): name is BackendName {
  return (BACKEND_NAMES as readonly string[]).includes(name);
}

/** Parses `--backend`: one name, a comma-separated list, or `all`. Unknown names throw. */
export function parseBackends(value: string | undefined, fallback: BackendName[]): BackendName[] {
  if (value === undefined) return fallback;
  if (value === 'all') return [...BACKEND_NAMES];
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (names.length === 0)
    throw new BackendUnavailableError(value, `choose one of ${BACKEND_NAMES.join(', ')} or all`);
  for (const name of names) {
    if (!isBackendName(name)) {
      throw new BackendUnavailableError(
        name,
        `unknown backend; choose one of ${BACKEND_NAMES.join(', ')} or all`,
      );
    }
  }
  return names as BackendName[];
}

/**
 * Creates a backend. The backend packages are imported here, on demand, so neither Dawn nor
 * gpu.js is loaded by a command that does not use it (and a missing gpu.js only disables
 * the gpujs-* backends).
 */
export async function createBackend(name: BackendName): Promise<Backend> {
  if (name === 'webgpu') {
    const mod = await importOrExplain(name, () => import('@longseq/backend-webgpu'));
    return wrapCreation(name, () => mod.createWebGpuBackend());
  }
  const mode = name.slice('gpujs-'.length) as 'webgpu' | 'webasm' | 'cpu';
  const mod = await importOrExplain(name, () => import('@longseq/backend-gpujs'));
  return wrapCreation(name, () => mod.createGpuJsBackend({ mode }));
}

async function importOrExplain<T>(name: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    const pkg = name === 'webgpu' ? 'webgpu' : 'gpu.js';
    throw new BackendUnavailableError(
      name,
      `could not load its package (is ${pkg} installed?): ${messageText(err)}`,
    );
  }
}

async function wrapCreation(name: string, create: () => Backend | Promise<Backend>): Promise<Backend> {
  try {
    return await create();
  } catch (err) {
    if (err instanceof LongseqError) throw err;
    throw new BackendUnavailableError(name, messageText(err));
  }
}

function messageText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export interface Timing {
  /** Wall-clock milliseconds from the first submit to the queue draining. */
  readonly wallMs: number;
  /** GPU milliseconds from timestamp queries, when the backend has them. */
  readonly gpuMs?: number;
}

interface TimedBackend {
  time(fn: () => Promise<unknown>): Promise<Timing>;
}

function hasTime(backend: Backend): backend is Backend & TimedBackend {
  return typeof (backend as Partial<TimedBackend>).time === 'function';
}

/**
 * Times `fn` (which queues work) until the device is idle. With timer 'auto', uses the
 * backend's own `time()` (WebGPU: timestamp queries) when it has one; else (or with 'wall')
 * wall clock around `fn` and `sync()`.
 * The queue is drained first so earlier work is not counted.
 */
export async function timeWork(
  backend: Backend,
  fn: () => Promise<unknown>,
  timer: 'auto' | 'wall' = 'auto',
): Promise<Timing> {
  await backend.sync();
  if (timer === 'auto' && hasTime(backend)) return backend.time(fn);
  const start = performance.now();
  await fn();
  await backend.sync();
  return { wallMs: performance.now() - start };
}

/** Facts about the device behind a backend, as far as the backend exposes them. */
export function describeAdapter(backend: Backend): Record<string, string> | undefined {
  const info = (backend as { adapterInfo?: unknown }).adapterInfo;
  if (info === null || typeof info !== 'object') return undefined;
  // GPUAdapterInfo keeps its fields on the prototype, so copy the known names explicitly.
  const out: Record<string, string> = {};
  for (const key of ['vendor', 'architecture', 'device', 'description', 'backend', 'type']) {
    const v = (info as Record<string, unknown>)[key];
    if (v !== undefined && v !== '') out[key] = String(v);
  }
  for (const [k, v] of Object.entries(info)) {
    if (!(k in out) && v !== '' && v !== undefined && typeof v !== 'object') out[k] = String(v);
  }
  return out;
}
