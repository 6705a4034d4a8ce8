/** Random selective-scan problems and the float64 / float32 references they are checked against. */
import type { Backend, HostTensor, Tensor } from '@longseq/backend';
import { type Rng, randomFloats } from '@longseq/test-harness';
import {
  type ScanAlgorithm,
  type SelectiveScanOptions,
  type SelectiveScanRefOptions,
  selectiveScanRef,
} from '../src';

/** B or C: 'shared' [batch, n, L], 'grouped' [batch, g, n, L], 'invariant' [d, n]. */
export type Layout = 'shared' | 'grouped' | 'invariant';

export interface ScanCase {
  readonly batch: number;
  readonly d: number;
  readonly L: number;
  readonly n: number;
  readonly bLayout?: Layout;
  readonly cLayout?: Layout;
  /** Groups for the grouped layout (must divide d). */
  readonly groups?: number;
  readonly D?: boolean;
  readonly z?: boolean;
  readonly deltaBias?: boolean;
  readonly deltaSoftplus?: boolean;
  readonly initialState?: boolean;
  readonly returnLastState?: boolean;
}

export interface HostProblem {
  readonly u: HostTensor;
  readonly delta: HostTensor;
  readonly A: HostTensor;
  readonly B: HostTensor;
  readonly C: HostTensor;
  readonly D?: HostTensor;
  readonly z?: HostTensor;
  readonly deltaBias?: HostTensor;
  readonly initialState?: HostTensor;
}

function operandShape(layout: Layout, c: ScanCase): number[] {
  if (layout === 'invariant') return [c.d, c.n];
  if (layout === 'grouped') return [c.batch, c.groups ?? 1, c.n, c.L];
  return [c.batch, c.n, c.L];
}

function host(shape: number[], random: Rng, min: number, max: number): HostTensor {
  return {
    shape,
    data: randomFloats(
      shape.reduce((a, b) => a * b, 1),
      random,
      min,
      max,
    ),
  };
}

/**
 * Values in Mamba's ranges: A negative (A = -exp(A_log)), dt small and positive (or raw
 * values around softplus' bend when deltaSoftplus is on), u, B, C, z of order one.
 */
export function randomProblem(c: ScanCase, random: Rng): HostProblem {
  const x = [c.batch, c.d, c.L];
  return {
    u: host(x, random, -1, 1),
    delta: c.deltaSoftplus ? host(x, random, -4, 1) : host(x, random, 0.01, 0.5),
    A: host([c.d, c.n], random, -2, -0.1),
    B: host(operandShape(c.bLayout ?? 'shared', c), random, -1, 1),
    C: host(operandShape(c.cLayout ?? 'shared', c), random, -1, 1),
    ...(c.D ? { D: host([c.d], random, -1, 1) } : {}),
    ...(c.z ? { z: host(x, random, -3, 3) } : {}),
    ...(c.deltaBias ? { deltaBias: host([c.d], random, -1, 1) } : {}),
    ...(c.initialState ? { initialState: host([c.batch, c.d, c.n], random, -1, 1) } : {}),
  };
}

export function refOptions(c: ScanCase, p: HostProblem): SelectiveScanRefOptions {
  return {
    D: p.D,
    z: p.z,
    deltaBias: p.deltaBias,
    deltaSoftplus: c.deltaSoftplus,
    initialState: p.initialState,
    returnLastState: c.returnLastState,
  };
}

export function references(c: ScanCase, p: HostProblem) {
  const options = refOptions(c, p);
  return {
    ref64: selectiveScanRef(p.u, p.delta, p.A, p.B, p.C, options),
    ref32: selectiveScanRef(p.u, p.delta, p.A, p.B, p.C, { ...options, precision: 'f32' }),
  };
}

/** Uploads a problem; `dispose()` frees every tensor it made. */
export function upload(backend: Backend, p: HostProblem) {
  const made: Tensor[] = [];
  const up = (h: HostTensor | undefined) => {
    if (!h) return undefined;
    const t = backend.tensor(h.data, h.shape);
    made.push(t);
    return t;
  };
  return {
    u: up(p.u)!,
    delta: up(p.delta)!,
    A: up(p.A)!,
    B: up(p.B)!,
    C: up(p.C)!,
    D: up(p.D),
    z: up(p.z),
    deltaBias: up(p.deltaBias),
    initialState: up(p.initialState),
    dispose: () => {
      for (const t of made) t.dispose();
    },
  };
}

export function scanOptions(
  c: ScanCase,
  t: ReturnType<typeof upload>,
  algorithm: ScanAlgorithm,
): SelectiveScanOptions {
  return {
    D: t.D,
    z: t.z,
    deltaBias: t.deltaBias,
    deltaSoftplus: c.deltaSoftplus,
    initialState: t.initialState,
    returnLastState: c.returnLastState,
    algorithm,
  };
}

export function describeCase(c: ScanCase): string {
  const flags = ['D', 'z', 'deltaBias', 'deltaSoftplus', 'initialState', 'returnLastState'].filter(
    (k) => c[k as keyof ScanCase],
  );
  return `b${c.batch} d${c.d} L${c.L} n${c.n} B:${c.bLayout ?? 'shared'} C:${c.cLayout ?? 'shared'}${c.groups ? ` g${c.groups}` : ''}${flags.length ? ` +${flags.join('+')}` : ''}`;
}
