// The layered training path: every hidden size the config accepts, on cuBLAS. CPU twins:
// host/cpu/model.cpp (forward, loss), host/cpu/bptt.cpp, host/cpu/eprop.cpp, host/cpu/adam.h.
//
// The fused kernels (train_registers.cu, train_mma.cu, train_step.cu) keep a network's state in
// one block's shared memory, which caps hidden (338 at batch 32 on an H100 / H200). Here the
// state lives in global memory and an iteration is a sequence of launches over the chunk: per
// time step a strided-batched GEMM (W_h f_t for every network at once) and a kernel for the
// rest of the step; then the gradients of W_h as one GEMM over all T batch columns (e-prop: L
// e^T, as host/cpu/eprop.cpp does) or BPTT's backward recursion (a GEMM and a kernel per step)
// and one GEMM for delta f^T; then Adam. Launch overheads are per step, not per network, and at
// large hidden the GEMMs dominate.
#pragma once

#include <cstddef>

#include "kernels/train_step.cuh"

namespace rnnsweep::cuda {

// Whether this build has the layered path: on the emulator always (it has a twin of the one
// cuBLAS routine); compiled by nvcc where CMake found cuBLAS (RNNSWEEP_WITH_CUBLAS).
bool layered_available();

// Floats of the layered path's scratch per network (TrainChunk::layered).
size_t layered_floats(const Shape& shape, int Bt, int T);

// One iteration of every network of the chunk (all rules) on the layered path: the trials
// must be generated (launch_generate_chunk_trials), chunk.layered, history, output_grad and
// grad_global allocated (TrainScratch with layered = true). Same contract as launch_train_step.
void launch_train_layered(const TrainChunk& chunk, std::uint32_t iteration, int log_slot, double bias_correction1,
                          double bias_correction2, cudaStream_t stream);

}  // namespace rnnsweep::cuda
