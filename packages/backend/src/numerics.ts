/**
 * The test rule (DESIGN.md, after the FlashAttention test suite): a kernel's max error
 * against the float64 reference may be at most `factor` (2) times the max error of a
 * straightforward float32 computation of the same function, plus a small absolute floor.
 * NaN in the output never passes unless the reference is NaN at the same place; infinities
 * must match exactly.
 */
export interface ToleranceOptions {
  /** Multiplier on the float32 baseline error. Default 2. */
  readonly factor?: number;
  /** Absolute floor added to the allowance. Default 1e-6. */
  readonly atol?: number;
}

export interface Comparison {
  readonly pass: boolean;
  /** max |actual - ref64| over finite entries. */
  readonly maxError: number;
  /** max |ref32 - ref64|: what plain float32 arithmetic gets wrong. */
  readonly baselineError: number;
  /** The allowance: factor * baselineError + atol. */
  readonly allowed: number;
  /** Index of the worst entry, or of the first mismatch of NaN/infinity. */
  readonly worstIndex: number;
  readonly reason?: string;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d > m || Number.isNaN(d)) m = Number.isNaN(d) ? Number.NaN : d;
    if (Number.isNaN(m)) return m;
  }
  return m;
}

export function compareToReference(
  actual: ArrayLike<number>,
  ref64: ArrayLike<number>,
  ref32: ArrayLike<number> | undefined,
  options: ToleranceOptions = {},
): Comparison {
  const factor = options.factor ?? 2;
  const atol = options.atol ?? 1e-6;
  if (actual.length !== ref64.length) {
    return {
      pass: false,
      maxError: Number.POSITIVE_INFINITY,
      baselineError: 0,
      allowed: 0,
      worstIndex: -1,
      reason: `length ${actual.length} != reference length ${ref64.length}`,
    };
  }
  let baselineError = 0;
  if (ref32) {
    for (let i = 0; i < ref64.length; i++) {
      const e = ref64[i]!;
      if (!Number.isFinite(e)) continue;
      const d = Math.abs(ref32[i]! - e);
      if (d > baselineError) baselineError = d;
    }
  }
  const allowed = factor * baselineError + atol;
  let maxError = 0;
  let worstIndex = -1;
  for (let i = 0; i < ref64.length; i++) {
    const a = actual[i]!;
    const e = ref64[i]!;
    if (Number.isNaN(e) || !Number.isFinite(e)) {
      if (!Object.is(a, e) && !(Number.isNaN(a) && Number.isNaN(e)) && a !== e) {
        return {
          pass: false,
          maxError: Number.NaN,
          baselineError,
          allowed,
          worstIndex: i,
          reason: `index ${i}: got ${a}, expected ${e}`,
        };
      }
      continue;
    }
    if (!Number.isFinite(a)) {
      return {
        pass: false,
        maxError: Number.NaN,
        baselineError,
        allowed,
        worstIndex: i,
        reason: `index ${i}: got ${a}, expected ${e}`,
      };
    }
    const d = Math.abs(a - e);
    if (d > maxError) {
      maxError = d;
      worstIndex = i;
    }
  }
  const pass = maxError <= allowed;
  return pass
    ? { pass, maxError, baselineError, allowed, worstIndex }
    : {
        pass,
        maxError,
        baselineError,
        allowed,
        worstIndex,
        reason: `max error ${maxError.toExponential(3)} at index ${worstIndex} exceeds ${factor} x ${baselineError.toExponential(3)} + ${atol}`,
      };
}
