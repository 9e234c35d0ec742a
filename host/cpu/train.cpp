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
  return (options.train ? config.iters : 0) +
         (floss ? config.floss_iters + floss_episodes_from(config, 0) * config.floss_iters_each : 0) +
         (spectra + tracked) * config.le_batch;
}

LossValue held_out_loss(const Shape& shape, float a, const float* params, const std::vector<Trials>& batches,
                        Forward<float>& fwd) {
  LossValue sum{0, 0};
  for (const Trials& trials : batches) {
    forward(shape, a, params, trials, fwd);
    const LossValue lv = task_loss(trials, fwd.y, static_cast<Mat<float>*>(nullptr));
    sum.loss += lv.loss;
    sum.accuracy += lv.accuracy;
  }
  return {sum.loss / double(batches.size()), sum.accuracy / double(batches.size())};
}

double cosine(const float* u, const float* v, size_t n) {
  double uv = 0, uu = 0, vv = 0;
  for (size_t e = 0; e < n; ++e) {
    uv += double(u[e]) * v[e];
    uu += double(u[e]) * u[e];
    vv += double(v[e]) * v[e];
  }
  return uv / std::sqrt(uu * vv);  // NaN where either is zero
}

NetworkResult train_network(const Config& grid_config, const NetworkSpec& spec, const RunOptions& options,
                            std::atomic<long long>& progress) {
  const auto start = std::chrono::steady_clock::now();
  const Config config = config_of(grid_config, spec);  // this network's hidden and batch
  const TaskParams& task = task_of(config, spec);
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
  // the progress units of the episodes and tracked spectra at or after training iteration i
  auto units_from = [&](long i) {
    return tracked_spectra_from(config, i) * config.le_batch +
           (spec.floss ? floss_episodes_from(config, i) * config.floss_iters_each : 0);
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
    r.probes = saved->probes;
    progress += work_units(config, spec, options) - (config.iters - first_iteration) -
                (options.spectra ? config.le_batch : 0) - units_from(first_iteration);
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
      c.probes = r.probes;
      control.checkpoint(c);
    };
    // eval_every: the held-out batches of this network's data seed, generated once
    std::vector<Trials> eval_set;
    if (config.eval_every > 0)
      for (long e = 0; e < config.eval_trials / config.batch; ++e) {
        eval_set.emplace_back();
        fill_trials(task, Purpose::eval_trials, spec.data_seed, std::uint32_t(e), config.batch, eval_set.back());
      }
    Forward<float> eval_fwd;
    std::vector<float> bptt_grad(spec.rule != Rule::bptt && config.alignment ? layout.size : 0);
    long diverged_at = -1;
    if (losses.size() < size_t(first_iteration)) {
      diverged_at = long(losses.size());
      progress += config.iters - first_iteration + units_from(first_iteration);
      first_iteration = config.iters;  // nothing left to train
    }
    for (long it = first_iteration; it < config.iters; ++it) {
      if (control.stopping()) {
        save(it);
        return interrupted();
      }
      if (control.checkpoint_every > 0 && it > first_iteration && it % control.checkpoint_every == 0) save(it);
      if (spec.floss && flosses_at(config, it)) {  // flossing during training (floss_every)
        const auto episode = floss_network(config, task, shape, params.data(), spec.seed, it);
        r.floss_curve.insert(r.floss_curve.end(), episode.begin(), episode.end());
        progress += config.floss_iters_each;
      }
      fill_trials(task, Purpose::trials, spec.data_seed, static_cast<std::uint32_t>(it), config.batch, trials);
      forward(shape, a, params.data(), trials, fwd);
      const LossValue lv = task_loss(trials, fwd.y, &dL_dy);
      if (!std::isfinite(lv.loss)) {
        // Frozen from here: the loss of the parameters after iteration it - 1 is NaN/Inf.
        diverged_at = it;
        progress += config.iters - it + units_from(it) - (spec.floss && flosses_at(config, it) ? config.floss_iters_each : 0);
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
      if (evaluates_at(config, it) || aligns_at(config, spec.rule, it)) {
        ProbePoint p;
        p.iteration = it;
        if (evaluates_at(config, it)) {
          const LossValue e = held_out_loss(shape, a, params.data(), eval_set, eval_fwd);
          p.evaluated = true;
          p.eval_loss = e.loss;
          p.eval_accuracy = e.accuracy;
        }
        if (aligns_at(config, spec.rule, it)) {
          bptt_gradient(shape, a, params.data(), fwd, dL_dy, bptt_grad.data());
          p.aligned = true;
          p.alignment = cosine(grad.data() + layout.W_h, bptt_grad.data() + layout.W_h, size_t(shape.H) * shape.H);
        }
        r.probes.push_back(p);
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
