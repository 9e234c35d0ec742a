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
// Keep the next loop rolled (a long loop whose unrolled copies would only cost registers).
#define RNNSWEEP_NO_UNROLL _Pragma("unroll 1")

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
#define RNNSWEEP_NO_UNROLL _Pragma("GCC unroll 1")

#endif

// threadIdx.x read afresh (a volatile read the compiler cannot merge with an earlier one): what a
// kernel derives from it after its time loop is then recomputed there instead of being kept in
// registers, or spilled, through the loop.
#if defined(__CUDACC__)
__device__ __forceinline__ int fresh_thread_index() {
  unsigned t;
  asm volatile("mov.u32 %0, %%tid.x;" : "=r"(t));
  return int(t);
}
#else
inline int fresh_thread_index() { return int(threadIdx.x); }
#endif

// ---- TF32 tensor cores (sm_80 and later): the two operations kernels/train_mma.cu needs ----
// to_tf32(x): x rounded to TF32 (10 mantissa bits, to nearest, ties away from zero:
// cvt.rna.tf32.f32), as its bits with the low 13 zero. mma_tf32(d, a, b): d += A B on the warp's
// m16n8k8 fragments (PTX's mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32; the fragment
// layout is written out in the emulator's twin, tests/emulator/block_emulator.cpp). Every lane of
// a full warp calls it together, as a shuffle.
#include <cstdint>
#if defined(__CUDACC__)
__device__ __forceinline__ std::uint32_t to_tf32(float x) {
  std::uint32_t out;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(out) : "f"(x));
  return out;
}
__device__ __forceinline__ void mma_tf32(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#else
#include <cstring>
inline std::uint32_t to_tf32(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u)                    // inf stays inf, NaN a NaN
    return (bits & 0x007fffffu) != 0 ? 0x7fffffffu : bits;
  return (bits + 0x1000u) & ~std::uint32_t(0x1fff);  // half of the dropped part: ties away from 0
}
inline void mma_tf32(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2]) {
  ::rnnsweep::emu::warp_mma_tf32(d, a, b);
}
#endif
// The TF32 value of bits made by to_tf32, as a float.
RNNSWEEP_DEVICE float tf32_value(std::uint32_t bits) {
#if defined(__CUDACC__)
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
#endif
}
