// Block-scope building blocks the kernels share: strided ownership loops and a block-wide sum.
// (Layering as in CUB: thread -> warp -> block. CUB's BlockReduce needs the block size at
// compile time and static shared memory, which the emulator does not provide; this one takes
// its scratch from the caller's dynamic shared memory.)
#pragma once

#include "kernels/portability.cuh"

namespace rnnsweep::cuda {

// Sum of `value` over the warp, returned to every lane.
template <typename Real>
RNNSWEEP_DEVICE Real warp_sum(Real value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// Sum of `value` over the whole block, returned to every thread. `scratch` holds at least
// 32 Reals of shared memory that no other code touches between the two barriers. Every thread
// of the block must call it (it contains __syncthreads). The block size must be a multiple of
// 32 so that every warp is full.
template <typename Real>
RNNSWEEP_DEVICE Real block_sum(Real value, Real* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  value = warp_sum(value);
  __syncthreads();  // scratch may still be read by a previous block_sum
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  Real total = 0;
  for (int w = 0; w < warps; ++w) total += scratch[w];  // the same order on every thread
  return total;
}

// For every entry e = i + b H of an H x Bt array that this thread owns (e = tid, tid + threads,
// ...): finish(e, i, b, sum_j M(i, j) v[j + b H]), the sums in ascending j.
// This is the matrix product of every time step (forward W_h f, backward W_h^T delta), and its
// cost is shared-memory loads: two per multiply-add when each entry is summed on its own. When
// the block size is a multiple of H, all of a thread's entries share one row i, so M(i, j) is
// loaded once for up to kGroup columns b kept in registers: about 1 + 1/kGroup loads per
// multiply-add. Same sums in the same order either way, so the results are identical.
template <int kGroup, typename Matrix, typename Finish>
RNNSWEEP_DEVICE void owned_products(int H, int Bt, const float* v, const Matrix& M, const Finish& finish) {
  const int tid = threadIdx.x, threads = blockDim.x;
  if (threads % H != 0) {
    for (int e = tid; e < H * Bt; e += threads) {
      const int i = e % H, b = e / H;
      float sum = 0;
      for (int j = 0; j < H; ++j) sum += M(i, j) * v[j + b * H];
      finish(e, i, b, sum);
    }
    return;
  }
  const int i = tid % H, b_step = threads / H;
  for (int b0 = tid / H; b0 < Bt; b0 += b_step * kGroup) {
    float sum[kGroup];
    RNNSWEEP_UNROLL
    for (int g = 0; g < kGroup; ++g) sum[g] = 0;
    for (int j = 0; j < H; ++j) {
      const float m = M(i, j);
      RNNSWEEP_UNROLL
      for (int g = 0; g < kGroup; ++g) {
        const int b = b0 + g * b_step;
        if (b < Bt) sum[g] += m * v[j + b * H];
      }
    }
    RNNSWEEP_UNROLL
    for (int g = 0; g < kGroup; ++g) {
      const int b = b0 + g * b_step;
      if (b < Bt) finish(i + b * H, i, b, sum[g]);
    }
  }
}

// True for a finite number (NaN and +-Inf fail); written out so that it means the same in
// device code and under every host compiler.
RNNSWEEP_DEVICE bool is_finite(double x) { return x - x == 0.0; }

}  // namespace rnnsweep::cuda
