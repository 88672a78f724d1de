#!/usr/bin/env bash
# Installs what capsnet-webgpu needs on a Debian (bookworm) machine without a GPU:
#   - Mesa's Vulkan driver (lavapipe) from bookworm-backports: Dawn rejects bookworm's Mesa 22.3
#     for Vulkan, so we take Mesa 25 from backports;
#   - Mesa's EGL/GL (llvmpipe), the OpenGL fallback;
#   - Debian's Chromium and Firefox ESR, for the browser tests (never a downloaded browser).
# Idempotent: each step checks first and says what it does. Needs root (or sudo).
# Usage: tools/install-software-gpu.sh [--no-browser]
set -euo pipefail

want_browser=1
for arg in "$@"; do
  case "$arg" in
    --no-browser) want_browser=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install-software-gpu: unknown option '$arg' (expected --no-browser)" >&2; exit 2 ;;
  esac
done

say() { printf 'install-software-gpu: %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else say "needs root (or sudo) to run apt-get"; exit 1; fi
fi
if ! command -v apt-get >/dev/null; then
  say "this script knows Debian's apt only; install Mesa >= 23 (Vulkan lavapipe) and Chromium yourself"
  exit 1
fi

. /etc/os-release 2>/dev/null || true
codename="${VERSION_CODENAME:-bookworm}"

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }
pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

updated=0
apt_update() { if [ "$updated" = 0 ]; then say "apt-get update"; $SUDO apt-get update -qq; updated=1; fi; }
apt_install() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }

# 1. Vulkan: Mesa >= 23 (lavapipe).
mesa_v=$(pkg_version mesa-vulkan-drivers)
mesa_major=${mesa_v%%.*}
if pkg_ok mesa-vulkan-drivers && pkg_ok libvulkan1 && [ "${mesa_major:-0}" -ge 23 ] 2>/dev/null; then
  say "Vulkan software driver present (mesa-vulkan-drivers $mesa_v)"
else
  if [ "$codename" = bookworm ]; then
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      say "adding bookworm-backports to apt's sources (Mesa 25 for lavapipe)"
      echo 'deb http://deb.debian.org/debian bookworm-backports main' | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
      updated=0
    fi
    apt_update
    say "installing libvulkan1 mesa-vulkan-drivers from bookworm-backports"
    apt_install -t bookworm-backports libvulkan1 mesa-vulkan-drivers libegl-mesa0 libgl1-mesa-dri libgbm1
  else
    apt_update
    say "installing libvulkan1 mesa-vulkan-drivers"
    apt_install libvulkan1 mesa-vulkan-drivers
  fi
  say "installed mesa-vulkan-drivers $(pkg_version mesa-vulkan-drivers)"
fi

# 2. OpenGL fallback (llvmpipe through EGL surfaceless).
if pkg_ok libegl-mesa0 && pkg_ok libgl1-mesa-dri && pkg_ok libegl1; then
  say "OpenGL software driver present (libegl-mesa0 $(pkg_version libegl-mesa0))"
else
  apt_update
  say "installing libegl1 libegl-mesa0 libgl1-mesa-dri libgles2"
  apt_install libegl1 libegl-mesa0 libgl1-mesa-dri libgles2
fi

# 3. Chromium for the browser tests.
if [ "$want_browser" = 1 ]; then
  if [ -x /usr/bin/chromium ]; then
    say "Chromium present ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
  else
    apt_update
    say "installing chromium (Debian's package)"
    apt_install chromium chromium-common fonts-liberation
    say "installed $(/usr/bin/chromium --version 2>/dev/null | head -1)"
  fi
  if [ -x /usr/bin/firefox-esr ]; then
    say "Firefox ESR present ($(/usr/bin/firefox-esr --version 2>/dev/null | head -1))"
  else
    apt_update
    say "installing firefox-esr (Debian's package; WebGPU on lavapipe)"
    apt_install firefox-esr
    say "installed $(/usr/bin/firefox-esr --version 2>/dev/null | head -1)"
  fi
fi
# 4. Fashion-MNIST (Debian's dataset-fashion-mnist) for `--experiment fashion-mnist` and its tests.
if [ "$want_browser" = 1 ]; then
  if [ -d /usr/share/datasets/fashion-mnist ]; then
    say "Fashion-MNIST present (/usr/share/datasets/fashion-mnist)"
  else
    apt_update
    say "installing dataset-fashion-mnist"
    apt_install dataset-fashion-mnist || say "could not install dataset-fashion-mnist: the Fashion-MNIST tests will skip (they say so)"
  fi
fi
say "done"
