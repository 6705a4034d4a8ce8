import {
  ArgumentError,
  allocTypedArray,
  BackendBase,
  type BackendLimits,
  DeviceLimitError,
  DeviceLostError,
  type DType,
  type Program,
  type Tensor,
  type TypedArray,
  ValidationError,
  type WebGpuProgram,
  type WgslBinding,
  webgpuProgramKey,
  wgslHeader,
} from '@longseq/backend';
import { BufferPool, sizeClass } from './pool';

/**
 * The spec's numeric flags, written out so this module works before (or without) the
 * GPUBufferUsage / GPUMapMode globals being installed, e.g. with a `gpu` object passed in.
 */
const USAGE = {
  MAP_READ: 0x1,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;
const MAP_READ = 0x1;
const STAGE_COMPUTE = 0x4;
const TENSOR_USAGE = USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST;

/** Uniform data of one batch of dispatches, written with one writeBuffer at submit. */
const UNIFORM_ARENA_BYTES = 32 * 1024;
/** Timestamp queries per batch (two per compute pass). */
const QUERY_CAPACITY = 256;

/** The device handle behind a WebGPU tensor. */
export interface WebGpuHandle {
  readonly buffer: GPUBuffer;
  /** The buffer's size class (its real size), which may exceed the tensor's bytes. */
  readonly capacity: number;
  /** Which device generation made it: a handle from a lost device is dead. */
  readonly epoch: number;
}

/** Counters that prove caching and pooling in tests and benchmarks. */
export interface WebGpuStats {
  readonly pipelinesCompiled: number;
  readonly pipelineCacheHits: number;
  readonly dispatches: number;
  readonly submits: number;
  /** Buffers waiting in the free pool now. */
  readonly pooledBuffers: number;
  /** GPUBuffers created for tensors (pool misses). */
  readonly buffersCreated: number;
  /** Tensor allocations served from the pool. */
  readonly bufferReuses: number;
}

export interface TimingResult {
  /** Wall-clock milliseconds from the start of `fn` until its GPU work finished. */
  readonly wallMs: number;
  /** Summed GPU duration of the compute passes recorded inside `fn`; undefined without 'timestamp-query'. */
  readonly gpuMs: number | undefined;
}

export interface WebGpuDebug {
  /** Print the final WGSL (header + source) of every program when it is compiled. */
  dumpWgsl: boolean;
  /** Where dumps go; console.log by default. */
  log: (message: string) => void;
}

export interface WebGpuAdapterInfo {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
}

/** A device and what is known about the adapter it came from. */
export interface AcquiredDevice {
  readonly device: GPUDevice;
  readonly adapterInfo: WebGpuAdapterInfo;
  /** Smallest subgroup size the adapter reports, 0 when unknown. */
  readonly subgroupMinSize: number;
  /** Whether dispose() destroys the device (false for a device the caller passed in). */
  readonly owned: boolean;
}

export interface WebGpuBackendConfig {
  /** Gets a fresh device for recreateDevice(); absent when the backend cannot make one. */
  readonly reacquire?: () => Promise<AcquiredDevice>;
  /** Bytes the free-buffer pool may hold. Default 512 MiB. */
  readonly maxPoolBytes?: number;
  /** Dispatches recorded into one command encoder before it is submitted. Default 48. */
  readonly maxBatch?: number;
}

interface PipelineEntry {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  /** Set when compilation failed: later runs of the same program throw it without recording. */
  error?: ValidationError;
}

interface TimingState {
  readonly readbacks: Promise<number>[];
}

const FEATURES_REPORTED = ['subgroups', 'timestamp-query', 'shader-f16'] as const;

/** WGSL `enable` names and the device features that allow them. */
function featureForExtension(extension: string): string {
  if (extension === 'f16') return 'shader-f16';
  return extension.replace(/_/g, '-');
}

function readEnv(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name];
}

/**
 * The WebGPU backend: tensors are GPUBuffers (pooled by size class), programs are WGSL
 * compute pipelines (cached by `webgpuProgramKey`), and dispatches are recorded into one
 * command encoder that is submitted every `maxBatch` dispatches or when a result is read.
 */
