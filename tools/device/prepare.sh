#!/usr/bin/env bash
# Builds .gpu/ (git-ignored): what the benchmark and the kernel checks need on the lent GPU
# machine that it lacks. That machine has no Node.js and reaches no registry, and at most
# 64 MiB travel with the working tree, so node_modules cannot go: instead this folder
# holds Node.js itself (gzipped), the benchmark, its workers and the kernel checks bundled
# by esbuild (TensorFlow.js and jax-js inside), Dawn's native module, and the Vulkan
# loader's Debian packages (the machine's NVIDIA driver brings its own Vulkan driver).
# Run here after `npm ci`; then tools/device/README.md says what to run there.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.gpu
[ -d node_modules/webgpu ] || { echo "prepare.sh: run npm ci first" >&2; exit 1; }
# That machine is x86-64: this machine's node, Dawn and packages must be too.
if [ "$(uname -m)" != x86_64 ]; then
  echo "prepare.sh: this machine is $(uname -m); the GPU machine runs x86-64 binaries," \
    "so build .gpu/ on an x86-64 machine" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out/tools" "$out/node_modules/webgpu" "$out/deb"
# The loaders the device notes name for Vulkan on that machine (libvulkan1, and glvnd's for
# the NVIDIA driver's own libraries). First, so that a failure costs no bundling, and said:
# apt-get's own message stays on stderr.
if ! (cd "$out/deb" && apt-get download -q libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 \
  libglx0 libgles2 > /dev/null); then
  echo "prepare.sh: apt-get could not download the Vulkan and glvnd loaders (its message" \
    "is above; after apt-get update, run this again)" >&2
  exit 1
fi
# Bundles keep `require` (Dawn's module is loaded through it) and leave webgpu outside.
banner="import { createRequire as __req } from 'node:module';
const require = __req(import.meta.url);"
for entry in tools/bench.ts:bench tools/bench/worker.ts:worker tools/device/checks.ts:checks; do
  npx esbuild "${entry%%:*}" --bundle --platform=node --format=esm --target=node20 \
    --external:webgpu --minify --outfile="$out/tools/${entry##*:}.js" --banner:js="$banner" \
    --log-level=error
done
# The bench finds its worker beside itself (./worker.js) and the PyTorch mirror one folder
# up (../bench_torch.py), as in the source tree.
cp tools/bench_torch.py "$out/"
cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$out/node_modules/webgpu/"
# Gzipped (47 MiB, not 120): run.sh unpacks both.
gzip -c node_modules/webgpu/dist/linux-x64/dawn.node > "$out/dawn.node.gz"
gzip -c "$(command -v node)" > "$out/node.gz"
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+changes')" > "$out/REVISION"
du -sh "$out"
