#!/usr/bin/env bash
# On the lent GPU machine, from the repository root with .gpu/ carried (prepare.sh built it
# here): the kernel checks on the adapter's default tilings, the full benchmark against
# TensorFlow.js and jax-js on the same adapter (and PyTorch on the CPU where its Python has
# torch), then the checks again with the choices the benchmark tuned. Every output goes to
# $OUT (or ./gpu-out). About 5-8 minutes; SECONDS_LEFT bounds the benchmark.
#   usage: bash tools/device/run.sh [extra bench options]
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-gpu-out}
mkdir -p "$out" /tmp/swavgpu-node
log() { echo "[device] $*" | tee -a "$out/device.log"; }
# Node.js and the Vulkan loader, unpacked where nothing else lives.
gunzip -c .gpu/node.gz > /tmp/swavgpu-node/node && chmod +x /tmp/swavgpu-node/node
mkdir -p .gpu/node_modules/webgpu/dist/linux-x64
gunzip -c .gpu/dawn.node.gz > .gpu/node_modules/webgpu/dist/linux-x64/dawn.node
export PATH=/tmp/swavgpu-node:$PATH
if ! ldconfig -p | grep -q libvulkan.so.1 || ! ldconfig -p | grep -q libGLdispatch.so.0; then
  log "unpacking the Vulkan and glvnd loaders"
  for f in .gpu/deb/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$nv" ] && export VK_DRIVER_FILES=$nv
export XDG_CACHE_HOME=/tmp/swavgpu-cache
log "revision $(cat .gpu/REVISION), node $(node --version), $(nproc) cores"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv \
  >> "$out/device.log" 2>&1 || true
python=$(command -v python3 || echo /usr/bin/python3)
log "checks, default tilings"
node .gpu/tools/checks.js --json "$out/checks-default.json" > "$out/checks-default.txt" 2>&1
log "  exit $? ($(tail -1 "$out/checks-default.txt"))"
log "bench (python: $python)"
timeout "${SECONDS_LEFT:-420}" node .gpu/tools/bench.js --python "$python" \
  --json "$out/bench.json" "$@" 2>&1 | tee "$out/bench.txt" | grep -v '^Warning: max'
log "  exit ${PIPESTATUS[0]}"
log "checks, tuned choices"
node .gpu/tools/checks.js --tune --json "$out/checks-tuned.json" > "$out/checks-tuned.txt" 2>&1
log "  exit $? ($(tail -1 "$out/checks-tuned.txt"))"
