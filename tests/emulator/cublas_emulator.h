// The emulator's twin of the one cuBLAS routine kernels/train_layered.cu calls
// (cublasSgemmStridedBatched, column-major as cuBLAS), over the emulator's host memory, so that
// the layered training path runs in CI. Reached through kernels/blas.cuh only.
//
// Each entry of C is one float FMA chain over k in order: cuBLAS sums in its own order (and
// blocks k), so the GPU agrees with it to float rounding, which the tests allow.
#pragma once

#include <cstdint>

struct cublasContext;
typedef cublasContext* cublasHandle_t;
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };

cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
// Streams are synchronous in the emulator: the routine runs when called.
cublasStatus_t cublasSetStream(cublasHandle_t handle, ::rnnsweep::emu::Stream* stream);
// C_i = alpha op(A_i) op(B_i) + beta C_i for i < batch, op(A) m x k, op(B) k x n; C is not read
// when beta is 0 (as in cuBLAS: NaN there does not spread).
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float* alpha, const float* A, int lda,
                                         long long strideA, const float* B, int ldb, long long strideB,
                                         const float* beta, float* C, int ldc, long long strideC, int batch);
