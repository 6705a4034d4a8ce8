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

/**
 * Buffers wait in free lists by size class. When a buffer would take the pool over its byte
 * budget, the buffers pooled longest ago are evicted to make room: the sizes a program
 * allocates now are the ones it will ask for next, while classes left over from earlier
 * shapes would otherwise fill the budget for good and force every new allocation (and
 * Dawn's zero-fill of it) through the driver.
 */
export class BufferPool {
  private readonly lists = new Map<number, GPUBuffer[]>();
  /** Every pooled buffer with its class, oldest first (Map keeps insertion order). */
  private readonly order = new Map<GPUBuffer, number>();
  private pooledBytes = 0;

  constructor(private readonly maxBytes: number) {}

  get count(): number {
    return this.order.size;
  }

  get bytes(): number {
    return this.pooledBytes;
  }

  take(cls: number): GPUBuffer | undefined {
    const buffer = this.lists.get(cls)?.pop();
    if (buffer) {
      this.order.delete(buffer);
      this.pooledBytes -= cls;
    }
    return buffer;
  }

  /**
   * Pools `buffer`, evicting the oldest pooled buffers if needed. Returns the buffers the
   * caller must destroy: the evicted ones, or `buffer` itself when it alone exceeds the budget.
   */
  give(buffer: GPUBuffer, cls: number): GPUBuffer[] {
    if (cls > this.maxBytes) return [buffer];
    const evicted: GPUBuffer[] = [];
    for (const [old, oldCls] of this.order) {
      if (this.pooledBytes + cls <= this.maxBytes) break;
      this.order.delete(old);
      const list = this.lists.get(oldCls)!;
      list.splice(list.indexOf(old), 1);
      this.pooledBytes -= oldCls;
      evicted.push(old);
    }
    let list = this.lists.get(cls);
    if (!list) {
      list = [];
      this.lists.set(cls, list);
    }
    list.push(buffer);
    this.order.set(buffer, cls);
    this.pooledBytes += cls;
    return evicted;
  }

  /** Empties the pool, returning every buffer it held. */
  drain(): GPUBuffer[] {
    const all = [...this.order.keys()];
    this.lists.clear();
    this.order.clear();
    this.pooledBytes = 0;
    return all;
  }
}
