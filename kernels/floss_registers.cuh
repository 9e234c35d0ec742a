// Gradient flossing with the chain's frame in registers: the fast instances for the study's
// flossing shapes (H = 64 with floss_k = 32, and H = k = 32). CPU twins: host/cpu/floss.cpp
// (floss_loss_and_gradient, qr_positive_backward) and host/cpu/spectra.cpp (floss_network).
// kernels/floss.cu serves every other shape and dispatches here.
#pragma once

#include <cstddef>

#include "kernels/floss.cuh"

namespace rnnsweep::cuda {

// Whether an instance exists for this hidden size and number of exponents.
bool floss_registers_exists(const Shape& shape, int k);

// Threads per block of the instance (4 k: four lanes per column of the frame).
int floss_registers_threads(const Shape& shape, int k);

// Dynamic shared memory of the instance for the trials of `task`.
size_t floss_registers_shared_bytes(const Shape& shape, int k, const TaskParams& task);

// Same contract as launch_floss_iteration; the chunk's scratch is used as floss_scratch_doubles
// sizes it (the frames, triangles and slopes of the chain).
void launch_floss_registers(const FlossChunk& chunk, long iteration, cudaStream_t stream);

}  // namespace rnnsweep::cuda
