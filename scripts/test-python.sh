#!/usr/bin/env bash
# The Python package as a user installs it: `pip install ".[test]"` into a fresh venv
# (build/py-venv; scikit-build-core builds this CMake project, here with the CPU backend only,
# which is what the tests exercise), then its tests (python/tests, pytest) and the notebook
# example docs/examples/gain_study.py. CI runs this after scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf build/py-venv
# --system-site-packages: numpy, pandas and matplotlib where python3 has them already (CI installs
# them first) are not downloaded again; the package itself is built and installed fresh
python3 -m venv --system-site-packages build/py-venv
build/py-venv/bin/python -m pip install -q --disable-pip-version-check ".[test]" \
  -C cmake.define.RNNSWEEP_CUDA=OFF -C build-dir=build/py-build
build/py-venv/bin/python -m pytest -q python/tests
RNNSWEEP_OUT=build/gain_study build/py-venv/bin/python docs/examples/gain_study.py
