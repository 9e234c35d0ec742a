// Batches of task trials on the host (docs/model.md, section 3). CUDA twin: kernels/tasks.cu.
// Both call the shared per-trial generator `generate_trial` (include/rnnsweep/task.h).
#pragma once

#include <cstdint>
#include <vector>

#include "rnnsweep/task.h"

namespace rnnsweep::cpu {

// One batch of Bt trials of T steps, laid out as `TrialView` describes.
struct Trials {
  TaskParams task;
  int T = 0, Bt = 0, I = 0, O = 0;
  std::vector<float> x;       // T * Bt * I
  std::vector<float> target;  // T * Bt * O (regression tasks)
  std::vector<float> mask;    // T * Bt * O (regression tasks)
  std::vector<int> label;     // T * Bt     (classification tasks)
};

// Sets the shape of `out` for `batch` trials of `task` and sizes its arrays (reusing storage):
// x always; target and mask for regression tasks, label for classification tasks.
void shape_trials(const TaskParams& task, int batch, Trials& out);

// A view of `out`'s arrays for generate_trial (null for the arrays the task does not use).
TrialView view_of(Trials& out);

// Fills `out` (reusing its storage) with the batch of `iteration` of the stream (purpose, seed).
void fill_trials(const TaskParams& task, Purpose purpose, std::uint32_t seed, std::uint32_t iteration,
                 int batch, Trials& out);

// The training batch of a network with this data seed at this iteration.
inline Trials training_trials(const TaskParams& task, std::uint32_t data_seed, std::uint32_t iteration,
                              int batch) {
  Trials t;
  fill_trials(task, Purpose::trials, data_seed, iteration, batch, t);
  return t;
}

}  // namespace rnnsweep::cpu
