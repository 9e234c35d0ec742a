// Tasks from a file (`tasks = ["file:NAME"]` with a table [file.NAME], docs/model.md section 3.4):
// an .npz holding the trials as arrays, read and validated once when the config is loaded, so that
// a bad file stops the run with one line before any work.
//
// Arrays (numpy's .npz, as numpy.savez or numpy.savez_compressed write it; C or Fortran order):
//   x        N x T x I   float32 or float64        the inputs of N trials of T steps
//   labels   N x T       integers in [0, outputs)  classification: cross-entropy over every step,
//                                                  label 0 the fixation / no-decision label
//   target   N x T x O   float                     regression: masked squared error, as romo
//   mask     N x T x O   float >= 0 or bool        (every trial with a step that counts)
//   x_eval, labels_eval / target_eval, mask_eval   optional held-out pool of the same T, I, O
//   outputs  scalar integer                        classification: the number of outputs
//                                                  (default: the largest label + 1, at least 2)
//   dt_over_tau, or dt and tau   scalars           the leak, unless the config's table sets it
// Other arrays are ignored (an exporter's notes: env id, version, ...).
//
// Both backends draw trials from the pool with the shared generator (include/rnnsweep/task.h):
// the trial of counter (iteration, b) is row to_index(word 0, N), uniformly with replacement.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rnnsweep/task.h"

namespace rnnsweep {

// The arrays of one task file, as the generator reads them (float32 and int32, C order).
struct TaskData {
  struct Pool {
    std::vector<float> x, target, mask;
    std::vector<int> labels;
    int trials = 0;
  };
  Pool train, eval;  // eval.trials == 0: the file has no held-out pool
  int T = 0, I = 0, O = 0;
  bool classification = false;
  double dt_over_tau = -1;      // from the file's scalars (dt_over_tau, or dt / tau); -1 when it has none
  std::uintmax_t size = 0;      // bytes of the file
  std::string hash;             // FNV-1a 64 of its bytes, 16 hex digits
  std::vector<std::string> arrays;  // every array the file holds, in file order
};

// Reads and validates the file of task `name` (for messages). Throws UsageError with one line
// naming the task, the file, the array and the problem.
std::shared_ptr<const TaskData> read_task_file(const std::string& name, const std::string& path);

// The generator's parameters for `data` with leak a = 1 - dt_over_tau (host pointers into `data`,
// which must outlive them).
TaskParams file_task_params(const TaskData& data, double dt_over_tau);

// FNV-1a 64 of a file's bytes, 16 hex digits, and its size; throws UsageError if unreadable.
std::string file_hash(const std::string& path, std::uintmax_t* size = nullptr);

}  // namespace rnnsweep
