import { type Comparison, type ToleranceOptions, compareToReference } from '@longseq/backend';

export interface CloseOptions extends ToleranceOptions {
  /** What is compared, for the failure message. */
  readonly label?: string;
  /** The seed of the random draw, printed on failure. */
  readonly seed?: number;
}

/**
 * Asserts the test rule: max |actual - ref64| <= factor * max |ref32 - ref64| + atol, with
 * NaN and infinities matching exactly. Returns the comparison so tests can report errors.
 */
export function expectClose(
  actual: ArrayLike<number>,
  ref64: ArrayLike<number>,
  ref32: ArrayLike<number> | undefined,
  options: CloseOptions = {},
): Comparison {
  const c = compareToReference(actual, ref64, ref32, options);
  if (!c.pass) {
    const where =
      c.worstIndex >= 0 ? ` (actual ${actual[c.worstIndex]}, expected ${ref64[c.worstIndex]})` : '';
    throw new Error(
      `${options.label ?? 'result'}: ${c.reason}${where}; max error ${c.maxError}, float32 baseline ${c.baselineError}` +
        (options.seed !== undefined ? `; replay with LONGSEQ_SEED=${options.seed}` : ''),
    );
  }
  return c;
}

/**
 * The test rule on relative errors: every entry of `actual`, `ref64` and `ref32` divided by
 * |ref64| at that place (entries whose reference is 0 or not finite stay as they are), then
 * `expectClose` with an absolute floor of one float32 ulp (2^-23) unless `atol` says
 * otherwise. For outputs whose magnitudes span decades (softplus of x in [-16, -1] runs from
 * 1e-7 to 0.3), where the plain rule's floor of 1e-6 would hide any error of the small ones.
 */
export function expectCloseRelative(
  actual: ArrayLike<number>,
  ref64: ArrayLike<number>,
  ref32: ArrayLike<number> | undefined,
  options: CloseOptions = {},
): Comparison {
  const scale = Float64Array.from({ length: ref64.length }, (_, i) => {
    const r = Math.abs(ref64[i]!);
    return r > 0 && Number.isFinite(r) ? r : 1;
  });
  const relative = (a: ArrayLike<number>) =>
    Float64Array.from({ length: a.length }, (_, i) => a[i]! / scale[i]!);
  return expectClose(relative(actual), relative(ref64), ref32 && relative(ref32), {
    ...options,
    atol: options.atol ?? 2 ** -23,
    label: `${options.label ?? 'result'} (relative to |ref64|)`,
  });
}
