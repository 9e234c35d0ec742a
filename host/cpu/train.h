// Training one network from its grid point to its results, on the calling thread.
// This is the whole per-network pipeline of the CPU backend: init, (flossing), spectra,
// the training loop, spectra again. CUDA twin: kernels/cuda_backend.cu.
#pragma once

#include <atomic>

#include "host/cpu/model.h"
#include "rnnsweep/backend.h"

namespace rnnsweep::cpu {

// `progress` is advanced by one unit per training iteration, flossing iteration and spectrum
// trajectory (see work_units).
NetworkResult train_network(const Config& config, const NetworkSpec& spec, const RunOptions& options,
                            std::atomic<long long>& progress);

// The held-out loss and accuracy (eval_every): the means over `batches` of task_loss, each
// batch as training computes its loss.
LossValue held_out_loss(const Shape& shape, float a, const float* params, const std::vector<Trials>& batches,
                        Forward<float>& fwd);

// cos(u, v) of two n-vectors, summed in double (alignment); NaN where either is zero.
double cosine(const float* u, const float* v, size_t n);

// The units train_network advances `progress` by, for this network.
long long work_units(const Config& config, const NetworkSpec& spec, const RunOptions& options);

}  // namespace rnnsweep::cpu
