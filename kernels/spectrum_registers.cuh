// The Lyapunov spectrum with the frame's columns in registers: the fast instances for full
// spectra of the study's sizes (k = H = 32 or 64). CPU twins: host/cpu/spectra.cpp
// (driven_states, random_frame, network_spectrum) and host/cpu/lyapunov.cpp (qr_positive,
// lyapunov_spectrum). kernels/lyapunov.cu serves every other shape and dispatches here.
#pragma once

#include <cstddef>

#include "kernels/lyapunov.cuh"

namespace rnnsweep::cuda {

// Whether an instance exists for this hidden size and number of exponents (k = H = 32 or 64).
bool spectrum_registers_exists(const Shape& shape, int k);

// Threads per block of the instance (4 k: four lanes per column of the frame).
int spectrum_registers_threads(const Shape& shape, int k);

// Dynamic shared memory of the instance for the trials of `task`.
size_t spectrum_registers_shared_bytes(const Shape& shape, int k, const TaskParams& task);

// Same contract as launch_spectrum (chunk.frames is not used).
void launch_spectrum_registers(const SpectrumChunk& chunk, cudaStream_t stream);

}  // namespace rnnsweep::cuda
