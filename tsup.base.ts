import { defineConfig, type Options } from 'tsup';

/** The one tsup shape every package uses: ESM + CJS + .d.ts from src/index.ts. */
export function packageConfig(overrides: Options = {}) {
  return defineConfig({
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'es2022',
    treeshake: true,
    ...overrides,
  });
}
