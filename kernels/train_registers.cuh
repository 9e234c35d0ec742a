// The training step with W_h and its gradient held in registers for the whole iteration: the
// fast instances for the study's sizes (H = 32 or 64, batch 16, 32 or 64). CPU twins:
// host/cpu/model.cpp (forward, loss), host/cpu/bptt.cpp, host/cpu/eprop.cpp (e-prop and RFLO),
// host/cpu/adam.h. kernels/train_step.cu serves every other shape and dispatches here.
#pragma once

#include <cstddef>

#include "kernels/train_step.cuh"

namespace rnnsweep::cuda {

// Whether an instance exists for this shape and batch (the compile-time list of
// kernels/train_registers.cu: H 32 or 64 at batch 16, 32 or 64, H 128 at batch 16 or 32, and
// the inputs and outputs of romo (1, 2) or of 2af and dms (3, 3)).
bool registers_instance_exists(const Shape& shape, int Bt);

// Threads per block of the instance of a rule family (H x lanes per row / rows per thread: e-prop
// and RFLO take two rows a thread at H = 32 and at H = 64, batch 16 and 32; BPTT one everywhere).
int registers_threads(const Shape& shape, int Bt, bool bptt);

// Dynamic shared memory of the instance, bptt (which also keeps dL/dy of every step) or not.
size_t registers_shared_bytes(const Shape& shape, int Bt, int T, bool bptt);

// One iteration of the networks of `chunk` whose rule is bptt (bptt = true) or e-prop / RFLO
// (bptt = false); the others' blocks return at once. Same contract as launch_train_step.
void launch_train_registers(const TrainChunk& chunk, bool bptt, std::uint32_t iteration, int log_slot,
                            double bias_correction1, double bias_correction2, cudaStream_t stream);

}  // namespace rnnsweep::cuda
