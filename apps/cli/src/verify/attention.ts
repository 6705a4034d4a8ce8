/**
 * Verifier for golden/attention.json: attention forward (output and logsumexp) computed on a
 * backend by @longseq/flash-attention (the tiled flash kernel; naive composes primitives),
 * checked by the test rule against the file's float64 values, with a host float32
 * computation of the same steps as the baseline.
 *
 * Shapes (the file's layout): q [B, Hq, Nq, D], k and v [B, Hkv, Nk, D], out [B, Hq, Nq, D],
 * lse [B, Hq, Nq]. G = Hq / Hkv query heads share one key/value head (GQA; MQA when Hkv = 1),
 * and the heads of a group are contiguous, so q viewed as [B, Hkv, G*Nq, D] lines each group
 * up with its key/value head and every product is a plain batched matmul.
 */
import { type Backend, type Rounder, type TypedArray, compareToReference } from '@longseq/backend';
import { type AttentionAlgorithm, attention } from '@longseq/flash-attention';
import { UnsupportedFormatError } from '../errors';
import {
  type CaseResult,
  type CheckResult,
  type GoldenFormat,
  type GoldenTarget,
  type VerifyContext,
  checkFrom,
} from './types';

export interface AttentionCase {
  readonly b: number;
  readonly hq: number;
  readonly hkv: number;
  readonly nq: number;
  readonly nk: number;
  readonly d: number;
  readonly causal: boolean;
  /** [left, right] keys allowed around a query's position; a negative side is unbounded. */
  readonly window: readonly [number, number] | null;
  /** Scores become softcap * tanh(scores / softcap) when > 0. */
  readonly softcap: number;
  readonly scale: number;
  readonly q: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
  /** float64 expectations; a fully masked row's lse is -Infinity (the file writes -1e30). */
  readonly out: Float64Array;
  readonly lse: Float64Array;
}

/** The file writes -1e30 for the logsumexp of a fully masked row, standing for -inf. */
const MASKED_LSE = -1e29;

/** How far the CLI's own float64 attention may drift from the file (which prints ~9 digits). */
const REFERENCE_AGREEMENT = 1e-6;

