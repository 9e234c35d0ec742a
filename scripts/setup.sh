#!/usr/bin/env bash
# Quick start, step 1: install what is needed, build, and run the demo sweep
# (configs/quick.toml: 3 tasks x 3 rules x 4 gains x 2 lrs x 2 seeds) on the best backend here.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
./build/rnnsweep run configs/quick.toml "$@"
