// Training one network from its grid point to its results, on the calling thread.
// This is the whole per-network pipeline of the CPU backend: init, (flossing), spectra,
// the training loop, spectra again. CUDA twin: kernels/cuda_backend.cu.
#pragma once

#include <atomic>

#include "rnnsweep/backend.h"

namespace rnnsweep::cpu {

// `progress` is advanced by one unit per training iteration, flossing iteration and spectrum
// trajectory (see work_units).
NetworkResult train_network(const Config& config, const NetworkSpec& spec, const RunOptions& options,
                            std::atomic<long long>& progress);

// The units train_network advances `progress` by, for this network.
long long work_units(const Config& config, const NetworkSpec& spec, const RunOptions& options);

}  // namespace rnnsweep::cpu
