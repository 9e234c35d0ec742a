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

// The same batch copied back to the host, in the layout of cpu::Trials (for tests and tools).
cpu::Trials device_trials(const TaskParams& task, Purpose purpose, std::uint32_t seed,
                          std::uint32_t iteration, int batch);

}  // namespace rnnsweep::cuda
