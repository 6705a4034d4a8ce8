#!/usr/bin/env bash
# Installs what the test and playground commands need on a fresh Debian machine with Node 20:
# pnpm (corepack, else npm), the workspace's dependencies (frozen lockfile), and on Linux
# Debian's chromium (headless browser tests; it also ships SwiftShader, the CPU Vulkan driver
# that lets WebGPU run without a GPU) and the Vulkan loader. Safe to run again: it skips
# whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION="$(node -p "require('./package.json').packageManager.split('@')[1]")"

major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "longseq needs Node >= 20 (found $(node --version))" >&2
  exit 1
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

if ! command -v pnpm >/dev/null || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  echo "setup: installing pnpm $PNPM_VERSION"
  if ! { COREPACK_ENABLE_DOWNLOAD_PROMPT=0 COREPACK_INTEGRITY_KEYS=0 corepack enable pnpm 2>/dev/null &&
         COREPACK_ENABLE_DOWNLOAD_PROMPT=0 COREPACK_INTEGRITY_KEYS=0 pnpm --version >/dev/null 2>&1; }; then
    corepack disable pnpm 2>/dev/null || true
    as_root npm install -g "pnpm@$PNPM_VERSION" >/dev/null
  fi
fi
export COREPACK_ENABLE_DOWNLOAD_PROMPT=0 COREPACK_INTEGRITY_KEYS=0

if [ "$(uname -s)" = Linux ]; then
  need=()
  [ -x /usr/bin/chromium ] || need+=(chromium)
  [ -f /usr/lib/chromium/vk_swiftshader_icd.json ] || need+=(chromium)
  ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || need+=(libvulkan1)
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${need[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

echo "setup: pnpm install --frozen-lockfile"
pnpm install --frozen-lockfile --reporter=append-only 2>&1 | tail -n 3
