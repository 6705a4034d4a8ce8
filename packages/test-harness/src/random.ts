/**
 * Seeded random data (no vitest here: the browser conformance page imports this module as
 * `@longseq/test-harness/random`). Every run draws a fresh seed (or takes LONGSEQ_SEED), and failures
 * print it, so a failing draw can be replayed exactly.
 */
export type Rng = () => number;

/** mulberry32: small, fast, good enough for test data. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function freshSeed(): number {
  const env = typeof process !== 'undefined' ? process.env.LONGSEQ_SEED : undefined;
  if (env) return Number(env) >>> 0;
  return (Math.random() * 2 ** 32) >>> 0;
}

/** A 32-bit seed for one named case: the run's seed mixed with the name (FNV-1a), so a case replays alone. */
export function caseSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Uniform floats in [min, max), rounded to float32 so host references see the exact device inputs. */
export function randomFloats(count: number, random: Rng, min = -1, max = 1): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = min + (max - min) * random();
  return out;
}

/** Standard normal floats (Box-Muller), scaled. */
export function randomNormal(count: number, random: Rng, std = 1): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const u = Math.max(random(), 1e-12);
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  }
  return out;
}

/** Integers in [min, max). */
export function randomInts(count: number, random: Rng, min: number, max: number): Int32Array {
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) out[i] = min + Math.floor((max - min) * random());
  return out;
}

/** A random integer in [min, max]. */
export function randomInt(random: Rng, min: number, max: number): number {
  return min + Math.floor((max - min + 1) * random());
}
