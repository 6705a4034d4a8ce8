import type { Backend } from '@longseq/backend';
import { workgroupSize } from './common';

/** Threads per row: short rows get a small workgroup so most threads are not idle. */
export function normWorkgroupSize(backend: Backend, cols: number): number {
  return workgroupSize(backend, cols <= 64 ? 64 : 256);
}

/** A sum over the workgroup through a tree in workgroup memory; every thread gets the total. */
export function workgroupSum(wg: number): string {
  return `
var<workgroup> partial: array<f32, ${wg}>;
fn workgroup_sum(v: f32, lid: u32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
    workgroupBarrier();
  }
  let total = partial[0];
  // Nobody may overwrite partial (a second call) before everyone has read the total.
  workgroupBarrier();
  return total;
}`;
}