export class WebGpuBackend extends BackendBase {
  readonly kind = 'webgpu' as const;
  readonly name = 'webgpu';
  limits!: BackendLimits;
  features!: ReadonlySet<string>;
  /** The current GPUDevice. Replaced by recreateDevice(). */
  device!: GPUDevice;
  adapterInfo!: WebGpuAdapterInfo;
  readonly debug: WebGpuDebug = {
    dumpWgsl: readEnv('LONGSEQ_DUMP_WGSL') === '1',
    log: (message) => console.log(message),
  };

  private epoch = 0;
  private owned = false;
  private lost: { reason: string; message: string } | undefined;
  private readonly reacquire: (() => Promise<AcquiredDevice>) | undefined;
  private readonly maxPoolBytes: number;
  private readonly maxBatch: number;

  private pipelines = new Map<string, PipelineEntry>();
  /** Set while a new pipeline compiles; runs, reads and syncs issued meanwhile wait for it. */
  private compiling: Promise<void> | undefined;
  private layouts = new Map<string, GPUBindGroupLayout>();
  private pool!: BufferPool;
  private readPool!: BufferPool;
  private uniformBuffer!: GPUBuffer;
  private readonly uniformArena = new ArrayBuffer(UNIFORM_ARENA_BYTES);
  private readonly uniformView = new DataView(this.uniformArena);
  private uniformUsed = 0;
  private uniformAlign = 256;

  private encoder: GPUCommandEncoder | undefined;
  private pendingDispatches = 0;
  private batchNames = new Set<string>();
  /** Buffers to destroy once the encoder that may still use them has been submitted. */
  private doomed: GPUBuffer[] = [];
  /** Error scopes of submitted batches, and errors no scope caught; surfaced at the next sync or read. */
  private pendingErrors: Promise<ValidationError | undefined>[] = [];
  private uncaptured: ValidationError[] = [];

  private timing: TimingState | undefined;
  private querySet: GPUQuerySet | undefined;
  private queryResolve: GPUBuffer | undefined;
  private queriesUsed = 0;

  private counters = {
    pipelinesCompiled: 0,
    pipelineCacheHits: 0,
    dispatches: 0,
    submits: 0,
    buffersCreated: 0,
    bufferReuses: 0,
  };

  constructor(acquired: AcquiredDevice, config: WebGpuBackendConfig = {}) {
    super();
    this.reacquire = config.reacquire;
    this.maxPoolBytes = config.maxPoolBytes ?? 512 * 1024 * 1024;
    this.maxBatch = Math.max(1, config.maxBatch ?? 48);
    this.install(acquired);
  }

  /** Counters since the backend was made (pipelines and buffers reset with recreateDevice()). */
  stats(): WebGpuStats {
    return { ...this.counters, pooledBuffers: this.pool.count };
  }

  /** The GPUBuffer behind a tensor, for interop with other WebGPU code. Its size may exceed the tensor's bytes. */
  gpuBuffer(t: Tensor): GPUBuffer {
    this.assertOwn(t, 'tensor');
    return this.liveHandle(t.handle, t.id).buffer;
  }

  /** Destroys the buffers waiting in the pool (memory returns to the driver). */
  emptyPool(): void {
    this.deferDestroy(this.pool.drain());
    this.deferDestroy(this.readPool.drain());
    if (!this.encoder) this.destroyDoomed();
  }

  /**
   * Gets a fresh device after a loss (or on purpose). Tensors made on the old device throw
   * DeviceLostError when used and should be disposed; new ones work.
   */
  async recreateDevice(): Promise<void> {
    this.assertUsable();
    if (!this.reacquire) {
      throw new DeviceLostError(
        this.name,
        'recreateDevice() needs a GPU or adapter to ask; the backend was given only a device',
      );
    }
    const acquired = await this.reacquire();
    const old = this.device;
    const oldOwned = this.owned;
    this.encoder = undefined;
    this.install(acquired);
    if (oldOwned) old.destroy();
  }

