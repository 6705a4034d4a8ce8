/**
 * The float64 reference of Mamba's selective scan (S6), written to be read. Same semantics
 * and shapes as mamba_ssm's `selective_scan_ref` / `selective_scan_fn`, plus an initial state.
 *
 * Letters (one meaning each):
 *   batch   sequences in the batch
 *   d       channels (Mamba's d_inner)
 *   L       sequence length (time steps)
 *   n       state size per channel (d_state)
 *   g       groups of channels sharing one B (or C); channel c uses group floor(c / (d / g))
 *
 * Shapes:
 *   u, delta       [batch, d, L]      input and the step size dt (before bias / softplus)
 *   A              [d, n]             the continuous diagonal state matrix (negative in Mamba)
 *   B, C           [batch, n, L]      input-dependent (selective), shared by all channels, or
 *                  [batch, g, n, L]   grouped, or
 *                  [d, n]             time-invariant (S4-style)
 *   D              [d]                skip connection
 *   z              [batch, d, L]      gate: y * silu(z)
 *   deltaBias      [d]                added to delta before the softplus
 *   initialState   [batch, d, n]      h before step 0 (zeros when absent)
 *   y              [batch, d, L]
 *   lastState      [batch, d, n]      h after step L - 1
 *
 * For every (batch b, channel c), with h a vector of n states:
 *
 *   dt_t   = softplus(delta[b,c,t] + deltaBias[c])      (softplus only with deltaSoftplus)
 *   dA_t   = exp(dt_t * A[c,:])                          Mamba's discretization of A (ZOH)
 *   dBu_t  = dt_t * B_t[:] * u[b,c,t]                    ... of B (Euler: Mamba's simplification)
 *   h_t    = dA_t * h_{t-1} + dBu_t                      elementwise over the n states
 *   y_t    = sum_s C_t[s] * h_t[s] + D[c] * u[b,c,t]
 *   y_t    = y_t * silu(z[b,c,t])                        (with z)
 *
 * softplus(x) = x for x > 20, else log(1 + e^x): PyTorch's threshold, which mamba uses.
 */
import type { HostTensor, RefOptions, RefResult, Rounder } from '@longseq/backend';
import { rounderFor } from '@longseq/backend';

export interface SelectiveScanRefOptions extends RefOptions {
  readonly D?: HostTensor;
  readonly z?: HostTensor;
  readonly deltaBias?: HostTensor;
  readonly deltaSoftplus?: boolean;
  readonly initialState?: HostTensor;
  readonly returnLastState?: boolean;
}

export interface SelectiveScanRefResult {
  readonly y: RefResult;
  /** Present when `returnLastState` is set. */
  readonly lastState?: RefResult;
}

/** PyTorch's softplus with mamba's threshold: x itself past 20, else log(1 + e^x). */
export function softplusRef(x: number, r: Rounder = (v) => v): number {
  return x > 20 ? x : r(Math.log1p(r(Math.exp(x))));
}

/** silu(z) = z * sigmoid(z). */
export function siluRef(z: number, r: Rounder = (v) => v): number {
  return r(z * r(1 / r(1 + r(Math.exp(-z)))));
}

/**
 * Mamba's discretization of one (state, time step): dA = exp(dt * a), dBu = dt * b * u.
 * (A is discretized with zero-order hold; B with the simpler Euler rule, as in mamba_ssm.)
 * The product is formed as (dt * u) * b, the order the kernels use. The same formulas as
 * @longseq/ssm-discretize's `mamba` method (a test checks they agree); written out here for
 * the float32-rounded baseline, and because mamba takes any dt (ssm-discretize wants dt > 0).
 */
export function mambaDiscretize(
  dt: number,
  a: number,
  b: number,
  u: number,
  r: Rounder = (v) => v,
): { dA: number; dBu: number } {
  return { dA: r(Math.exp(r(dt * a))), dBu: r(r(dt * u) * b) };
}

/**
 * Where B (or C) for (batch, channel, state, time) lives in its flat array, per layout.
 * Returns a function of (b, c, s, t) -> flat index.
 */
export function scanOperandIndexer(
  shape: readonly number[],
  d: number,
  n: number,
  L: number,
): (b: number, c: number, s: number, t: number) => number {
  if (shape.length === 2) return (_b, c, s) => c * n + s;
  const g = shape.length === 3 ? 1 : shape[1]!;
  const perGroup = d / g;
  return (b, c, s, t) => ((b * g + Math.floor(c / perGroup)) * n + s) * L + t;
}

