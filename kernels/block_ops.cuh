// Block-scope building blocks the kernels share: strided ownership loops and a block-wide sum.
// (Layering as in CUB: thread -> warp -> block. CUB's BlockReduce needs the block size at
// compile time and static shared memory, which the emulator does not provide; this one takes
// its scratch from the caller's dynamic shared memory.)
#pragma once

#include <cstddef>

#include "kernels/portability.cuh"
#include "rnnsweep/rng.h"  // RNNSWEEP_HD

namespace rnnsweep::cuda {

// Offsets of the arrays of a block's dynamic shared memory, in `Unit`s (float or double): each
// take(n) returns where the next n start, 16-byte aligned so that they can be read as 128-bit
// vectors; size() is the total. Used by every kernel's layout function, on the host (to size
// the launch) and on the device (to find the arrays), so it must give the same on both.
template <typename Unit>
struct SharedCarver {
  static constexpr size_t kAlign = 16 / sizeof(Unit);
  size_t at = 0;
  RNNSWEEP_HD size_t take(size_t n) {
    const size_t start = at;
    at += (n + kAlign - 1) / kAlign * kAlign;
    return start;
  }
  RNNSWEEP_HD size_t size() const { return at; }
};

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

// For every entry e = i + j H of an H x H matrix that this thread owns (e = tid, tid + threads,
// ...): finish(e, sum_b u[i + b H] v[j + b H]), the sum in ascending b over the Bt columns of
// the H x Bt arrays u and v in shared memory. This is the rank-Bt update of dW_h every step
// (e-prop: signal x trace; BPTT: delta x f). As in owned_products, when the block size is a
// multiple of H a thread's entries share one row i, so u[i + b H] is loaded once for up to
// kGroup columns j kept in registers; same sums, same order, identical results.
template <int kGroup, typename Finish>
RNNSWEEP_DEVICE void owned_outer_products(int H, int Bt, const float* u, const float* v, const Finish& finish) {
  const int tid = threadIdx.x, threads = blockDim.x;
  if (threads % H != 0) {
    for (int e = tid; e < H * H; e += threads) {
      const int i = e % H, j = e / H;
      float sum = 0;
      for (int b = 0; b < Bt; ++b) sum += u[i + b * H] * v[j + b * H];
      finish(e, sum);
    }
    return;
  }
  const int i = tid % H, j_step = threads / H;
  for (int j0 = tid / H; j0 < H; j0 += j_step * kGroup) {
    float sum[kGroup];
    RNNSWEEP_UNROLL
    for (int g = 0; g < kGroup; ++g) sum[g] = 0;
    for (int b = 0; b < Bt; ++b) {
      const float left = u[i + b * H];
      RNNSWEEP_UNROLL
      for (int g = 0; g < kGroup; ++g) {
        const int j = j0 + g * j_step;
        if (j < H) sum[g] += left * v[j + b * H];
      }
    }
    RNNSWEEP_UNROLL
    for (int g = 0; g < kGroup; ++g) {
      const int j = j0 + g * j_step;
      if (j < H) finish(i + j * H, sum[g]);
    }
  }
}

// True for a finite number (NaN and +-Inf fail); written out so that it means the same in
// device code and under every host compiler.
RNNSWEEP_DEVICE bool is_finite(double x) { return x - x == 0.0; }

}  // namespace rnnsweep::cuda