  /**
   * Runs `fn` and measures it: wall time until its GPU work finished, and (with
   * 'timestamp-query') the summed GPU time of the compute passes it recorded.
   */
  async time(fn: () => unknown): Promise<TimingResult> {
    if (this.timing) throw new ArgumentError('time', 'no nested time() calls', 'a time() already running');
    await this.sync();
    const withQueries = this.features.has('timestamp-query');
    const state: TimingState = { readbacks: [] };
    this.timing = state;
    this.queriesUsed = 0;
    const start = performance.now();
    try {
      await fn();
      await this.sync();
    } finally {
      this.flush();
      this.timing = undefined;
    }
    const wallMs = performance.now() - start;
    if (!withQueries) return { wallMs, gpuMs: undefined };
    const ns = await Promise.all(state.readbacks);
    return { wallMs, gpuMs: ns.reduce((a, b) => a + b, 0) / 1e6 };
  }

  async sync(): Promise<void> {
    this.assertUsable();
    while (this.compiling) await this.compiling;
    this.assertDevice();
    const device = this.device;
    this.flush();
    try {
      await device.queue.onSubmittedWorkDone();
    } catch (err) {
      await this.lostOr(device, err);
    }
    this.assertDevice();
    await this.surfaceErrors();
  }

  // ---- BackendBase primitives ----

  protected allocate(bytes: number, _dtype: DType, _size: number): WebGpuHandle {
    this.assertDevice();
    const capacity = sizeClass(bytes, this.limits.maxBufferSize);
    const pooled = this.pool.take(capacity);
    if (pooled) {
      this.counters.bufferReuses++;
      return { buffer: pooled, capacity, epoch: this.epoch };
    }
    this.counters.buffersCreated++;
    return {
      buffer: this.device.createBuffer({ size: capacity, usage: TENSOR_USAGE }),
      capacity,
      epoch: this.epoch,
    };
  }

  protected upload(data: TypedArray, _dtype: DType): WebGpuHandle {
    this.assertDevice();
    const bytes = data.byteLength;
    const capacity = sizeClass(bytes, this.limits.maxBufferSize);
    const pooled = this.pool.take(capacity);
    if (pooled) {
      this.counters.bufferReuses++;
      if (bytes > 0) {
        // writeBuffer runs at the next submit *before* commands still in the encoder; a
        // pooled buffer may be read by one of those, so submit them first.
        this.flush();
        this.device.queue.writeBuffer(pooled, 0, data.buffer, data.byteOffset, bytes);
      }
      return { buffer: pooled, capacity, epoch: this.epoch };
    }
    // A new buffer has no pending readers: fill it through a mapping, no queue ordering involved.
    this.counters.buffersCreated++;
    const buffer = this.device.createBuffer({ size: capacity, usage: TENSOR_USAGE, mappedAtCreation: true });
    if (bytes > 0) {
      new Uint8Array(buffer.getMappedRange(0, bytes)).set(
        new Uint8Array(data.buffer, data.byteOffset, bytes),
      );
    }
    buffer.unmap();
    return { buffer, capacity, epoch: this.epoch };
  }

  protected async download(handle: unknown, dtype: DType, size: number): Promise<TypedArray> {
    while (this.compiling) await this.compiling;
    this.assertDevice();
    const h = this.liveHandle(handle);
    const bytes = size * 4;
    if (bytes === 0) return allocTypedArray(dtype, 0);
    const device = this.device;
    const capacity = sizeClass(bytes, this.limits.maxBufferSize);
    const staging =
      this.readPool.take(capacity) ??
      device.createBuffer({
        size: capacity,
        usage: USAGE.MAP_READ | USAGE.COPY_DST,
        label: 'longseq readback',
      });
    const epoch = this.epoch;
    this.encoderFor().copyBufferToBuffer(h.buffer, 0, staging, 0, bytes);
    this.flush();
    try {
      await staging.mapAsync(MAP_READ, 0, bytes);
    } catch (err) {
      await this.lostOr(device, err);
    }
    const out = allocTypedArray(dtype, size);
    new Uint8Array(out.buffer).set(new Uint8Array(staging.getMappedRange(0, bytes)));
    staging.unmap();
    if (epoch !== this.epoch) staging.destroy();
    else for (const b of this.readPool.give(staging, capacity)) b.destroy();
    this.assertDevice();
    await this.surfaceErrors();
    return out;
  }

