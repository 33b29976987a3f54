#!/usr/bin/env bash
# On the lent GPU machine, from the repository root with .gpu/ carried (prepare.sh built it
# here): the kernel checks on the adapter's default tilings, every tiling candidate the
# tuner may choose against the references (and against each other, bit for bit), then the
# full benchmark against TensorFlow.js and jax-js on the same adapter (and PyTorch on the
# CPU where its Python has torch). Every output goes to
# $OUT (or ./gpu-out). About 5-8 minutes; SECONDS_LEFT bounds the benchmark. Each step runs
# whatever the one before it did; the exit status is 1 when any step failed (device.log
# says which), else 0.
#   usage: bash tools/device/run.sh [extra bench options]
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ ! -f .gpu/node.gz ]; then
  echo "run.sh: no .gpu/node.gz here: run tools/device/prepare.sh and carry .gpu" >&2
  exit 1
fi
out=${OUT:-gpu-out}
mkdir -p "$out"
log() { echo "[device] $*" | tee -a "$out/device.log"; }
status=0
# Logs a step's exit status (and a line of its output); a failed step fails the script.
ended() {
  log "  exit $1${2:+ ($2)}"
  [ "$1" -eq 0 ] || status=1
}
# Whether the dynamic linker knows a library. grep reads the whole list: with -q it would
# stop at the first match, ldconfig would die of SIGPIPE, and pipefail would report a miss.
has_lib() { ldconfig -p | grep -F "$1" > /dev/null; }
# Node.js and the Vulkan loader, unpacked where nothing else lives.
node_dir=$(mktemp -d /tmp/swavgpu-node.XXXXXX)
trap 'rm -rf "$node_dir"' EXIT
gunzip -c .gpu/node.gz > "$node_dir/node" && chmod +x "$node_dir/node"
mkdir -p .gpu/node_modules/webgpu/dist/linux-x64
gunzip -c .gpu/dawn.node.gz > .gpu/node_modules/webgpu/dist/linux-x64/dawn.node
export PATH=$node_dir:$PATH
if ! has_lib libvulkan.so.1 || ! has_lib libGLdispatch.so.0; then
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
ended $? "$(tail -1 "$out/checks-default.txt")"
log "checks, every tiling candidate"
node .gpu/tools/checks.js --tilings --large --json "$out/checks-tilings.json" \
  > "$out/checks-tilings.txt" 2>&1
ended $? "$(tail -1 "$out/checks-tilings.txt")"
log "bench (python: $python)"
timeout "${SECONDS_LEFT:-420}" node .gpu/tools/bench.js --python "$python" \
  --json "$out/bench.json" "$@" 2>&1 | tee "$out/bench.txt" | grep -v '^Warning: max'
ended "${PIPESTATUS[0]}"
exit "$status"
