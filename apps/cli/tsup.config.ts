import { defineConfig } from 'tsup';

/**
 * The CLI ships as one ESM program: the @longseq/* workspace packages are bundled in (so the
 * command runs without their dist/), while `webgpu` (a native addon) and `gpu.js` stay
 * external. The backends are imported lazily, so code splitting keeps each in its own chunk
 * and a machine without gpu.js can still run the WebGPU commands.
 */
export default defineConfig({
  entry: { bin: 'src/bin.ts' },
  format: ['esm'],
  platform: 'node',
  target: 'node20',
  splitting: true,
  sourcemap: true,
  clean: true,
  dts: false,
  noExternal: [/^@longseq\//],
  external: ['webgpu', 'gpu.js'],
});
