#!/usr/bin/env bash
# Makes a WebGPU adapter available to Node on a fresh Debian 12 machine without a GPU,
# and installs the Fashion-MNIST package. Idempotent: each step checks before it acts.
#
#   1. Vulkan loader + Mesa lavapipe >= 24 (bookworm's own 22.3 is refused by Dawn), from
#      bookworm-backports, whose source is written beside the machine's own.
#   2. dataset-fashion-mnist (the default training data).
#   3. chromium, for the browser tests (skipped with SWAVGPU_NO_BROWSER=1).
#
# Nothing is done where the pieces are already there. Needs root (apt-get).
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }
# grep without -q: under pipefail, -q stops reading early and the writer can die of SIGPIPE,
# which turned "present" into "missing" now and then (ldconfig -p writes ~70 KB).
have_pkg() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep 'install ok installed' >/dev/null
}
lavapipe_version() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^[0-9]+://; s/\..*//'
}

if [ ! -r /etc/debian_version ]; then
  log "not a Debian machine: install a Vulkan driver (or use a GPU) yourself; skipping."
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need=()
major=$(lavapipe_version || true)
if ! ldconfig -p | grep 'libvulkan.so.1' >/dev/null || [ -z "$major" ] || [ "$major" -lt 24 ]; then
  need+=(vulkan)
fi
have_pkg dataset-fashion-mnist || need+=(fashion)
if [ "${SWAVGPU_NO_BROWSER:-0}" != 1 ] && [ ! -x /usr/bin/chromium ]; then need+=(chromium); fi

if [ ${#need[@]} -eq 0 ]; then
  log "Vulkan (lavapipe $major), Fashion-MNIST and chromium already present."
  exit 0
fi
log "to install: ${need[*]}"

src=/etc/apt/sources.list.d/swavgpu-backports.sources
if [[ " ${need[*]} " == *" vulkan "* ]] && [ ! -f "$src" ]; then
  # Reuse the machine's own mirror and keyring (first stanza of debian.sources).
  base=/etc/apt/sources.list.d/debian.sources
  uris=$(awk -F': ' '/^URIs:/{print $2; exit}' "$base" 2>/dev/null || true)
  key=$(awk -F': ' '/^Signed-By:/{print $2; exit}' "$base" 2>/dev/null || true)
  uris=${uris:-http://deb.debian.org/debian}
  key=${key:-/usr/share/keyrings/debian-archive-keyring.gpg}
  log "adding bookworm-backports from $uris"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
    "$uris" "$key" | $SUDO tee "$src" >/dev/null
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
for n in "${need[@]}"; do
  case $n in
    vulkan)
      $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
      log "installed lavapipe $(lavapipe_version)";;
    fashion)
      $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
      log "installed dataset-fashion-mnist";;
    chromium)
      $SUDO apt-get install -y -qq chromium >/dev/null
      log "installed chromium";;
  esac
done
