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

// True for a finite number (NaN and +-Inf fail); written out so that it means the same in
// device code and under every host compiler.
RNNSWEEP_DEVICE bool is_finite(double x) { return x - x == 0.0; }

}  // namespace rnnsweep::cuda
