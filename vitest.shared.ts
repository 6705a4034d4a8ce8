import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const packagesDir = fileURLToPath(new URL('./packages/', import.meta.url));

/**
 * On a machine without a GPU, WebGPU (Dawn) runs on SwiftShader, the CPU Vulkan driver that
 * Debian's chromium ships. Tests use it unless VK_ICD_FILENAMES is already set (or
 * LONGSEQ_TEST_SYSTEM_VULKAN=1 asks for the machine's own driver).
 */
const swiftshader = '/usr/lib/chromium/vk_swiftshader_icd.json';
const env: Record<string, string> = {};
if (!process.env.VK_ICD_FILENAMES && !process.env.LONGSEQ_TEST_SYSTEM_VULKAN && existsSync(swiftshader)) {
  env.VK_ICD_FILENAMES = swiftshader;
}

/**
 * Shared vitest settings. Workspace packages resolve to their TypeScript sources, so tests
 * never run against a stale dist/ (the same mapping as `paths` in tsconfig.base.json).
 */
export default defineConfig({
  resolve: {
    alias: [
      { find: /^@longseq\/([a-z0-9-]+)$/, replacement: `${packagesDir}$1/src/index.ts` },
      { find: /^@longseq\/([a-z0-9-]+)\/([a-z0-9-]+)$/, replacement: `${packagesDir}$1/src/$2.ts` },
    ],
  },
  test: {
    env,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
    include: ['test/**/*.test.ts'],
  },
});
