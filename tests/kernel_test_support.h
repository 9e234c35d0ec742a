// What the kernel tests share. Each kernel test file is compiled twice: into rnnsweep_tests,
// where kernels/ runs on the block emulator (tests/emulator/) on every machine, and into
// rnnsweep_gpu_tests by nvcc, where it runs on the GPU. There, without a device, the tests
// skip, and RNNSWEEP_REQUIRE_GPU=1 turns the skip into a failure (scripts/device-check.sh).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cuda_utils.cuh"

namespace rnnsweep::test {

// Shapes: the emulator runs every thread as a fiber, so its tests use small networks; the GPU
// runs the paper's size.
constexpr bool kEmulated = RNNSWEEP_EMULATED;
constexpr int kHidden = kEmulated ? 16 : 64;
constexpr int kBatch = kEmulated ? 4 : 32;

// Whether the run demands a GPU (RNNSWEEP_REQUIRE_GPU=1).
inline bool gpu_required() {
  const char* require = std::getenv("RNNSWEEP_REQUIRE_GPU");
  return require && std::strcmp(require, "1") == 0;
}

}  // namespace rnnsweep::test

// At the top of every kernel test: skip (or fail) without a device.
#define RNNSWEEP_NEED_DEVICE()                                                                               \
  do {                                                                                                       \
    if (!::rnnsweep::cuda::device_available()) {                                                             \
      if (::rnnsweep::test::gpu_required()) FAIL() << "RNNSWEEP_REQUIRE_GPU=1 but no CUDA device is usable"; \
      GTEST_SKIP() << "no CUDA device";                                                                      \
    }                                                                                                        \
  } while (0)
