#!/usr/bin/env bash
# Prepares .devcarry/ for benchmarks on the lent GPU machine (see ../shared/device/README.md):
# Node, Dawn and the Vulkan loader (pack.sh), the bundled CLI as .devcarry/cli/bin.js, the
# PyTorch reference scripts, and golden files for `longseq verify` (attention, discretize, mamba-tiny, vim-tiny, jamba-tiny).
# Then call the device tool with carry [".devcarry"] and, for example:
#   source .devcarry/enter.sh && cd .devcarry && node cli/bin.js bench softmax --rows 16384 --lengths 4096
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
pnpm --filter @longseq/cli build >/dev/null
bash ../shared/device/pack.sh packages/backend-webgpu/node_modules/webgpu >/dev/null
rm -rf .devcarry/cli
cp -r apps/cli/dist .devcarry/cli
cp apps/cli/reference/*.py .devcarry/
# torch_vim.py times the training script's PyTorch Vim; it imports vim_model.py from its own directory.
if [ -f apps/training/vim-mnist/vim_model.py ]; then cp apps/training/vim-mnist/vim_model.py .devcarry/; fi
cp ../shared/golden/attention.json ../shared/golden/discretize.json .devcarry/
rm -rf .devcarry/golden && mkdir -p .devcarry/golden && cp -r ../shared/golden/mamba-tiny ../shared/golden/vim-tiny ../shared/golden/jamba-tiny .devcarry/golden/
du -sh .devcarry