/** The selective scan in float64 (or float32-rounded with `precision: 'f32'`), one step at a time. */
export function selectiveScanRef(
  u: HostTensor,
  delta: HostTensor,
  A: HostTensor,
  B: HostTensor,
  C: HostTensor,
  options: SelectiveScanRefOptions = {},
): SelectiveScanRefResult {
  const r = rounderFor(options);
  const [batch, d, L] = u.shape as [number, number, number];
  const n = A.shape[1]!;
  const bAt = scanOperandIndexer(B.shape, d, n, L);
  const cAt = scanOperandIndexer(C.shape, d, n, L);
  const y = new Float64Array(batch * d * L);
  const lastState = new Float64Array(batch * d * n);
  const h = new Float64Array(n);

  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < d; c++) {
      const row = (b * d + c) * L;
      for (let s = 0; s < n; s++) {
        h[s] = options.initialState ? options.initialState.data[(b * d + c) * n + s]! : 0;
      }
      for (let t = 0; t < L; t++) {
        let dt = delta.data[row + t]!;
        if (options.deltaBias) dt = r(dt + options.deltaBias.data[c]!);
        if (options.deltaSoftplus) dt = softplusRef(dt, r);
        const x = u.data[row + t]!;
        let out = 0;
        for (let s = 0; s < n; s++) {
          const { dA, dBu } = mambaDiscretize(dt, A.data[c * n + s]!, B.data[bAt(b, c, s, t)]!, x, r);
          h[s] = r(r(dA * h[s]!) + dBu);
          out = r(out + r(C.data[cAt(b, c, s, t)]! * h[s]!));
        }
        if (options.D) out = r(out + r(options.D.data[c]! * x));
        if (options.z) out = r(out * siluRef(options.z.data[row + t]!, r));
        y[row + t] = out;
      }
      for (let s = 0; s < n; s++) lastState[(b * d + c) * n + s] = h[s]!;
    }
  }
  return {
    y: { shape: [batch, d, L], data: y },
    ...(options.returnLastState ? { lastState: { shape: [batch, d, n], data: lastState } } : {}),
  };
}

/**
 * A step of the recurrence h -> a * h + b as a pair (a, b). Running (a1, b1) and then
 * (a2, b2) is the single step (a1 * a2, a2 * b1 + b2): the operator is associative, which is
 * what lets a parallel scan combine partial results in any tree shape.
 */
export interface ScanPair {
  readonly a: number;
  readonly b: number;
}

/** (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2). */
export function combineScanPairs(first: ScanPair, second: ScanPair, r: Rounder = (v) => v): ScanPair {
  return { a: r(first.a * second.a), b: r(r(second.a * first.b) + second.b) };
}

/** Every h_t of h_t = a_t h_{t-1} + b_t from h_{-1} = h0, one step at a time. */
export function sequentialScanRef(pairs: readonly ScanPair[], h0 = 0): Float64Array {
  const out = new Float64Array(pairs.length);
  let h = h0;
  for (let t = 0; t < pairs.length; t++) {
    h = pairs[t]!.a * h + pairs[t]!.b;
    out[t] = h;
  }
  return out;
}

/**
 * The same h_t computed the way the parallel kernels do: cut the steps into chunks, reduce
 * each chunk to one pair, scan the chunk pairs to get the state entering each chunk (the
 * carry), then replay each chunk from its carry. Equal to `sequentialScanRef` up to rounding.
 */
export function chunkedScanRef(pairs: readonly ScanPair[], chunkLength: number, h0 = 0): Float64Array {
  const chunks = Math.ceil(pairs.length / chunkLength);
  const summaries: ScanPair[] = [];
  for (let k = 0; k < chunks; k++) {
    let acc: ScanPair = { a: 1, b: 0 };
    for (let t = k * chunkLength; t < Math.min((k + 1) * chunkLength, pairs.length); t++) {
      acc = combineScanPairs(acc, pairs[t]!);
    }
    summaries.push(acc);
  }
  const out = new Float64Array(pairs.length);
  let carry = h0;
  for (let k = 0; k < chunks; k++) {
    let h = carry;
    for (let t = k * chunkLength; t < Math.min((k + 1) * chunkLength, pairs.length); t++) {
      h = pairs[t]!.a * h + pairs[t]!.b;
      out[t] = h;
    }
    carry = summaries[k]!.a * carry + summaries[k]!.b;
  }
  return out;
}

/**
 * Hillis-Steele inclusive scan of pairs: at level k, element i combines with element
 * i - 2^k. Returns every level (level 0 is the input), so the playground can draw which
 * partial results combine where; the last level's b's are the states from h0 = 0.
 */
export function hillisSteeleLevels(pairs: readonly ScanPair[]): ScanPair[][] {
  const levels: ScanPair[][] = [pairs.slice()];
  for (let offset = 1; offset < pairs.length; offset *= 2) {
    const prev = levels[levels.length - 1]!;
    levels.push(prev.map((p, i) => (i >= offset ? combineScanPairs(prev[i - offset]!, p) : p)));
  }
  return levels;
}