export function parseAttentionCase(raw: unknown, index: number): AttentionCase {
  const where = `case ${index}`;
  if (raw === null || typeof raw !== 'object')
    throw new UnsupportedFormatError(`${where}: expected an object`);
  const c = raw as Record<string, unknown>;
  const int = (key: string): number => {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      throw new UnsupportedFormatError(
        `${where}: '${key}' must be a positive integer, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  const b = int('b');
  const hq = int('hq');
  const hkv = int('hkv');
  const nq = int('nq');
  const nk = int('nk');
  const d = int('d');
  if (hq % hkv !== 0)
    throw new UnsupportedFormatError(`${where}: hq = ${hq} is not a multiple of hkv = ${hkv}`);
  const window = c.window ?? null;
  if (
    window !== null &&
    !(
      Array.isArray(window) &&
      window.length === 2 &&
      window.every((w) => typeof w === 'number' && Number.isInteger(w))
    )
  ) {
    throw new UnsupportedFormatError(`${where}: 'window' must be null or [left, right]`);
  }
  const num = (key: string, fallback: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new UnsupportedFormatError(`${where}: '${key}' must be a number`);
    return v;
  };
  const lse = flatten(c.lse, [b, hq, nq], `${where}.lse`);
  for (let i = 0; i < lse.length; i++) if (lse[i]! <= MASKED_LSE) lse[i] = Number.NEGATIVE_INFINITY;
  return {
    b,
    hq,
    hkv,
    nq,
    nk,
    d,
    causal: c.causal === true,
    window: window as [number, number] | null,
    softcap: num('softcap', 0),
    scale: num('scale', 1 / Math.sqrt(d)),
    q: Float32Array.from(flatten(c.q, [b, hq, nq, d], `${where}.q`)),
    k: Float32Array.from(flatten(c.k, [b, hkv, nk, d], `${where}.k`)),
    v: Float32Array.from(flatten(c.v, [b, hkv, nk, d], `${where}.v`)),
    out: flatten(c.out, [b, hq, nq, d], `${where}.out`),
    lse,
  };
}

/** Nested lists of the given shape, row-major, to a flat Float64Array (checking every extent). */
function flatten(value: unknown, shape: readonly number[], where: string): Float64Array {
  const size = shape.reduce((a, x) => a * x, 1);
  const out = new Float64Array(size);
  let at = 0;
  const walk = (v: unknown, depth: number): void => {
    if (depth === shape.length) {
      if (typeof v !== 'number')
        throw new UnsupportedFormatError(`${where}: expected a number, got ${JSON.stringify(v)}`);
      out[at++] = v;
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) {
      throw new UnsupportedFormatError(`${where}: expected nested lists of shape [${shape.join(', ')}]`);
    }
    for (const item of v) walk(item, depth + 1);
  };
  walk(value, 0);
  return out;
}

export function describeCase(c: AttentionCase): string {
  const heads = c.hq === c.hkv ? `MHA h${c.hq}` : c.hkv === 1 ? `MQA h${c.hq}/1` : `GQA h${c.hq}/${c.hkv}`;
  const parts = [`b${c.b}`, heads, `nq${c.nq}`, `nk${c.nk}`, `d${c.d}`];
  if (c.causal) parts.push('causal');
  if (c.window) parts.push(`window[${c.window[0]},${c.window[1]}]`);
  if (c.softcap > 0) parts.push(`softcap ${c.softcap}`);
  return parts.join(' ');
}

/**
 * The additive mask [Nq, Nk]: 0 where query i may see key j, -Infinity elsewhere, or
 * undefined when nothing is masked. Bottom-right aligned: query i sits at key position
 * p = i + Nk - Nq; causal keeps j <= p; window [left, right] keeps p - left <= j <= p + right.
 */
export function attentionMask(
  c: Pick<AttentionCase, 'nq' | 'nk' | 'causal' | 'window'>,
): Float32Array | undefined {
  if (!c.causal && !c.window) return undefined;
  const mask = new Float32Array(c.nq * c.nk);
  for (let i = 0; i < c.nq; i++) {
    const p = i + c.nk - c.nq;
    for (let j = 0; j < c.nk; j++) {
      let visible = !(c.causal && j > p);
      if (c.window) {
        const [left, right] = c.window;
        if (left >= 0 && j < p - left) visible = false;
        if (right >= 0 && j > p + right) visible = false;
      }
      mask[i * c.nk + j] = visible ? 0 : Number.NEGATIVE_INFINITY;
    }
  }
  return mask;
}

/**
 * Attention on the host, one query row at a time, with every intermediate passed through
 * `r`: Math.fround gives the straightforward float32 computation the test rule measures
 * against; the identity gives float64 (to check that this file's semantics are ours).
 */
export function attentionHost(c: AttentionCase, r: Rounder): { out: Float64Array; lse: Float64Array } {
  const { b, hq, hkv, nq, nk, d } = c;
  const group = hq / hkv;
  const mask = attentionMask(c);
  const scale = r(c.scale);
  const out = new Float64Array(b * hq * nq * d);
  const lse = new Float64Array(b * hq * nq);
  const s = new Float64Array(nk);
  for (let bi = 0; bi < b; bi++) {
    for (let h = 0; h < hq; h++) {
      const kvBase = (bi * hkv + Math.floor(h / group)) * nk * d;
      for (let i = 0; i < nq; i++) {
        const row = (bi * hq + h) * nq + i;
        const qBase = row * d;
        let m = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < nk; j++) {
          let dot = 0;
          for (let e = 0; e < d; e++) dot = r(dot + r(c.q[qBase + e]! * c.k[kvBase + j * d + e]!));
          let score = r(dot * scale);
          if (c.softcap > 0) score = r(c.softcap * r(Math.tanh(r(score / c.softcap))));
          if (mask) score = r(score + mask[i * nk + j]!);
          s[j] = score;
          if (score > m) m = score;
        }
        if (m === Number.NEGATIVE_INFINITY) {
          // Fully masked row: output 0 and lse -inf, as the file defines it.
          lse[row] = Number.NEGATIVE_INFINITY;
          continue;
        }
        let denom = 0;
        for (let j = 0; j < nk; j++) {
          s[j] = r(Math.exp(r(s[j]! - m)));
          denom = r(denom + s[j]!);
        }
        lse[row] = r(m + r(Math.log(denom)));
        for (let j = 0; j < nk; j++) s[j] = r(s[j]! / denom);
        for (let e = 0; e < d; e++) {
          let acc = 0;
          for (let j = 0; j < nk; j++) acc = r(acc + r(s[j]! * c.v[kvBase + j * d + e]!));
          out[qBase + e] = acc;
        }
      }
    }
  }
  return { out, lse };
}

/**
 * Attention on a backend through @longseq/flash-attention: 'flash' (default) never
 * materializes the scores; 'naive' does (matmul, softmax package). A fully masked row's
 * logsumexp comes back as -Infinity, as the parsed case holds it.
 */
export async function attentionOnBackend(
  backend: Backend,
  c: AttentionCase,
  algorithm: AttentionAlgorithm = 'flash',
): Promise<{ out: TypedArray; lse: TypedArray }> {
  const { b, hq, hkv, nq, nk, d } = c;
  const q = backend.tensor(c.q, [b, hq, nq, d]);
  const k = backend.tensor(c.k, [b, hkv, nk, d]);
  const v = backend.tensor(c.v, [b, hkv, nk, d]);
  try {
    const { output, lse } = await attention(q, k, v, {
      causal: c.causal,
      // The file's negative window side means unbounded.
      ...(c.window
        ? { window: c.window.map((w) => (w < 0 ? Number.POSITIVE_INFINITY : w)) as [number, number] }
        : {}),
      softcap: c.softcap,
      scale: c.scale,
      algorithm,
      returnLse: true,
    });
    try {
      return { out: await output.read(), lse: await lse.read() };
    } finally {
      output.dispose();
      lse.dispose();
    }
  } finally {
    q.dispose();
    k.dispose();
    v.dispose();
  }
}

async function verifyAttention(target: GoldenTarget, context: VerifyContext): Promise<CaseResult[]> {
  const cases = (target.json as { cases?: unknown }).cases;
  if (!Array.isArray(cases)) throw new UnsupportedFormatError(`${target.basename}: expected a 'cases' array`);
  const results: CaseResult[] = [];
  for (let index = 0; index < cases.length; index++) {
    const c = parseAttentionCase(cases[index], index);
    const checks: CheckResult[] = [];
    // Our own float64 pass must reproduce the file, or the float32 baseline would measure
    // a different function and the rule would mean nothing.
    const ref64 = attentionHost(c, (x) => x);
    const agreement = Math.max(worst(ref64.out, c.out), worst(ref64.lse, c.lse));
    checks.push({
      name: 'semantics',
      pass: agreement <= REFERENCE_AGREEMENT,
      maxError: agreement,
      baselineError: 0,
      allowed: REFERENCE_AGREEMENT,
      ...(agreement <= REFERENCE_AGREEMENT
        ? {}
        : { reason: `the CLI's float64 attention differs from the file by ${agreement.toExponential(2)}` }),
    });
    const ref32 = attentionHost(c, Math.fround);
    const got = await attentionOnBackend(context.backend, c);
    checks.push(checkFrom('out', compareToReference(got.out, c.out, ref32.out)));
    checks.push(checkFrom('lse', compareToReference(got.lse, c.lse, ref32.lse)));
    const result: CaseResult = { index, name: describeCase(c), pass: checks.every((k) => k.pass), checks };
    results.push(result);
    context.onCase?.(result, cases.length);
  }
  return results;
}

/** max |a - b|, where equal infinities count as 0 and any other non-finite mismatch as Infinity. */
function worst(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === y) continue;
    const diff = Math.abs(x - y);
    if (!(diff <= m)) m = Number.isNaN(diff) ? Number.POSITIVE_INFINITY : diff;
  }
  return m;
}

export const attentionFormat: GoldenFormat = {
  name: 'attention',
  description: 'attention forward cases (q, k, v, out, lse; masks, GQA, softcap), e.g. golden/attention.json',
  matches(target) {
    if (target.isDirectory) return false;
    if (/^attention.*\.json$/i.test(target.basename)) return true;
    const first = (target.json as { cases?: unknown[] } | undefined)?.cases?.[0];
    return (
      first !== null &&
      typeof first === 'object' &&
      ['q', 'k', 'v', 'out', 'lse'].every((key) => key in first)
    );
  },
  verify: verifyAttention,
};
