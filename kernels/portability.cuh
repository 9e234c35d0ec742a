// The one header through which kernels/ touches CUDA: the launch macro, dynamic shared memory
// and the qualifiers. Under nvcc it maps to CUDA itself. Compiled by a plain C++ compiler (the
// tests on machines without a GPU), it maps to the block emulator of tests/emulator/, which
// runs each block's threads as fibers with __syncthreads as a block barrier and warp shuffles
// as a warp barrier, and provides the small subset of the CUDA runtime the backend calls
// (cudaMalloc, cudaMemcpy, ...) over host memory. The kernels' own source is the same in both
// places; nothing else under kernels/ knows which one it is compiled for.
//
// Rules for kernel code, so that both mappings hold:
// - shared memory only through RNNSWEEP_DYNAMIC_SHARED (no static __shared__ arrays);
// - launches only through RNNSWEEP_LAUNCH;
// - every thread of a block reaches every __syncthreads (the emulator reports a deadlock
//   otherwise, as a real GPU may hang), and every lane of a warp every shuffle;
// - no result may depend on the order threads run in: no float atomics, no reads of shared
//   memory before it is written. The emulator runs every launch of the tests under several
//   schedules and fails on any bit that differs (tests/emulator/block_emulator.h).
#pragma once

#if defined(__CUDACC__)

#include <cuda_pipeline_primitives.h>  // __pipeline_memcpy_async (cp.async) and its waits
#include <cuda_runtime.h>

#define RNNSWEEP_KERNEL __global__
#define RNNSWEEP_DEVICE __device__ __forceinline__
// The block's dynamic shared memory as an array of `type` named `name` (16-byte aligned).
#define RNNSWEEP_DYNAMIC_SHARED(type, name)                         \
  extern __shared__ __align__(16) unsigned char rnnsweep_shared_[]; \
  type* name = reinterpret_cast<type*>(rnnsweep_shared_)
// RNNSWEEP_LAUNCH(kernel, grid, block, shared_bytes, stream)(arguments...)
#define RNNSWEEP_LAUNCH(kernel, grid, block, shared_bytes, stream) \
  kernel<<<(grid), (block), (shared_bytes), (stream)>>>
#define RNNSWEEP_EMULATED 0
// Unroll the next loop (its trip count is a compile-time constant).
#define RNNSWEEP_UNROLL _Pragma("unroll")

#else

#include "tests/emulator/block_emulator.h"

#define RNNSWEEP_KERNEL
#define RNNSWEEP_DEVICE inline
#define RNNSWEEP_DYNAMIC_SHARED(type, name) \
  type* name = reinterpret_cast<type*>(::rnnsweep::emu::dynamic_shared())
#define RNNSWEEP_LAUNCH(kernel, grid, block, shared_bytes, stream) \
  ::rnnsweep::emu::launcher((kernel), #kernel, (grid), (block), (shared_bytes), (stream))
#define RNNSWEEP_EMULATED 1
#define RNNSWEEP_UNROLL _Pragma("GCC unroll 8")

#endif
