// Task trials generated on the device. CPU twin: host/cpu/tasks.cpp; both run the shared
// per-trial generator of include/rnnsweep/task.h on the same Philox words.
#pragma once

#include <cstdint>

#include "host/cpu/tasks.h"
#include "kernels/portability.cuh"
#include "rnnsweep/task.h"

namespace rnnsweep::cuda {

// Writes the batch `iteration` of the stream (purpose, seed) into device memory laid out as
// TrialView describes (out.T, out.Bt, out.I, out.O must match the task). Asynchronous on
// `stream`; throws on a precondition or launch error.
void launch_generate_trials(const TaskParams& task, Purpose purpose, std::uint32_t seed,
                            std::uint32_t iteration, const TrialView& out, cudaStream_t stream);

// The batch `iteration` of every network of a chunk, one thread per (network, trial): network n
// draws from (purpose, seeds[n]) into arrays laid out as `first` (network 0's view), networks
// back to back. Networks with skip[n] >= 0 (diverged; null: none) are left alone. Asynchronous.
void launch_generate_chunk_trials(const TaskParams& task, Purpose purpose, int K, const std::uint32_t* seeds,
                                  std::uint32_t iteration, const TrialView& first, const int* skip,
                                  cudaStream_t stream);

// The same batch copied back to the host, in the layout of cpu::Trials (for tests and tools).
cpu::Trials device_trials(const TaskParams& task, Purpose purpose, std::uint32_t seed,
                          std::uint32_t iteration, int batch);

}  // namespace rnnsweep::cuda
