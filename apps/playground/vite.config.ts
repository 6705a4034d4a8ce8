import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const packagesDir = fileURLToPath(new URL('../../packages/', import.meta.url));
const webgpuStub = fileURLToPath(new URL('./src/node-only-stub.ts', import.meta.url));

/**
 * The playground compiles the workspace packages from their TypeScript sources (the same
 * mapping as tsconfig.base.json's `paths` and vitest.shared.ts), so `vite build` never
 * depends on, or goes stale against, the packages' dist/.
 *
 * `webgpu` (Dawn, a native Node addon) must never reach the browser: it is aliased to a stub
 * that throws. @longseq/backend-webgpu only loads it in Node and through a variable
 * specifier, so the stub is a second fence, not the first. gpu.js resolves to its browser
 * build through its package.json `browser` field, which Vite prefers for client builds.
 */
export default defineConfig({
  base: './',
  resolve: {
    alias: [
      { find: /^@longseq\/([a-z0-9-]+)$/, replacement: `${packagesDir}$1/src/index.ts` },
      // Subpath exports (`@longseq/test-harness/random`) map to the module of that name.
      { find: /^@longseq\/([a-z0-9-]+)\/([a-z0-9-]+)$/, replacement: `${packagesDir}$1/src/$2.ts` },
      { find: /^webgpu$/, replacement: webgpuStub },
    ],
  },
  build: {
    target: 'es2022',
    outDir: 'dist',
    emptyOutDir: true,
    // gpu.js' browser build is one ~600 kB file; it is loaded on demand, so the warning is noise.
    chunkSizeWarningLimit: 1500,
    // Two pages: the playground, and the conformance self-test (test/conformance.test.ts).
    rollupOptions: {
      input: {
        main: fileURLToPath(new URL('./index.html', import.meta.url)),
        conformance: fileURLToPath(new URL('./conformance.html', import.meta.url)),
      },
    },
  },
});
