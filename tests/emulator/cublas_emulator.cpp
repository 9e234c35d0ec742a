// The emulator's cuBLAS subset (tests/emulator/cublas_emulator.h).
#include "tests/emulator/block_emulator.h"
#include "tests/emulator/cublas_emulator.h"

#include <cmath>

struct cublasContext {
  ::rnnsweep::emu::Stream* stream = nullptr;
};

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, ::rnnsweep::emu::Stream* stream) {
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float* alpha, const float* A, int lda,
                                         long long strideA, const float* B, int ldb, long long strideB,
                                         const float* beta, float* C, int ldc, long long strideC, int batch) {
  if (!handle || m < 0 || n < 0 || k < 0 || batch < 0 || ldc < m || lda < (transa == CUBLAS_OP_N ? m : k) ||
      ldb < (transb == CUBLAS_OP_N ? k : n))
    return CUBLAS_STATUS_INVALID_VALUE;
  for (int i = 0; i < batch; ++i) {
    const float* a = A + i * strideA;
    const float* b = B + i * strideB;
    float* c = C + i * strideC;
    for (int col = 0; col < n; ++col)
      for (int row = 0; row < m; ++row) {
        float sum = 0.0f;
        for (int p = 0; p < k; ++p) {
          const float x = transa == CUBLAS_OP_N ? a[row + std::size_t(p) * lda] : a[p + std::size_t(row) * lda];
          const float y = transb == CUBLAS_OP_N ? b[p + std::size_t(col) * ldb] : b[col + std::size_t(p) * ldb];
          sum = std::fma(x, y, sum);
        }
        float& out = c[row + std::size_t(col) * ldc];
        out = *beta == 0.0f ? *alpha * sum : *alpha * sum + *beta * out;
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}
