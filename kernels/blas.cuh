// cuBLAS for kernels/train_layered.cu: the real library under nvcc, the emulator's twin of the
// routine it calls otherwise (tests/emulator/cublas_emulator.h). BLAS_CHECK fails loudly.
#pragma once

#include <stdexcept>
#include <string>

#include "kernels/portability.cuh"

#if defined(__CUDACC__)
#include <cublas_v2.h>
#else
#include "tests/emulator/cublas_emulator.h"
#endif

#define BLAS_CHECK(call)                                                                               \
  do {                                                                                                 \
    const cublasStatus_t blas_status_ = (call);                                                        \
    if (blas_status_ != CUBLAS_STATUS_SUCCESS)                                                         \
      throw std::runtime_error(std::string("cuBLAS error ") + std::to_string(int(blas_status_)) + " in " \
                               #call);                                                                 \
  } while (0)
