#!/usr/bin/env bash
# Downloads the Debian packages rnnsweep builds with into debs/ (ignored by git), for a machine
# without network access that can receive the folder, such as the GPU machine that
# scripts/device-check.sh runs on: that script unpacks them into a private prefix (dpkg -x,
# no root needed, nothing installed system-wide) and points CMake at it. Run it on a Debian
# machine with network access; about 12 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(libeigen3-dev libcli11-dev libtomlplusplus-dev libtomlplusplus3 librandom123-dev nlohmann-json3-dev
          libgtest-dev googletest libboost-context-dev libboost-context1.74-dev libboost-context1.74.0
          libboost1.74-dev)
mkdir -p debs
cd debs
rm -f ./*.deb
if ! apt-get download "${packages[@]}" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get download "${packages[@]}" >/dev/null
fi
echo "fetch-debs: $(ls ./*.deb | wc -l) packages, $(du -sh . | cut -f1) in debs/"
