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