  protected free(handle: unknown): void {
    const h = handle as WebGpuHandle;
    // Buffers of a lost device are dead; and after dispose() nothing is pooled.
    if (h.epoch !== this.epoch || this.lost || this.isDisposed) return;
    const unpooled = this.pool.give(h.buffer, h.capacity);
    if (unpooled.length === 0) return;
    // Evicted (or too large to pool). One still used by the unsubmitted encoder must outlive its submit.
    if (this.encoder) this.deferDestroy(unpooled);
    else for (const b of unpooled) b.destroy();
  }

  protected async execute(program: Program): Promise<void> {
    // A run issued while a new pipeline compiles waits for it, so dispatches are recorded in
    // the order they were issued.
    while (this.compiling) await this.compiling;
    this.assertDevice();
    const p = program as WebGpuProgram;
    this.checkEnables(p);
    for (const b of [...p.inputs, ...p.outputs]) this.checkBinding(p, b);
    if (p.dispatch.some((d) => d === 0)) return;
    const maxDim = this.limits.maxWorkgroupsPerDimension;
    for (const d of p.dispatch) {
      if (d > maxDim)
        throw new DeviceLimitError(`${p.name} dispatch`, 'maxComputeWorkgroupsPerDimension', d, maxDim);
    }
    const key = webgpuProgramKey(p);
    const cached = this.pipelines.get(key);
    if (cached) {
      if (cached.error) throw cached.error;
      this.counters.pipelineCacheHits++;
      this.record(p, cached);
      return;
    }
    let compiled!: () => void;
    this.compiling = new Promise((resolve) => {
      compiled = resolve;
    });
    try {
      await this.compileAndRun(p, key);
    } finally {
      this.compiling = undefined;
      compiled();
    }
  }

