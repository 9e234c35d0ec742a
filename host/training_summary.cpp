// What both backends share after training a network: the statistics of its losses.
#include <algorithm>
#include <cmath>
#include <limits>

#include "rnnsweep/backend.h"

namespace rnnsweep {

void summarise_training(const Config& config, const std::vector<double>& losses,
                        const std::vector<double>& accuracies, long diverged_at, bool final_params_finite,
                        NetworkResult& r) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  r.iterations = static_cast<long>(losses.size());
  r.diverged = diverged_at >= 0;
  r.diverged_at = diverged_at;
  r.curve.clear();
  for (long it = 0; it < r.iterations; ++it)
    if (it % config.log_every == 0 || it == config.iters - 1)
      r.curve.push_back({it, losses[it], accuracies[it]});
  r.best_loss = losses.empty() ? nan : *std::min_element(losses.begin(), losses.end());
  if (r.diverged || losses.empty()) {
    r.final_loss = r.final_accuracy = r.tail_loss = r.tail_accuracy = nan;
  } else {
    r.final_loss = losses.back();
    r.final_accuracy = accuracies.back();
    const size_t tail = std::max<size_t>(1, (losses.size() + 9) / 10);
    double sl = 0, sa = 0;
    for (size_t i = losses.size() - tail; i < losses.size(); ++i) sl += losses[i], sa += accuracies[i];
    r.tail_loss = sl / tail;
    r.tail_accuracy = sa / tail;
  }
  // Divergence is seen in the loss of the next iteration; an update in the very last one that
  // broke the weights is caught here.
  if (!r.diverged && !final_params_finite) {
    r.diverged = true;
    r.diverged_at = config.iters;
    r.final_loss = r.final_accuracy = r.tail_loss = r.tail_accuracy = nan;
  }
  // The held-out twins, from the eval points (r.probes, taken during training): the last one
  // (iteration iters - 1) and the mean of those in the tail's iterations, or the last alone
  // where eval_every is longer than the tail.
  r.eval_final_loss = r.eval_final_accuracy = r.eval_tail_loss = r.eval_tail_accuracy = nan;
  r.evaluated = config.eval_every > 0;
  std::vector<const ProbePoint*> evals;
  for (const ProbePoint& p : r.probes)
    if (p.evaluated) evals.push_back(&p);
  if (!r.diverged && !evals.empty()) {
    r.eval_final_loss = evals.back()->eval_loss;
    r.eval_final_accuracy = evals.back()->eval_accuracy;
    const long tail_start = r.iterations - std::max<long>(1, (r.iterations + 9) / 10);
    double sl = 0, sa = 0;
    int n = 0;
    for (const ProbePoint* p : evals)
      if (p->iteration >= tail_start) sl += p->eval_loss, sa += p->eval_accuracy, ++n;
    r.eval_tail_loss = n > 0 ? sl / n : r.eval_final_loss;
    r.eval_tail_accuracy = n > 0 ? sa / n : r.eval_final_accuracy;
  }
  // A regression file task without accuracy = "response" has no accuracy: NaN (an empty field in
  // the tables) rather than the number its loss code computes from the romo rule.
  if (!config.task_has_accuracy(r.spec.task, r.spec.file)) {
    for (CurvePoint& p : r.curve) p.accuracy = nan;
    for (ProbePoint& p : r.probes) p.eval_accuracy = nan;
    r.final_accuracy = r.tail_accuracy = r.eval_final_accuracy = r.eval_tail_accuracy = nan;
  }
}

}  // namespace rnnsweep
