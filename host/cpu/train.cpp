// The per-network training pipeline of the CPU backend. CUDA twin: kernels/cuda_backend.cu.
#include "host/cpu/train.h"

#include "rnnsweep/init.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>

#include "host/cpu/adam.h"
#include "host/cpu/model.h"
#include "host/cpu/spectra.h"

namespace rnnsweep::cpu {

long long work_units(const Config& config, const NetworkSpec& spec, const RunOptions& options) {
  const bool floss = options.train && spec.floss;
  const int spectra = options.spectra ? 1 + floss + options.train : 0;
  const long tracked = options.train ? tracked_spectra_from(config, 0) : 0;
  return (options.train ? config.iters : 0) + (floss ? config.floss_iters : 0) +
         (spectra + tracked) * config.le_batch;
}

NetworkResult train_network(const Config& grid_config, const NetworkSpec& spec, const RunOptions& options,
                            std::atomic<long long>& progress) {
  const auto start = std::chrono::steady_clock::now();
  const Config config = config_of(grid_config, spec);  // this network's hidden and batch
  const TaskParams& task = config.task(spec.task);
  const Shape shape{config.hidden, task.inputs(), task.outputs(), config.bias};
  const ParamLayout layout(shape);
  const float a = static_cast<float>(task.leak());
  const RunControl no_control;
  const RunControl& control = options.control ? *options.control : no_control;

  NetworkResult r;
  r.spec = spec;
  std::vector<float> params(layout.size), grad(layout.size);
  init_network(shape, spec.init, config.init_options, spec.gain, spec.seed, params.data());
  if (options.keep_weights) r.params_init = params;

  Mat<float> rflo_B;
  if (spec.rule == Rule::rflo) {
    const std::vector<float> B = rflo_feedback(shape, spec.seed);
    rflo_B = Eigen::Map<const Mat<float>>(B.data(), shape.H, shape.O);
  }

  auto spectrum = [&] {
    auto lambda = network_spectrum(config, task, shape, params.data(), spec.seed);
    progress += config.le_batch;
    return lambda;
  };
  // le_every > 0: the leading exponents during training, on the spectra's own inputs
  auto track = [&](long iteration) {
    r.tracked.push_back({iteration, network_spectrum(config, task, shape, params.data(), spec.seed, config.le_track_k)});
    progress += config.le_batch;
  };
  auto interrupted = [&r] {
    r.interrupted = true;
    return r;
  };

  // A checkpoint from an interrupted run continues the training loop where it stopped, with
  // everything computed before it (spectra, flossing) restored rather than recomputed.
  std::optional<NetworkCheckpoint> saved;
  if (options.train && control.resume) saved = control.resume(spec.id);
  AdamState<float> adam(params.size());
  // Loss and accuracy of every iteration, for the curve and the tail means.
  std::vector<double> losses, accuracies;
  long first_iteration = 0;
  if (saved) {
    // (A checkpoint with fewer losses than iterations is of a network that had diverged; the
    // CUDA backend writes those, since its networks stay in their chunk until it finishes.)
    if (saved->params.size() != params.size() || saved->adam_m.size() != params.size() ||
        saved->adam_v.size() != params.size() || saved->iteration < 0 || saved->iteration > config.iters ||
        saved->losses.size() > size_t(saved->iteration))
      throw std::runtime_error("the checkpoint of network " + std::to_string(spec.id) +
                               " does not fit this config's shapes or iterations");
    params = saved->params;
    adam.m = saved->adam_m;
    adam.v = saved->adam_v;
    adam.step = saved->adam_step;
    losses = saved->losses;
    accuracies = saved->accuracies;
    first_iteration = saved->iteration;
    r.spectrum_init = saved->spectrum_init;
    r.spectrum_flossed = saved->spectrum_flossed;
    r.floss_curve = saved->floss_curve;
    r.tracked = saved->tracked;
    progress += work_units(config, spec, options) - (config.iters - first_iteration) -
                (options.spectra ? config.le_batch : 0) -
                tracked_spectra_from(config, first_iteration) * config.le_batch;
  } else {
    if (options.spectra) r.spectrum_init = spectrum();
    if (options.train && spec.floss) {
      if (control.stopping()) return interrupted();
      r.floss_curve = floss_network(config, task, shape, params.data(), spec.seed);
      progress += config.floss_iters;
      if (options.spectra) r.spectrum_flossed = spectrum();
    }
  }

  r.trained = options.train;
  if (options.train) {
    AdamHyper hyper{config.adam_beta1, config.adam_beta2, config.adam_eps};
    Trials trials;
    Forward<float> fwd;
    Mat<float> dL_dy;
    losses.reserve(config.iters);
    accuracies.reserve(config.iters);
    auto save = [&](long next_iteration) {
      if (!control.checkpoint) return;
      NetworkCheckpoint c;
      c.id = spec.id;
      c.iteration = next_iteration;
      c.params = params;
      c.adam_m = adam.m;
      c.adam_v = adam.v;
      c.adam_step = adam.step;
      c.losses = losses;
      c.accuracies = accuracies;
      c.spectrum_init = r.spectrum_init;
      c.spectrum_flossed = r.spectrum_flossed;
      c.floss_curve = r.floss_curve;
      c.tracked = r.tracked;
      control.checkpoint(c);
    };
    long diverged_at = -1;
    if (losses.size() < size_t(first_iteration)) {
      diverged_at = long(losses.size());
      progress += config.iters - first_iteration + tracked_spectra_from(config, first_iteration) * config.le_batch;
      first_iteration = config.iters;  // nothing left to train
    }
    for (long it = first_iteration; it < config.iters; ++it) {
      if (control.stopping()) {
        save(it);
        return interrupted();
      }
      if (control.checkpoint_every > 0 && it > first_iteration && it % control.checkpoint_every == 0) save(it);
      fill_trials(task, Purpose::trials, spec.data_seed, static_cast<std::uint32_t>(it), config.batch, trials);
      forward(shape, a, params.data(), trials, fwd);
      const LossValue lv = task_loss(trials, fwd.y, &dL_dy);
      if (!std::isfinite(lv.loss)) {
        // Frozen from here: the loss of the parameters after iteration it - 1 is NaN/Inf.
        diverged_at = it;
        progress += config.iters - it + tracked_spectra_from(config, it) * config.le_batch;
        break;
      }
      losses.push_back(lv.loss);
      accuracies.push_back(lv.accuracy);
      if (tracks_spectrum_at(config, it)) track(it);

      if (spec.rule == Rule::bptt) {
        bptt_gradient(shape, a, params.data(), fwd, dL_dy, grad.data());
      } else {
        const Mat<float> feedback =
            spec.rule == Rule::rflo ? rflo_B : Mat<float>(ConstNet<float>(shape, params.data()).w.transpose());
        eprop_gradient(shape, a, params.data(), fwd, dL_dy, feedback, grad.data());
      }
      if (config.optimizer == "adam")
        adam_step(params.data(), grad.data(), params.size(), spec.lr, hyper, adam);
      else
        sgd_step(params.data(), grad.data(), params.size(), spec.lr);
      ++progress;
    }
    // An update in the very last iteration that broke the weights is caught here.
    const bool finite = Eigen::Map<const Vec<float>>(params.data(), params.size()).allFinite();
    summarise_training(config, losses, accuracies, diverged_at, finite, r);
    if (config.le_every > 0 && diverged_at < 0) {
      if (r.diverged)
        progress += config.le_batch;  // the weights broke in the last update: no spectrum of them
      else
        track(config.iters);
    }
  }
  // A diverged network's weights may hold NaN or Inf: it has no meaningful trained spectrum.
  if (options.train && options.spectra) {
    if (r.diverged)
      progress += config.le_batch;
    else
      r.spectrum_trained = spectrum();
  }
  if (options.keep_weights) r.params_final = params;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace rnnsweep::cpu
