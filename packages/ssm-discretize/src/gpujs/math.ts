/**
 * Accurate elementary functions in gpu.js' JS subset, the twins of ../webgpu/math.ts: gpu.js'
 * WebGPU mode translates Math.exp / cos / sin / log / atan2 to WGSL built-ins, which are far
 * off on SwiftShader. Sources are strings (see ./ssm.ts). Math.pow(2, k) scales exactly.
 */
export const expAcc = `function expAcc(x) {
  if (x < -103) {
    return 0.0;
  }
  const k = Math.floor(x * 1.4426950408889634 + 0.5);
  const r = x - k * 0.693145751953125 - k * 0.0000014286068;
  let q = 1.0 / 5040.0;
  q = q * r + 1.0 / 720.0;
  q = q * r + 1.0 / 120.0;
  q = q * r + 1.0 / 24.0;
  q = q * r + 1.0 / 6.0;
  q = q * r + 0.5;
  q = q * r + 1.0;
  return (q * r + 1.0) * Math.pow(2.0, k);
}`;

/** Reduces x by k pi/2 (pi/2 in three parts) and returns r; the quadrant is recomputed by the callers. */
export const reduceHalfPi = `function reduceHalfPi(x, k) {
  let r = x - k * 1.5703125;
  r = r - k * 0.00048375129699707031;
  r = r - k * 0.000000075497899548918821;
  return r;
}`;

export const sinPoly = `function sinPoly(r) {
  const r2 = r * r;
  let s = -1.0 / 39916800.0;
  s = s * r2 + 1.0 / 362880.0;
  s = s * r2 - 1.0 / 5040.0;
  s = s * r2 + 1.0 / 120.0;
  s = s * r2 - 1.0 / 6.0;
  return r + s * r2 * r;
}`;

export const cosPoly = `function cosPoly(r) {
  const r2 = r * r;
  let c = 1.0 / 479001600.0;
  c = c * r2 - 1.0 / 3628800.0;
  c = c * r2 + 1.0 / 40320.0;
  c = c * r2 - 1.0 / 720.0;
  c = c * r2 + 1.0 / 24.0;
  c = c * r2 - 0.5;
  return c * r2 + 1.0;
}`;

export const cosAcc = `function cosAcc(x) {
  const k = Math.floor(x * 0.63661977236758134 + 0.5);
  const r = reduceHalfPi(x, k);
  const q = k - Math.floor(k / 4) * 4;
  if (q < 0.5) {
    return cosPoly(r);
  }
  if (q < 1.5) {
    return -sinPoly(r);
  }
  if (q < 2.5) {
    return -cosPoly(r);
  }
  return sinPoly(r);
}`;

export const sinAcc = `function sinAcc(x) {
  const k = Math.floor(x * 0.63661977236758134 + 0.5);
  const r = reduceHalfPi(x, k);
  const q = k - Math.floor(k / 4) * 4;
  if (q < 0.5) {
    return sinPoly(r);
  }
  if (q < 1.5) {
    return cosPoly(r);
  }
  if (q < 2.5) {
    return -sinPoly(r);
  }
  return -cosPoly(r);
}`;

/** log x for x > 0: scale x by powers of 2 into [sqrt(1/2), sqrt(2)), then 2 atanh((m - 1) / (m + 1)). */
export const logAcc = `function logAcc(x) {
  let m = x;
  let e = 0.0;
  for (let i = 0; i < 160; i++) {
    if (m > 1.4142135) {
      m = m * 0.5;
      e = e + 1.0;
    }
    if (m < 0.70710678) {
      m = m * 2.0;
      e = e - 1.0;
    }
  }
  const s = (m - 1.0) / (m + 1.0);
  const s2 = s * s;
  let p = 1.0 / 11.0;
  p = p * s2 + 1.0 / 9.0;
  p = p * s2 + 1.0 / 7.0;
  p = p * s2 + 1.0 / 5.0;
  p = p * s2 + 1.0 / 3.0;
  return 2.0 * (s + p * s2 * s) + e * 0.693145751953125 + e * 0.0000014286068;
}`;

export const atanUnit = `function atanUnit(t) {
  let x = Math.abs(t);
  let offset = 0.0;
  if (x > 0.26794919) {
    x = (1.7320508 * x - 1.0) / (x + 1.7320508);
    offset = 0.52359878;
  }
  const x2 = x * x;
  let p = -1.0 / 15.0;
  p = p * x2 + 1.0 / 13.0;
  p = p * x2 - 1.0 / 11.0;
  p = p * x2 + 1.0 / 9.0;
  p = p * x2 - 1.0 / 7.0;
  p = p * x2 + 1.0 / 5.0;
  p = p * x2 - 1.0 / 3.0;
  const a = offset + x + p * x2 * x;
  if (t < 0) {
    return -a;
  }
  return a;
}`;

export const atan2Acc = `function atan2Acc(y, x) {
  if (Math.abs(y) <= Math.abs(x)) {
    if (x === 0) {
      return 0.0;
    }
    const a = atanUnit(y / x);
    if (x < 0) {
      if (y >= 0) {
        return a + 3.14159265;
      }
      return a - 3.14159265;
    }
    return a;
  }
  if (y > 0) {
    return 1.57079633 - atanUnit(x / y);
  }
  return -1.57079633 - atanUnit(x / y);
}`;

export const MATH_FUNCTIONS = [
  expAcc,
  reduceHalfPi,
  sinPoly,
  cosPoly,
  cosAcc,
  sinAcc,
  logAcc,
  atanUnit,
  atan2Acc,
];
