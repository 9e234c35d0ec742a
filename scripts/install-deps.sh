#!/usr/bin/env bash
# Installs the Debian packages rnnsweep builds with, if any is missing. Idempotent; needs root
# (or sudo) only when something is missing.
set -euo pipefail
packages=(cmake make g++ libeigen3-dev libcli11-dev libtomlplusplus-dev librandom123-dev
          nlohmann-json3-dev libgtest-dev libboost-context-dev zlib1g-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Where nvcc is found, NVIDIA's disassembler tools from PyPI, for scripts/kernel_report.py (the
# kernel limits test); they read the sm_90 code without a GPU.
if command -v nvcc >/dev/null && ! python3 -c "import glob, nvidia, os, sys; sys.exit(0 if any(glob.glob(os.path.join(p, 'cu*', 'bin', 'nvdisasm')) for p in nvidia.__path__) else 1)" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm 2>/dev/null ||
    echo "install-deps: could not install nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm; the kernel report test will skip" >&2
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
