// Batches of task trials on the host. CUDA twin: kernels/tasks.cu.
#include "host/cpu/tasks.h"

namespace rnnsweep::cpu {

void fill_trials(const TaskParams& task, Purpose purpose, std::uint32_t seed, std::uint32_t iteration,
                 int batch, Trials& out) {
  out.task = task;
  out.T = task.T();
  out.Bt = batch;
  out.I = task.inputs();
  out.O = task.outputs();
  const size_t steps = size_t(out.T) * batch;
  out.x.resize(steps * out.I);
  if (task.classification()) {
    out.label.resize(steps);
    out.target.clear();
    out.mask.clear();
  } else {
    out.target.resize(steps * out.O);
    out.mask.resize(steps * out.O);
    out.label.clear();
  }
  const TrialView view{out.T, batch, out.I, out.O, out.x.data(),
                       out.target.empty() ? nullptr : out.target.data(),
                       out.mask.empty() ? nullptr : out.mask.data(),
                       out.label.empty() ? nullptr : out.label.data()};
  const Philox rng(purpose, seed);
  for (int b = 0; b < batch; ++b) generate_trial(task, rng, iteration, b, view);
}

}  // namespace rnnsweep::cpu
