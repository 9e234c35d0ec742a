// Batches of task trials on the host. CUDA twin: kernels/tasks.cu.
#include "host/cpu/tasks.h"

namespace rnnsweep::cpu {

void shape_trials(const TaskParams& task, int batch, Trials& out) {
  out.task = task;
  out.T = task.T();
  out.Bt = batch;
  out.I = task.inputs();
  out.O = task.outputs();
  const size_t steps = size_t(out.T) * batch;
  out.x.resize(steps * out.I);
  out.target.resize(task.classification() ? 0 : steps * out.O);
  out.mask.resize(task.classification() ? 0 : steps * out.O);
  out.label.resize(task.classification() ? steps : 0);
}

TrialView view_of(Trials& t) {
  return TrialView{t.T,
                   t.Bt,
                   t.I,
                   t.O,
                   t.x.data(),
                   t.target.empty() ? nullptr : t.target.data(),
                   t.mask.empty() ? nullptr : t.mask.data(),
                   t.label.empty() ? nullptr : t.label.data()};
}

void fill_trials(const TaskParams& task, Purpose purpose, std::uint32_t seed, std::uint32_t iteration,
                 int batch, Trials& out) {
  shape_trials(task, batch, out);
  const TrialView view = view_of(out);
  const Philox rng(purpose, seed);
  for (int b = 0; b < batch; ++b) generate_trial(task, rng, iteration, b, view);
}

}  // namespace rnnsweep::cpu