  /**
   * Compiles a new pipeline and runs its first dispatch. Compilation is asynchronous
   * (createComputePipelineAsync) so a slow shader compiler (SwiftShader takes tens of seconds
   * for large kernels) never blocks the JavaScript event loop; Dawn compiles off the main
   * thread. The first dispatch runs in a submit of its own, inside its own error scope, so a
   * program that fails cannot invalidate a batch of good dispatches recorded with it.
   */
  private async compileAndRun(p: WebGpuProgram, key: string): Promise<void> {
    this.flush();
    const device = this.device;
    const code = `${wgslHeader(p)}\n${p.source}`;
    if (this.debug.dumpWgsl) this.debug.log(`// ---- WGSL of ${p.name} (${key})\n${code}`);
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ code, label: p.name });
    const hasUniforms = (p.uniforms?.length ?? 0) > 0;
    const layout = this.bindGroupLayout(p.inputs.length, p.outputs.length, hasUniforms);
    const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [layout], label: p.name });
    const moduleError = device.popErrorScope();
    let pipeline: GPUComputePipeline | undefined;
    let pipelineError: unknown;
    try {
      pipeline = await device.createComputePipelineAsync({
        label: p.name,
        layout: pipelineLayout,
        compute: { module, entryPoint: p.entryPoint ?? 'main' },
      });
    } catch (err) {
      pipelineError = err;
    }
    const [moduleFailure, info] = await Promise.all([
      moduleError.catch(() => null),
      module.getCompilationInfo().catch(() => null),
    ]);
    // The device may have been lost (or recreated) while the compiler ran.
    this.assertDevice();
    this.counters.pipelinesCompiled++;
    const messages = (info?.messages ?? [])
      .filter((m) => m.type === 'error')
      .map((m) => `WGSL line ${m.lineNum}:${m.linePos}: ${m.message}`);
    if (!pipeline || moduleFailure || messages.length > 0) {
      const reason =
        messages.length > 0
          ? messages.join('\n')
          : (moduleFailure?.message ??
            (pipelineError instanceof Error ? pipelineError.message : String(pipelineError)));
      const error = new ValidationError(p.name, reason);
      this.pipelines.set(key, { pipeline: undefined as never, layout, error });
      throw error;
    }
    const entry: PipelineEntry = { pipeline, layout };
    this.pipelines.set(key, entry);
    // Errors of this dispatch (bad bindings) fail this run, but do not mark the pipeline as broken.
    device.pushErrorScope('validation');
    this.record(p, entry, false);
    this.flush(false);
    const ran = await device.popErrorScope().catch(() => null);
    if (ran) throw new ValidationError(p.name, ran.message);
  }

  protected destroyDevice(): void {
    this.encoder = undefined;
    for (const b of [...this.pool.drain(), ...this.readPool.drain(), ...this.doomed]) b.destroy();
    this.doomed = [];
    this.uniformBuffer.destroy();
    this.querySet?.destroy();
    this.queryResolve?.destroy();
    if (this.owned) this.device.destroy();
  }

  // ---- internals ----

  private install(acquired: AcquiredDevice): void {
    const { device } = acquired;
    this.epoch++;
    const epoch = this.epoch;
    this.device = device;
    this.owned = acquired.owned;
    this.adapterInfo = acquired.adapterInfo;
    this.lost = undefined;
    this.pipelines = new Map();
    this.layouts = new Map();
    this.pool = new BufferPool(this.maxPoolBytes);
    this.readPool = new BufferPool(64 * 1024 * 1024);
    this.doomed = [];
    this.pendingErrors = [];
    this.uncaptured = [];
    this.pendingDispatches = 0;
    this.batchNames = new Set();
    this.uniformUsed = 0;
    this.querySet = undefined;
    this.queryResolve = undefined;
    this.queriesUsed = 0;

    const l = device.limits;
    const features = new Set<string>(['workgroup-memory']);
    for (const f of FEATURES_REPORTED) if (device.features.has(f)) features.add(f);
    this.features = features;
    this.limits = {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxWorkgroupInvocations: l.maxComputeInvocationsPerWorkgroup,
      maxWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      subgroupSize: features.has('subgroups') ? acquired.subgroupMinSize : 0,
    };
    this.uniformAlign = l.minUniformBufferOffsetAlignment;
    this.uniformBuffer = device.createBuffer({
      size: UNIFORM_ARENA_BYTES,
      usage: USAGE.UNIFORM | USAGE.COPY_DST,
      label: 'longseq uniforms',
    });

    device.lost.then((info) => {
      if (this.epoch === epoch && !this.isDisposed)
        this.lost = { reason: info.reason, message: info.message };
    });
    device.addEventListener('uncapturederror', (event) => {
      if (this.epoch !== epoch) return;
      const e = (event as GPUUncapturedErrorEvent).error;
      this.uncaptured.push(new ValidationError('(uncaptured device error)', e.message));
    });
  }

  private assertDevice(): void {
    if (this.lost) {
      throw new DeviceLostError(
        this.name,
        `${this.lost.reason}${this.lost.message ? ` (${this.lost.message.trim()})` : ''}; call backend.recreateDevice()`,
      );
    }
  }

  /** The handle of a tensor that lives on the current device; throws DeviceLostError for one from a lost device. */
  private liveHandle(handle: unknown, id?: number): WebGpuHandle {
    const h = handle as WebGpuHandle;
    if (h.epoch !== this.epoch) {
      const which = id === undefined ? 'a tensor' : `tensor #${id}`;
      throw new DeviceLostError(
        this.name,
        `${which} was made on a device that has since been lost or replaced`,
      );
    }
    return h;
  }

  /** After a failed GPU call: a DeviceLostError if the device went away (the lost promise can lag a little), else the error. */
  private async lostOr(device: GPUDevice, err: unknown): Promise<never> {
    if (device === this.device && !this.lost) {
      await Promise.race([device.lost, new Promise((resolve) => setTimeout(resolve, 1000))]);
    }
    if (device !== this.device)
      throw new DeviceLostError(this.name, 'the device was replaced while this operation ran');
    this.assertDevice();
    throw err;
  }

  private checkEnables(p: WebGpuProgram): void {
    for (const e of p.enables ?? []) {
      const feature = featureForExtension(e);
      if (!this.device.features.has(feature)) {
        throw new ValidationError(
          p.name,
          `needs WGSL extension '${e}', but the device lacks feature '${feature}'`,
        );
      }
    }
  }

  private checkBinding(p: WebGpuProgram, b: WgslBinding): void {
    this.liveHandle(b.tensor.handle, b.tensor.id);
    const bytes = b.tensor.size * 4;
    if (bytes > this.limits.maxStorageBufferBindingSize) {
      throw new DeviceLimitError(
        `${p.name} binding ${b.name}`,
        'maxStorageBufferBindingSize (bytes)',
        bytes,
        this.limits.maxStorageBufferBindingSize,
      );
    }
  }

  private bindGroupLayout(inputs: number, outputs: number, uniforms: boolean): GPUBindGroupLayout {
    const key = `${inputs}/${outputs}/${uniforms}`;
    let layout = this.layouts.get(key);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = [];
      for (let i = 0; i < inputs; i++) {
        entries.push({ binding: i, visibility: STAGE_COMPUTE, buffer: { type: 'read-only-storage' } });
      }
      for (let i = 0; i < outputs; i++) {
        entries.push({ binding: inputs + i, visibility: STAGE_COMPUTE, buffer: { type: 'storage' } });
      }
      if (uniforms)
        entries.push({ binding: inputs + outputs, visibility: STAGE_COMPUTE, buffer: { type: 'uniform' } });
      // An explicit layout (not 'auto') so bindings a shader leaves unused still bind.
      layout = this.device.createBindGroupLayout({ entries, label: `longseq ${key}` });
      this.layouts.set(key, layout);
    }
    return layout;
  }

  private encoderFor(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder({ label: 'longseq batch' });
    return this.encoder;
  }

  /** Records one dispatch (one compute pass, so each can carry its own timestamps). */
  private record(p: WebGpuProgram, entry: PipelineEntry, autoFlush = true): void {
    const uniforms = p.uniforms ?? [];
    const uniformBytes = Math.ceil((uniforms.length * 4) / 16) * 16;
    let uniformOffset = Math.ceil(this.uniformUsed / this.uniformAlign) * this.uniformAlign;
    if (uniformBytes > 0 && uniformOffset + uniformBytes > UNIFORM_ARENA_BYTES) {
      this.flush();
      uniformOffset = 0;
    }
    if (this.timing && this.features.has('timestamp-query') && this.queriesUsed + 2 > QUERY_CAPACITY)
      this.flush();

    const entries: GPUBindGroupEntry[] = [];
    let binding = 0;
    for (const b of [...p.inputs, ...p.outputs]) {
      const h = b.tensor.handle as WebGpuHandle;
      // Bind the tensor's logical bytes (not the pooled capacity), at least one element of the WGSL type.
      const minBytes = b.elementType && b.elementType !== b.tensor.dtype ? 16 : 4;
      const size = Math.min(h.capacity, Math.max(b.tensor.size * 4, minBytes));
      entries.push({ binding: binding++, resource: { buffer: h.buffer, offset: 0, size } });
    }
    if (uniformBytes > 0) {
      const view = this.uniformView;
      uniforms.forEach((u, i) => {
        const at = uniformOffset + i * 4;
        if (u.type === 'f32') view.setFloat32(at, u.value, true);
        else if (u.type === 'i32') view.setInt32(at, u.value, true);
        else view.setUint32(at, u.value, true);
      });
      entries.push({
        binding,
        resource: { buffer: this.uniformBuffer, offset: uniformOffset, size: uniformBytes },
      });
      this.uniformUsed = uniformOffset + uniformBytes;
    }
    const bindGroup = this.device.createBindGroup({ layout: entry.layout, entries, label: p.name });

    const descriptor: GPUComputePassDescriptor = { label: p.name };
    if (this.timing && this.features.has('timestamp-query')) {
      this.querySet ??= this.device.createQuerySet({
        type: 'timestamp',
        count: QUERY_CAPACITY,
        label: 'longseq timing',
      });
      descriptor.timestampWrites = {
        querySet: this.querySet,
        beginningOfPassWriteIndex: this.queriesUsed,
        endOfPassWriteIndex: this.queriesUsed + 1,
      };
      this.queriesUsed += 2;
    }
    const pass = this.encoderFor().beginComputePass(descriptor);
    pass.setPipeline(entry.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(p.dispatch[0], p.dispatch[1], p.dispatch[2]);
    pass.end();
    this.counters.dispatches++;
    this.pendingDispatches++;
    this.batchNames.add(p.name);
    if (autoFlush && this.pendingDispatches >= this.maxBatch) this.flush();
  }

  /**
   * Submits the pending encoder. `scoped` wraps the submit in an error scope whose result
   * is surfaced at the next sync or read (execute's compile path uses its own scope).
   */
  private flush(scoped = true): void {
    const encoder = this.encoder;
    if (!encoder) return;
    this.encoder = undefined;
    const device = this.device;
    if (this.uniformUsed > 0) {
      // Runs before this submit's commands and after every earlier submit, so one arena serves every batch.
      device.queue.writeBuffer(this.uniformBuffer, 0, this.uniformArena, 0, this.uniformUsed);
      this.uniformUsed = 0;
    }
    let timestamps: { buffer: GPUBuffer; count: number } | undefined;
    if (this.timing && this.queriesUsed > 0 && this.querySet) {
      const count = this.queriesUsed;
      this.queryResolve ??= device.createBuffer({
        size: QUERY_CAPACITY * 8,
        usage: USAGE.QUERY_RESOLVE | USAGE.COPY_SRC,
        label: 'longseq timing resolve',
      });
      const target = device.createBuffer({ size: count * 8, usage: USAGE.MAP_READ | USAGE.COPY_DST });
      encoder.resolveQuerySet(this.querySet, 0, count, this.queryResolve, 0);
      encoder.copyBufferToBuffer(this.queryResolve, 0, target, 0, count * 8);
      timestamps = { buffer: target, count };
      this.queriesUsed = 0;
    }
    const names = [...this.batchNames].join(', ');
    if (scoped) device.pushErrorScope('validation');
    device.queue.submit([encoder.finish()]);
    if (scoped) {
      this.pendingErrors.push(
        device
          .popErrorScope()
          .then((e) => (e ? new ValidationError(names || '(copies)', e.message) : undefined))
          .catch(() => undefined),
      );
    }
    this.counters.submits++;
    this.pendingDispatches = 0;
    this.batchNames = new Set();
    // Mapping may only start after the submit that writes the buffer.
    if (timestamps) this.timing?.readbacks.push(sumPassDurations(timestamps.buffer, timestamps.count));
    this.destroyDoomed();
  }

  private deferDestroy(buffers: GPUBuffer[]): void {
    this.doomed.push(...buffers);
  }

  private destroyDoomed(): void {
    // Destroying after submit is safe: WebGPU keeps a buffer alive until submitted work using it is done.
    for (const b of this.doomed) b.destroy();
    this.doomed = [];
  }

  /** Throws the first validation error recorded since the last check. */
  private async surfaceErrors(): Promise<void> {
    const pending = this.pendingErrors;
    this.pendingErrors = [];
    const results = await Promise.all(pending);
    const first = results.find((e) => e !== undefined) ?? this.uncaptured[0];
    this.uncaptured = [];
    if (first) throw first;
  }
}

/** Maps the resolved timestamps and sums end - begin over the passes (nanoseconds). */
async function sumPassDurations(buffer: GPUBuffer, count: number): Promise<number> {
  try {
    await buffer.mapAsync(MAP_READ);
    const stamps = new BigInt64Array(buffer.getMappedRange());
    let total = 0;
    for (let i = 0; i + 1 < count; i += 2) {
      const d = Number(stamps[i + 1]! - stamps[i]!);
      // Timestamps may be reset or reordered by the driver; a negative span means "unknown", not time travel.
      if (d > 0) total += d;
    }
    buffer.unmap();
    return total;
  } finally {
    buffer.destroy();
  }
}
