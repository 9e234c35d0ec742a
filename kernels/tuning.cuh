// Autotuning: every instance of the training, spectrum and flossing kernels (their *_candidates)
// is validated against the heuristic's instance on the same networks, then timed, shape by
// shape, on the GPU at hand; the fastest of each shape goes into the tuning table
// (host/tuning.h) that the CUDA backend reads. `rnnsweep tune` runs it (scripts/device-check.sh
// does, on the GPU machine). No CPU twin: the CPU backend has no instances to choose. On the
// block emulator it runs too (tests), with timings that mean nothing.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "host/tuning.h"
#include "rnnsweep/task.h"

namespace rnnsweep::cuda {

// One shape to tune: the task's default parameters (its T, I, O), hidden size and batch. The
// spectrum is tuned at k = H (the full spectrum), flossing at k = min(32, H).
struct TuneShape {
  TaskKind task = TaskKind::romo;
  int H = 64, Bt = 32;
};

struct TuneOptions {
  int networks = 1024;  // networks per launch (a chunk's worth: what a real run launches)
  int launches = 3;     // timed launches per instance, after one warm-up; the median counts
  long spectrum_steps = 20, floss_steps = 10;
  std::function<void(const std::string&)> log;  // one line per instance timed (may be empty)
};

// Validates and times every instance of every shape on the current device; shapes that no
// instance can run are skipped with a log line. The entries name the device's GPU.
GpuTuning autotune(const std::vector<TuneShape>& shapes, const TuneOptions& options);

// The name CUDA gives the current device (the tuning table's key).
std::string current_gpu_name();

}  // namespace rnnsweep::cuda
