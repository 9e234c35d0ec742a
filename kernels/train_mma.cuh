// The training step on tensor cores, precision = "tf32x3": the step products on mma.sync TF32
// with the 3xTF32 split, so that results keep FP32's accuracy. CPU twins: host/cpu/model.cpp
// (forward, loss), host/cpu/bptt.cpp, host/cpu/eprop.cpp (e-prop and RFLO), host/cpu/adam.h. Its
// FP32 twin on the GPU is kernels/train_registers.cu; kernels/train_step.cu dispatches here.
#pragma once

#include <cstddef>

#include "kernels/train_step.cuh"

namespace rnnsweep::cuda {

// Whether a tensor-core instance exists for this shape and batch (the compile-time list of
// kernels/train_mma.cu: H 32 or 64, batch 16, 32 or 64, and the inputs and outputs of romo (1,
// 2) or of 2af and dms (3, 3)).
bool mma_instance_exists(const Shape& shape, int Bt);

// Threads per block of the instance (a warp per 16 rows x 16 batch columns).
int mma_threads(const Shape& shape, int Bt);

// Dynamic shared memory of the instance, bptt (which also keeps dL/dy of every step) or not.
size_t mma_shared_bytes(const Shape& shape, int Bt, int T, bool bptt);

// One iteration of the networks of `chunk` whose rule is bptt (bptt = true) or e-prop / RFLO
// (bptt = false); the others' blocks return at once. Same contract as launch_train_step.
void launch_train_mma(const TrainChunk& chunk, bool bptt, std::uint32_t iteration, int log_slot,
                      double bias_correction1, double bias_correction2, cudaStream_t stream);

}  // namespace rnnsweep::cuda
