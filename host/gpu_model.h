// The time a grid would take on an H200, from the static model of the CUDA kernels
// (bench/MODEL.md), for `rnnsweep plan --backend cuda` where no GPU is at hand (a login node).
// A model, not a measurement: `rnnsweep plan` on the GPU node times the real thing.
#pragma once

#include <string>
#include <vector>

#include "rnnsweep/backend.h"
#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"

namespace rnnsweep {

struct GpuModelEstimate {
  double train_s = 0, spectra_s = 0, floss_s = 0;
  std::vector<std::string> notes;  // one line per approximation made (shapes without a model, ...)
  double total() const { return train_s + spectra_s + floss_s; }
};

GpuModelEstimate model_gpu_time(const Config& config, const std::vector<NetworkSpec>& networks,
                                const RunOptions& options);

}  // namespace rnnsweep
