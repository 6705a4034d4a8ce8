/**
 * The SelectiveScan kernel contract: its name, its parsed attributes, how its inputs are
 * ordered and how its outputs are allocated, shared by the op and both backends' kernels.
 */
import {
  type Backend,
  type BackendKind,
  disposeOnError,
  type KernelConfig,
  type Tensor,
} from '@longseq/backend';

export const SelectiveScan = 'SelectiveScan';

/** 'sequential': a loop over time per channel; 'parallel': an associative (tree) scan over time. */
export type ScanAlgorithm = 'auto' | 'sequential' | 'parallel';

/** WebGPU's e^(dt A): 'fast' = hardware exp2 with a split argument, 'accurate' = a 1-ulp polynomial. */
export type ScanExp = 'auto' | 'fast' | 'accurate';

/**
 * How B or C is laid out: 'variable' = [batch, groups, n, L] (input-dependent, the 3-D
 * [batch, n, L] form is groups = 1), 'invariant' = [d, n] (the same at every step).
 */
export type ScanOperandLayout = 'variable' | 'invariant';

export interface SelectiveScanAttrs {
  readonly batch: number;
  /** Channels d, length L, states n. */
  readonly channels: number;
  readonly length: number;
  readonly states: number;
  readonly bLayout: ScanOperandLayout;
  /** Groups of B (1 for [batch, n, L] and for the invariant layout). */
  readonly bGroups: number;
  readonly cLayout: ScanOperandLayout;
  readonly cGroups: number;
  readonly hasD: boolean;
  readonly hasZ: boolean;
  readonly hasDeltaBias: boolean;
  readonly deltaSoftplus: boolean;
  readonly hasInitialState: boolean;
  readonly returnLastState: boolean;
  /** Resolved: never 'auto'. */
  readonly algorithm: 'sequential' | 'parallel';
  /** WebGPU: how e^(dt A) is computed; 'auto' probes the device's exp2 once (see the WebGPU kernel). */
  readonly exp: ScanExp;
  /** WebGPU parallel kernel: scan across threads with subgroup shuffles where the device has them. */
  readonly subgroups: boolean;
  /** WebGPU parallel kernel: segments per sequence scanned by separate workgroups ('auto': enough to fill the device). */
  readonly segments: number | 'auto';
  readonly yShape: readonly number[];
  readonly stateShape: readonly number[];
}

/** The kernel's inputs by name; the op passes them in this order, absent ones left out. */
export interface ScanInputs {
  readonly u: Tensor;
  readonly delta: Tensor;
  readonly A: Tensor;
  readonly B: Tensor;
  readonly C: Tensor;
  readonly D?: Tensor;
  readonly z?: Tensor;
  readonly deltaBias?: Tensor;
  readonly initialState?: Tensor;
}

/** The inputs array of a SelectiveScan kernel call: u, delta, A, B, C, then D, z, deltaBias, initialState where present. */
export function packScanInputs(inputs: ScanInputs): Tensor[] {
  const list = [inputs.u, inputs.delta, inputs.A, inputs.B, inputs.C];
  for (const t of [inputs.D, inputs.z, inputs.deltaBias, inputs.initialState]) if (t) list.push(t);
  return list;
}

export function unpackScanInputs(list: readonly Tensor[], attrs: SelectiveScanAttrs): ScanInputs {
  let i = 5;
  const next = (present: boolean) => (present ? list[i++] : undefined);
  const D = next(attrs.hasD);
  const z = next(attrs.hasZ);
  const deltaBias = next(attrs.hasDeltaBias);
  const initialState = next(attrs.hasInitialState);
  return {
    u: list[0]!,
    delta: list[1]!,
    A: list[2]!,
    B: list[3]!,
    C: list[4]!,
    D,
    z,
    deltaBias,
    initialState,
  };
}

/** The outputs a SelectiveScan kernel writes: y, and the last state when asked for. */
export interface ScanOutputs {
  readonly y: Tensor;
  readonly lastState?: Tensor;
  /** In kernel-result order: [y, lastState?]. */
  readonly results: Tensor[];
}

export function allocateScanOutputs(backend: Backend, attrs: SelectiveScanAttrs): ScanOutputs {
  const y = backend.empty(attrs.yShape);
  const lastState = attrs.returnLastState ? backend.empty(attrs.stateShape) : undefined;
  return { y, lastState, results: lastState ? [y, lastState] : [y] };
}

/**
 * A SelectiveScan kernel for one backend kind from the function that writes its outputs:
 * both kinds allocate the outputs the same way and dispose them if writing fails.
 */
export function selectiveScanKernel(
  backendKind: BackendKind,
  write: (
    backend: Backend,
    inputs: ScanInputs,
    attrs: SelectiveScanAttrs,
    outputs: ScanOutputs,
  ) => Promise<void>,
): KernelConfig<SelectiveScanAttrs> {
  return {
    kernelName: SelectiveScan,
    backendKind,
    async run(backend, inputs, attrs) {
      const outputs = allocateScanOutputs(backend, attrs);
      await disposeOnError(outputs.results, () =>
        write(backend, unpackScanInputs(inputs, attrs), attrs, outputs),
      );
      return outputs.results;
    },
  };
}
