#!/usr/bin/env bash
# Installs the Debian packages rnnsweep builds with, if any is missing. Idempotent; needs root
# (or sudo) only when something is missing.
set -euo pipefail
packages=(cmake make g++ libeigen3-dev libcli11-dev libtomlplusplus-dev librandom123-dev
          nlohmann-json3-dev libgtest-dev libboost-context-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
