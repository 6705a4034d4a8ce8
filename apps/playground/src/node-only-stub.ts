/**
 * Stands in for the `webgpu` npm package (Dawn for Node) in the browser bundle; see
 * vite.config.ts. Browsers have navigator.gpu, so nothing should ever call this.
 */
export function create(): never {
  throw new Error("the 'webgpu' package is Node-only; in a browser WebGPU comes from navigator.gpu");
}

export const globals = {};
