/**
 * Free lists of GPU buffers by size class. Creating and destroying GPUBuffers is slow
 * (an allocation in the driver each time), and sequence models allocate the same few
 * sizes over and over, so freed buffers wait here for the next request of their class.
 */

/** The smallest buffer made: zero-sized tensors still need a bindable buffer, and vec4 bindings need 16 bytes. */
export const MIN_BUFFER_BYTES = 16;

function nextPow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(n));
}

/**
 * The capacity a request of `bytes` is rounded up to. Powers of two up to 4 KiB, then 8
 * classes per octave, so at most 12.5% of a large buffer is slack but nearby sizes (a
 * sequence that grows by one token) still share a class.
 */
export function sizeClass(bytes: number, maxBufferSize: number): number {
  const b = Math.max(bytes, MIN_BUFFER_BYTES);
  let cls: number;
  if (b <= 4096) cls = nextPow2(b);
  else {
    const step = nextPow2(b) / 8;
    cls = Math.ceil(b / step) * step;
  }
  // Rounding must never push a legal request past the device's limit.
  return cls > maxBufferSize ? Math.ceil(b / 4) * 4 : cls;
}

export class BufferPool {
  private readonly lists = new Map<number, GPUBuffer[]>();
  private pooledBytes = 0;
  private pooledCount = 0;

  constructor(private readonly maxBytes: number) {}

  get count(): number {
    return this.pooledCount;
  }

  get bytes(): number {
    return this.pooledBytes;
  }

  take(cls: number): GPUBuffer | undefined {
    const list = this.lists.get(cls);
    const buffer = list?.pop();
    if (buffer) {
      this.pooledBytes -= cls;
      this.pooledCount--;
    }
    return buffer;
  }

  /** Returns false when keeping the buffer would exceed the pool's byte budget; the caller then destroys it. */
  give(buffer: GPUBuffer, cls: number): boolean {
    if (this.pooledBytes + cls > this.maxBytes) return false;
    let list = this.lists.get(cls);
    if (!list) {
      list = [];
      this.lists.set(cls, list);
    }
    list.push(buffer);
    this.pooledBytes += cls;
    this.pooledCount++;
    return true;
  }

  /** Empties the pool, returning every buffer it held. */
  drain(): GPUBuffer[] {
    const all = [...this.lists.values()].flat();
    this.lists.clear();
    this.pooledBytes = 0;
    this.pooledCount = 0;
    return all;
  }
}
