// The CUDA backend: the whole grid on one GPU. CPU twins: host/cpu/train.cpp (the per-network
// pipeline) and host/cpu/cpu_backend.cpp (the loop over networks).
//
// Networks of one task share a shape (T, I, O; H and Bt are global), so they train together:
// the grid is split by task, then into chunks that fit the GPU's free memory, and each chunk
// runs the CPU's pipeline with every step a launch over the whole chunk:
//   init (host, the same init_network) -> spectra (init) -> flossing (floss = true only)
//   -> spectra (flossed) -> iters x launch_train_step (le_every > 0: a tracked spectrum every
//   le_every of them; floss_every > 0: a flossing episode every floss_every of them)
//   -> spectra (trained, not diverged).
// Losses stay in a device log of `window` iterations and reach the host once per window.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

#include "host/cpu/train.h"
#include "host/tuning.h"
#include "kernels/cuda_backend.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/floss.cuh"
#include "rnnsweep/init.h"
#include "kernels/lyapunov.cuh"
#include "kernels/train_layered.cuh"
#include "kernels/train_step.cuh"
#include "rnnsweep/backend.h"

namespace rnnsweep {
namespace cuda {
namespace {

// Iterations whose losses the device keeps before the host collects them.
constexpr int kLogWindow = 256;

struct DeviceInfo {
  std::string name;
  size_t max_shared = 0;  // dynamic shared memory one block may opt into
  size_t total_memory = 0;
};

DeviceInfo device_info() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return {prop.name, size_t(prop.sharedMemPerBlockOptin), size_t(prop.totalGlobalMem)};
}

// The instance to launch among `candidates` (the heuristic's first): the tuning table's winner
// for this GPU and shape if it has one, else the heuristic's; `why` says which and why.
template <typename Plan>
Plan choose_plan(const TuningTable& table, const std::vector<Plan>& candidates, const std::string& gpu,
                 const char* kernel, const std::string& shape_key, std::string& why) {
  std::vector<std::string> names;
  for (const Plan& p : candidates) names.push_back(p.name());
  const TuningChoice choice = choose_instance(table, gpu, kernel, shape_key, names, candidates.front().name());
  why = choice.why;
  for (const Plan& p : candidates)
    if (p.name() == choice.instance) return p;
  return candidates.front();
}

// Everything a chunk of networks of one task needs, derived from the config once: shapes and
// the kernel instances that run them.
struct ChunkShape {
  TaskParams task;
  Shape shape;
  int T, Bt, P, k;
  bool any_bptt, any_floss;
  TrainLaunchPlan train_plan;
  SpectrumLaunchPlan spectrum_plan;
  SpectrumLaunchPlan track_plan;  // le_every > 0: the tracked spectra, k = le_track_k
  FlossLaunchPlan floss_plan;     // when any_floss
  std::string train_why, spectrum_why, track_why, floss_why;
};

ChunkShape chunk_shape(const Config& config, TaskKind kind, int file, const std::vector<NetworkSpec>& specs,
                       const DeviceInfo& device, const TuningTable& table) {
  ChunkShape c;
  c.task = config.task(kind, file);
  c.shape = Shape{config.hidden, c.task.inputs(), c.task.outputs(), config.bias};
  c.T = c.task.T();
  c.Bt = config.batch;
  c.P = ParamLayout(c.shape).size;
  c.k = config.spectrum_k();
  c.any_bptt =
      std::any_of(specs.begin(), specs.end(), [](const NetworkSpec& s) { return s.rule == Rule::bptt; });
  c.any_floss = std::any_of(specs.begin(), specs.end(), [](const NetworkSpec& s) { return s.floss; });
  try {
    const Precision precision = config.precision == "tf32x3" ? Precision::tf32x3 : Precision::fp32;
    c.train_plan = choose_plan(table, train_candidates(c.shape, c.Bt, c.T, device.max_shared, precision,
                                                       c.task.classification()),
                               device.name,
                               "train_step", train_shape_key(c.shape, c.Bt), c.train_why);
    if (precision == Precision::tf32x3 && !c.train_plan.mma)
      c.train_why += "; precision tf32x3 has no tensor-core instance for this shape (hidden 32 or 64, batch 16, 32 "
                     "or 64, within shared memory): fp32";
    c.spectrum_plan = choose_plan(table, spectrum_candidates(c.shape, c.k, c.task, device.max_shared), device.name,
                                  "spectrum", spectrum_shape_key(c.shape, c.k, c.task), c.spectrum_why);
    if (config.le_every > 0)
      c.track_plan = choose_plan(table, spectrum_candidates(c.shape, config.le_track_k, c.task, device.max_shared),
                                 device.name, "spectrum", spectrum_shape_key(c.shape, config.le_track_k, c.task),
                                 c.track_why);
    if (c.any_floss)
      c.floss_plan = choose_plan(table, floss_candidates(c.shape, config.floss_k, c.task, device.max_shared), device.name,
                                 "floss", floss_shape_key(c.shape, config.floss_k, c.task), c.floss_why);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("hidden = ") + std::to_string(config.hidden) +
                     ", batch = " + std::to_string(config.batch) + " with --backend cuda: " + e.what());
  }
  return c;
}

// A file task's trials in device memory, one copy per chunk (its networks draw from it with the
// shared generator, as the CPU draws from the host arrays). params() is the task with its pools
// pointing here; a built-in task passes through unchanged.
class DeviceTaskData {
 public:
  explicit DeviceTaskData(const TaskParams& task) : params_(task) {
    if (task.kind != TaskKind::file) return;
    upload(task.file_train, train_, params_.file_train);
    upload(task.file_eval, eval_, params_.file_eval);
  }
  const TaskParams& params() const { return params_; }
  // bytes of device memory a chunk of this task holds besides its networks
  static size_t bytes(const TaskParams& task) {
    if (task.kind != TaskKind::file) return 0;
    const size_t per_trial = size_t(task.file_T) * (task.file_I + (task.file_classification ? 1 : 2 * task.file_O));
    return (size_t(task.file_train.trials) + size_t(task.file_eval.trials)) * per_trial * 4;
  }

 private:
  struct Buffers {
    DeviceBuffer<float> x, target, mask;
    DeviceBuffer<int> labels;
  };
  void upload(const TaskParams::FilePool& host, Buffers& b, TaskParams::FilePool& dev) {
    if (host.trials == 0) return;
    const size_t steps = size_t(host.trials) * params_.file_T;
    b.x = DeviceBuffer<float>(steps * params_.file_I);
    b.x.upload(host.x, steps * params_.file_I);
    dev.x = b.x.get();
    if (params_.file_classification) {
      b.labels = DeviceBuffer<int>(steps);
      b.labels.upload(host.labels, steps);
      dev.labels = b.labels.get();
    } else {
      b.target = DeviceBuffer<float>(steps * params_.file_O);
      b.target.upload(host.target, steps * params_.file_O);
      b.mask = DeviceBuffer<float>(steps * params_.file_O);
      b.mask.upload(host.mask, steps * params_.file_O);
      dev.target = b.target.get();
      dev.mask = b.mask.get();
    }
  }
  TaskParams params_;
  Buffers train_, eval_;
};

// Device bytes one network of this shape needs during a chunk (what chunking divides by).
size_t bytes_per_network(const Config& config, const ChunkShape& c, const RunOptions& options) {
  const size_t H = c.shape.H, I = c.shape.I, O = c.shape.O, T = c.T, Bt = c.Bt, P = c.P;
  size_t floats = 3 * P + H * O + T * Bt * (I + 2 * O + 1);
  if (c.any_bptt || c.train_plan.layered) floats += (T + 1) * H * Bt + T * O * Bt;
  if (!c.train_plan.grad_shared || c.train_plan.layered) floats += P;
  if (c.train_plan.layered) floats += layered_floats(c.shape, int(Bt), int(T));
  size_t doubles = 2 * kLogWindow + 4;
  const size_t J = config.le_batch, k = c.k;
  if (options.spectra) {
    doubles += J * k;
    if (!c.spectrum_plan.frames_shared) doubles += J * 2 * H * k;
  }
  if (options.train && config.le_every > 0) {
    const size_t kt = config.le_track_k;
    doubles += J * kt + (c.track_plan.frames_shared ? 0 : J * 2 * H * kt);
  }
  if (options.train && (config.eval_every > 0 || config.alignment)) {
    // the probes' copy of the networks and its training scratch (Probe), and two gradients
    floats += 6 * P + T * Bt * (I + 2 * O + 1) + (T + 1) * H * Bt + T * O * Bt;
    doubles += 2 * std::max<long>(1, config.eval_trials / long(Bt)) + 1;
  }
  if (options.train && c.any_floss) {
    doubles += floss_scratch_doubles(int(H), config.floss_k, config.floss_steps) +
               std::max(config.floss_iters, config.floss_every > 0 ? config.floss_iters_each : 0);
    floats += 2 * H * H;
  }
  return floats * sizeof(float) + doubles * sizeof(double) + 64;
}

// What a chunk measures besides its training (eval_every, alignment), by launches of the same
// training kernel on a copy of its networks, whose updates are thrown away: the held-out loss is
// the kernel's loss on the eval stream's batches, BPTT's gradient comes from a launch with every
// network's rule set to bptt. So both are computed by the code that trains, in its arithmetic.
// CPU twin: the probes of host/cpu/train.cpp.
class Probe {
 public:
  Probe(const Config& config, const ChunkShape& c, int K, bool any_local)
      : config_(config),
        c_(c),
        K_(K),
        batches_(int(config.eval_trials / c.Bt)),
        align_(config.alignment && any_local),
        scratch_(c.task, c.shape, K, c.Bt, c.any_bptt || align_, !c.train_plan.grad_shared,
                 config.eval_every > 0 ? std::max(1, batches_) : 1, c.train_plan.layered),
        params_(size_t(K) * c.P) {
    if (align_) {
      const std::vector<int> bptt(K, int(Rule::bptt));
      bptt_rule_ = DeviceBuffer<int>(K);
      bptt_rule_.upload(bptt.data(), K);
      rule_grad_ = DeviceBuffer<float>(size_t(K) * c.P);
      bptt_grad_ = DeviceBuffer<float>(size_t(K) * c.P);
      cosines_ = DeviceBuffer<double>(K);
    }
  }

  // The held-out loss and accuracy of every network not yet diverged (`train`'s arrays), as
  // host/cpu/train.cpp held_out_loss: the mean over the eval batches. Others get NaN.
  void evaluate(const TrainChunk& train, std::vector<double>& loss, std::vector<double>& accuracy) {
    TrainChunk e = copy_of(train, train.rule);
    e.purpose = Purpose::eval_trials;
    for (int b = 0; b < batches_; ++b) {
      if (b > 0) copy_networks(train);  // each batch from the network itself, not from the last update
      launch_train_step(e, c_.train_plan, std::uint32_t(b), b, 1, nullptr);
    }
    const size_t window = scratch_.loss_log.size() / K_;
    std::vector<double> l(scratch_.loss_log.size()), a(l.size());
    scratch_.loss_log.download(l.data(), l.size());
    scratch_.accuracy_log.download(a.data(), a.size());
    loss.assign(K_, 0.0);
    accuracy.assign(K_, 0.0);
    for (int n = 0; n < K_; ++n) {
      for (int b = 0; b < batches_; ++b) loss[n] += l[n * window + b], accuracy[n] += a[n * window + b];
      loss[n] /= batches_;
      accuracy[n] /= batches_;
    }
  }

  bool aligns() const { return align_; }

  // alignment, in two halves around the training launch of the iteration: before it, BPTT's
  // gradient on the copy (the iteration's own trials); `train` then launches with
  // rule_gradient() as its grad_out; after it, cosines() of the two W_h blocks.
  void bptt_gradient(const TrainChunk& train, std::uint32_t iteration) {
    TrainChunk g = copy_of(train, bptt_rule_.get());
    g.grad_out = bptt_grad_.get();
    launch_train_step(g, c_.train_plan, iteration, 0, 1, nullptr);
  }
  float* rule_gradient() { return rule_grad_.get(); }
  std::vector<double> cosines() {
    launch_gradient_cosines(K_, c_.P, c_.shape.H * c_.shape.H, rule_grad_.get(), bptt_grad_.get(), cosines_.get(),
                            nullptr);
    std::vector<double> out(K_);
    cosines_.download(out.data(), K_);
    return out;
  }

 private:
  // A launch like `train`'s, on the copy of its networks (taken now) and this scratch.
  TrainChunk copy_of(const TrainChunk& train, const int* rule) {
    copy_networks(train);
    return scratch_.chunk(params_.get(), train.feedback, rule, train.lr, train.data_seed);
  }
  void copy_networks(const TrainChunk& train) {
    CUDA_CHECK(cudaMemcpy(params_.get(), train.params, params_.size() * sizeof(float), cudaMemcpyDeviceToDevice));
    // the diverged ones are skipped, as in training
    CUDA_CHECK(cudaMemcpy(scratch_.diverged_at.get(), train.diverged_at, K_ * sizeof(int), cudaMemcpyDeviceToDevice));
  }

  const Config& config_;
  const ChunkShape& c_;
  int K_, batches_;
  bool align_;
  TrainScratch scratch_;
  DeviceBuffer<float> params_, rule_grad_, bptt_grad_;
  DeviceBuffer<int> bptt_rule_;
  DeviceBuffer<double> cosines_;
};

// One chunk of networks of one task, trained together.
class Chunk {
 public:
  Chunk(const Config& config, const ChunkShape& shape, const std::vector<NetworkSpec>& specs,
        const RunOptions& options, size_t max_shared, Progress& progress)
      : config_(config),
        c_(shape),
        specs_(specs),
        options_(options),
        max_shared_(max_shared),
        progress_(progress),
        K_(int(specs.size())) {}

  std::vector<NetworkResult> run() {
    const auto start = std::chrono::steady_clock::now();
    std::vector<NetworkResult> results(K_);
    for (int n = 0; n < K_; ++n) results[n].spec = specs_[n];
    upload_networks();
    if (options_.keep_weights) download_params_into(results, &NetworkResult::params_init);
    // Networks checkpointed by an interrupted run continue from there: their spectra and
    // flossing are restored, not recomputed, and their training resumes at its iteration.
    const int restored = restore_checkpoints(results);
    std::vector<int> fresh(K_);
    for (int n = 0; n < K_; ++n) fresh[n] = !saved_[n];
    // A stop before training starts loses only this chunk's spectra and flossing so far, which
    // a resume recomputes; checked between the phases, which can each take a while.
    auto stopped = [&] {
      for (auto& r : results) r.interrupted = true;
      return results;
    };
    if (options_.spectra && restored < K_) spectra(results, &NetworkResult::spectrum_init, &fresh);
    if (options_.train) {
      std::vector<int> flossed;
      for (int n = 0; n < K_; ++n)
        if (specs_[n].floss && !saved_[n]) flossed.push_back(n);
      if (stopping()) return stopped();
      if (!flossed.empty()) {
        if (!floss(flossed, results) || stopping()) return stopped();
        if (options_.spectra) {
          std::vector<int> active(K_, 0);
          for (int n : flossed) active[n] = 1;
          spectra(results, &NetworkResult::spectrum_flossed, &active);
        }
      }
      if (stopping() || !train(results)) return stopped();
      if (config_.le_every > 0) {
        // the tracked spectrum of the trained network, as the CPU takes it: not of a diverged one
        std::vector<int> active(K_);
        for (int n = 0; n < K_; ++n) active[n] = !results[n].diverged;
        track(results, config_.iters, active);
      }
      if (options_.spectra) {
        std::vector<int> active(K_);
        for (int n = 0; n < K_; ++n) active[n] = !results[n].diverged;
        spectra(results, &NetworkResult::spectrum_trained, &active);
        for (int n = 0; n < K_; ++n)
          if (results[n].diverged) progress_.done += config_.le_batch;  // as the CPU counts it
      }
      if (options_.keep_weights) download_params_into(results, &NetworkResult::params_final);
    }
    // One launch trains the whole chunk, so a network's own time is not observable: each gets
    // an equal share of the chunk's.
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (auto& r : results) r.seconds = seconds / K_;
    return results;
  }

 private:
  void upload_networks() {
    const int H = c_.shape.H, O = c_.shape.O;
    std::vector<float> params(size_t(K_) * c_.P), feedback(size_t(K_) * H * O, 0.0f);
    std::vector<int> rule(K_);
    std::vector<double> lr(K_);
    std::vector<std::uint32_t> data_seed(K_), seed(K_);
    for (int n = 0; n < K_; ++n) {
      const NetworkSpec& s = specs_[n];
      init_network(c_.shape, s.init, config_.init_options, s.gain, s.seed, params.data() + size_t(n) * c_.P);
      if (s.rule == Rule::rflo) {
        const std::vector<float> B = rflo_feedback(c_.shape, s.seed);
        std::copy(B.begin(), B.end(), feedback.begin() + size_t(n) * H * O);
      }
      rule[n] = int(s.rule);
      lr[n] = s.lr;
      data_seed[n] = s.data_seed;
      seed[n] = s.seed;
    }
    params_ = DeviceBuffer<float>(params.size());
    params_.upload(params.data(), params.size());
    feedback_ = DeviceBuffer<float>(feedback.size());
    feedback_.upload(feedback.data(), feedback.size());
    rule_ = DeviceBuffer<int>(K_);
    rule_.upload(rule.data(), K_);
    lr_ = DeviceBuffer<double>(K_);
    lr_.upload(lr.data(), K_);
    data_seed_ = DeviceBuffer<std::uint32_t>(K_);
    data_seed_.upload(data_seed.data(), K_);
    seed_ = DeviceBuffer<std::uint32_t>(K_);
    seed_.upload(seed.data(), K_);
  }

  bool stopping() const { return options_.control && options_.control->stopping(); }

  // Loads the checkpoints of this chunk's networks (RunControl::resume) into saved_, their
  // parameters into params_ and their pre-training results into `results`; returns how many.
  int restore_checkpoints(std::vector<NetworkResult>& results) {
    saved_.assign(K_, std::nullopt);
    const RunControl* control = options_.control;
    if (!options_.train || !control || !control->resume) return 0;
    int restored = 0;
    for (int n = 0; n < K_; ++n) {
      saved_[n] = control->resume(specs_[n].id);
      if (!saved_[n]) continue;
      const NetworkCheckpoint& c = *saved_[n];
      if (c.params.size() != size_t(c_.P) || c.adam_m.size() != size_t(c_.P) ||
          c.adam_v.size() != size_t(c_.P) || c.iteration < 0 || c.iteration > config_.iters ||
          c.losses.size() > size_t(c.iteration))
        throw std::runtime_error("the checkpoint of network " + std::to_string(specs_[n].id) +
                                 " does not fit this config's shapes or iterations");
      CUDA_CHECK(cudaMemcpy(params_.get() + size_t(n) * c_.P, c.params.data(), c_.P * sizeof(float),
                            cudaMemcpyHostToDevice));
      results[n].spectrum_init = c.spectrum_init;
      results[n].spectrum_flossed = c.spectrum_flossed;
      results[n].floss_curve = c.floss_curve;
      results[n].tracked = c.tracked;
      results[n].probes = c.probes;
      // what the interrupted run had done of this network counts as done now
      progress_.done += cpu::work_units(config_, specs_[n], options_) - (config_.iters - c.iteration) -
                        (options_.spectra ? config_.le_batch : 0) -
                        tracked_spectra_from(config_, c.iteration) * config_.le_batch -
                        (specs_[n].floss ? floss_episodes_from(config_, c.iteration) * config_.floss_iters_each : 0);
      ++restored;
    }
    return restored;
  }

  // Writes a checkpoint of every network of the chunk at `next_iteration` (RunControl).
  void checkpoint_all(long next_iteration, const DeviceBuffer<float>& m, const DeviceBuffer<float>& v,
                      const std::vector<std::vector<double>>& losses,
                      const std::vector<std::vector<double>>& accuracies,
                      const std::vector<NetworkResult>& results) {
    const RunControl* control = options_.control;
    if (!control || !control->checkpoint) return;
    const size_t P = c_.P;
    std::vector<float> params(K_ * P), m_host(K_ * P), v_host(K_ * P);
    params_.download(params.data(), params.size());
    m.download(m_host.data(), m_host.size());
    v.download(v_host.data(), v_host.size());
    for (int n = 0; n < K_; ++n) {
      NetworkCheckpoint c;
      c.id = specs_[n].id;
      // A network resumed further on than the chunk keeps its own place.
      const long first = saved_[n] ? saved_[n]->iteration : 0;
      c.iteration = std::max(first, next_iteration);
      c.params.assign(params.begin() + n * P, params.begin() + (n + 1) * P);
      c.adam_m.assign(m_host.begin() + n * P, m_host.begin() + (n + 1) * P);
      c.adam_v.assign(v_host.begin() + n * P, v_host.begin() + (n + 1) * P);
      c.adam_step = (saved_[n] ? saved_[n]->adam_step : 0) + std::max(0L, next_iteration - first);
      c.losses = losses[n];
      c.accuracies = accuracies[n];
      c.spectrum_init = results[n].spectrum_init;
      c.spectrum_flossed = results[n].spectrum_flossed;
      c.floss_curve = results[n].floss_curve;
      c.tracked = results[n].tracked;
      c.probes = results[n].probes;
      control->checkpoint(c);
    }
  }

  void download_params_into(std::vector<NetworkResult>& results, std::vector<float> NetworkResult::*field) {
    std::vector<float> params(size_t(K_) * c_.P);
    params_.download(params.data(), params.size());
    for (int n = 0; n < K_; ++n)
      (results[n].*field).assign(params.begin() + size_t(n) * c_.P, params.begin() + size_t(n + 1) * c_.P);
  }

  // The spectrum of every active network, averaged over trajectories and sorted, as
  // host/cpu/spectra.cpp network_spectrum does.
  void spectra(std::vector<NetworkResult>& results, std::vector<double> NetworkResult::*field,
               const std::vector<int>* active) {
    std::vector<std::vector<double>> lambda = spectra_of(c_.k, c_.spectrum_plan, active);
    for (int n = 0; n < K_; ++n)
      if (!active || (*active)[n]) results[n].*field = std::move(lambda[n]);
  }

  // The tracked spectrum (le_track_k exponents) of the networks active after `iteration`
  // updates; the others count as done, as the CPU counts a diverged network's.
  void track(std::vector<NetworkResult>& results, long iteration, const std::vector<int>& active) {
    std::vector<std::vector<double>> lambda = spectra_of(config_.le_track_k, c_.track_plan, &active);
    for (int n = 0; n < K_; ++n) {
      if (active[n])
        results[n].tracked.push_back({iteration, std::move(lambda[n])});
      else if (iteration >= (saved_[n] ? saved_[n]->iteration : 0))
        progress_.done += config_.le_batch;
    }
  }

  // k exponents of every active network (empty for the others) by `plan`.
  std::vector<std::vector<double>> spectra_of(int k, const SpectrumLaunchPlan& plan, const std::vector<int>* active) {
    const int J = config_.le_batch;
    std::vector<std::vector<double>> out(K_);
    DeviceBuffer<int> active_dev(active ? K_ : 0);
    if (active) active_dev.upload(active->data(), K_);
    DeviceBuffer<double> lambda(size_t(K_) * J * k);
    DeviceBuffer<double> frames(plan.frames_shared ? 0 : size_t(K_) * J * 2 * c_.shape.H * k);
    SpectrumChunk s;
    s.K = K_;
    s.J = J;
    s.shape = c_.shape;
    s.task = c_.task;
    s.k = k;
    s.warmup = config_.le_warmup;
    s.steps = config_.le_steps;
    s.params = params_.get();
    s.seed = seed_.get();
    s.active = active ? active_dev.get() : nullptr;
    s.frames = frames.get();
    s.lambda = lambda.get();
    launch_spectrum(s, plan, nullptr);
    std::vector<double> host(lambda.size());
    lambda.download(host.data(), host.size());
    for (int n = 0; n < K_; ++n) {
      if (active && !(*active)[n]) continue;
      std::vector<double> sum(k, 0.0);
      for (int j = 0; j < J; ++j)
        for (int i = 0; i < k; ++i) sum[i] += host[(size_t(n) * J + j) * k + i];
      for (double& x : sum) x /= J;
      std::sort(sum.begin(), sum.end(), std::greater<double>());
      out[n] = std::move(sum);
      progress_.done += J;
    }
    return out;
  }

  // Flossing of the networks `flossed`: the pretraining (training_iteration 0) or the episode
  // just before that training iteration (floss_every), as host/cpu/spectra.cpp floss_network.
  // Returns false when the run was stopped midway (checked every 10 iterations; during
  // training the training loop checks instead, at its next window).
  bool floss(const std::vector<int>& flossed, std::vector<NetworkResult>& results, long training_iteration = 0) {
    const int F = int(flossed.size()), H = c_.shape.H;
    const long iters = training_iteration == 0 ? config_.floss_iters : config_.floss_iters_each;
    if (F == 0 || iters == 0) return true;
    DeviceBuffer<int> network(F);
    network.upload(flossed.data(), F);
    DeviceBuffer<float> m(size_t(F) * H * H), v(size_t(F) * H * H);
    DeviceBuffer<int> steps(F);
    m.zero();
    v.zero();
    steps.zero();
    DeviceBuffer<double> scratch(size_t(F) * floss_scratch_doubles(H, config_.floss_k, config_.floss_steps));
    DeviceBuffer<double> loss(size_t(F) * iters);
    DeviceBuffer<int> k_used(size_t(F) * iters);
    FlossChunk f;
    f.K = F;
    f.network = network.get();
    f.shape = c_.shape;
    f.task = c_.task;
    f.k = config_.floss_k;
    f.warmup = config_.floss_warmup;
    f.steps = config_.floss_steps;
    f.iters = iters;
    f.first_batch = floss_first_batch(config_, training_iteration);
    f.lr = config_.floss_lr;
    f.beta1 = config_.adam_beta1;
    f.beta2 = config_.adam_beta2;
    f.eps = config_.adam_eps;
    f.params = params_.get();
    f.seed = seed_.get();
    f.adam_m = m.get();
    f.adam_v = v.get();
    f.adam_steps = steps.get();
    f.scratch = scratch.get();
    f.loss = loss.get();
    f.k_used = k_used.get();
    // at most one update per iteration: steps 0 .. iters
    const FlossBiasCorrections bias_corrections(f);
    for (long it = 0; it < iters; ++it) {
      launch_floss_iteration(f, c_.floss_plan, it, nullptr);
      if (it % 10 == 9 || it == iters - 1) {
        CUDA_CHECK(cudaDeviceSynchronize());
        progress_.done += F * (it % 10 + 1);
        if (training_iteration == 0 && stopping()) return false;
      }
    }
    std::vector<double> loss_host(loss.size());
    std::vector<int> k_host(k_used.size());
    loss.download(loss_host.data(), loss_host.size());
    k_used.download(k_host.data(), k_host.size());
    for (int slot = 0; slot < F; ++slot) {
      auto& curve = results[flossed[slot]].floss_curve;
      for (long it = 0; it < iters; ++it)
        curve.push_back(
            {it, loss_host[size_t(slot) * iters + it], k_host[size_t(slot) * iters + it], training_iteration});
    }
    return true;
  }

  // Returns false when the run was stopped (RunControl::stop) before the chunk finished: a chunk
  // is the unit of work the CUDA backend keeps, so its networks are retrained on resume.
  bool train(std::vector<NetworkResult>& results) {
    const size_t K = K_, P = c_.P;
    // The log window ends on checkpoint iterations, so that checkpoints fall where asked.
    const long every = options_.control ? options_.control->checkpoint_every : 0;
    const int window = int(std::min<long>({kLogWindow, config_.iters, every > 0 ? every : kLogWindow}));
    TrainScratch scratch(c_.task, c_.shape, K_, c_.Bt, c_.any_bptt, !c_.train_plan.grad_shared, window,
                         c_.train_plan.layered);
    DeviceBuffer<float>& m = scratch.adam_m;
    DeviceBuffer<float>& v = scratch.adam_v;
    DeviceBuffer<double>& loss_log = scratch.loss_log;
    DeviceBuffer<double>& accuracy_log = scratch.accuracy_log;
    DeviceBuffer<int>& diverged_at = scratch.diverged_at;
    TrainChunk t = scratch.chunk(params_.get(), feedback_.get(), rule_.get(), lr_.get(), data_seed_.get());
    t.optimizer = config_.optimizer == "sgd" ? Optimizer::sgd : Optimizer::adam;
    t.beta1 = config_.adam_beta1;
    t.beta2 = config_.adam_beta2;
    t.eps = config_.adam_eps;

    std::vector<std::vector<double>> losses(K), accuracies(K);
    std::vector<double> loss_host(K * window), accuracy_host(K * window);
    std::vector<int> diverged_host(K, -1);

    // Resumed networks: their state, their place in the iterations, their Adam step.
    long first_iteration = 0;
    std::vector<int> first(K, 0);
    std::vector<long long> steps_before(K, 0);
    DeviceBuffer<int> first_dev;
    DeviceBuffer<long long> steps_before_dev;
    DeviceBuffer<double> bc1_dev, bc2_dev;
    if (std::any_of(saved_.begin(), saved_.end(), [](const auto& c) { return c.has_value(); })) {
      std::vector<float> m_host(K * P, 0.0f), v_host(K * P, 0.0f);
      long long max_step = config_.iters;
      for (size_t n = 0; n < K; ++n) {
        if (!saved_[n]) continue;
        const NetworkCheckpoint& c = *saved_[n];
        std::copy(c.adam_m.begin(), c.adam_m.end(), m_host.begin() + n * P);
        std::copy(c.adam_v.begin(), c.adam_v.end(), v_host.begin() + n * P);
        first[n] = int(c.iteration);
        steps_before[n] = c.adam_step;
        losses[n] = c.losses;
        accuracies[n] = c.accuracies;
        // a checkpoint holding fewer losses than iterations is of a network that had diverged
        if (c.losses.size() < size_t(c.iteration)) diverged_host[n] = int(c.losses.size());
        max_step = std::max<long long>(max_step, c.adam_step + config_.iters);
      }
      first_iteration = *std::min_element(first.begin(), first.end());
      m.upload(m_host.data(), m_host.size());
      v.upload(v_host.data(), v_host.size());
      diverged_at.upload(diverged_host.data(), K);
      std::vector<double> bc1(max_step + 2), bc2(max_step + 2);
      for (long long step = 1; step < max_step + 2; ++step) {
        bc1[step] = 1.0 - std::pow(config_.adam_beta1, double(step));
        bc2[step] = 1.0 - std::pow(config_.adam_beta2, double(step));
      }
      first_dev = DeviceBuffer<int>(K);
      first_dev.upload(first.data(), K);
      steps_before_dev = DeviceBuffer<long long>(K);
      steps_before_dev.upload(steps_before.data(), K);
      bc1_dev = DeviceBuffer<double>(bc1.size());
      bc1_dev.upload(bc1.data(), bc1.size());
      bc2_dev = DeviceBuffer<double>(bc2.size());
      bc2_dev.upload(bc2.data(), bc2.size());
      t.first_iteration = first_dev.get();
      t.adam_steps_before = steps_before_dev.get();
      t.bias_correction1 = bc1_dev.get();
      t.bias_correction2 = bc2_dev.get();
    }

    long window_start = first_iteration;
    const long le_every = config_.le_every;
    const bool any_local =
        std::any_of(specs_.begin(), specs_.end(), [](const NetworkSpec& s) { return s.rule != Rule::bptt; });
    std::optional<Probe> probe;
    if (config_.eval_every > 0 || (config_.alignment && any_local)) probe.emplace(config_, c_, K_, any_local);
    const long floss_every = c_.any_floss ? config_.floss_every : 0;
    for (long it = first_iteration; it < config_.iters; ++it) {
      if (floss_every > 0 && flosses_at(config_, it)) {
        // flossing during training, before this iteration's trials, as the CPU: windows end
        // before each of these iterations too, so divergence before `it` is known here
        std::vector<int> flossed;
        for (size_t n = 0; n < K; ++n)
          if (specs_[n].floss && it >= first[n]) {
            if (diverged_host[n] < 0)
              flossed.push_back(int(n));
            else
              progress_.done += config_.floss_iters_each;  // as the CPU counts a diverged network's
          }
        floss(flossed, results, it);
      }
      if (tracks_spectrum_at(config_, it)) {
        // Taken before this iteration's loss is known: a network whose loss at `it` turns out
        // NaN/Inf drops this one when its window arrives (the CPU does not take it). Windows end
        // before each of these iterations, so divergence before `it` is known here.
        std::vector<int> active(K);
        for (size_t n = 0; n < K; ++n) active[n] = diverged_host[n] < 0 && it >= first[n];
        track(results, it, active);
      }
      // eval_every, alignment: of the network before this iteration's update, as the CPU; a
      // network whose loss at `it` turns out NaN/Inf drops them with its window, as above
      const bool evaluate = evaluates_at(config_, it);
      const bool align = probe && probe->aligns() && (it % config_.log_every == 0 || it == config_.iters - 1);
      std::vector<ProbePoint> probed(K);
      for (size_t n = 0; n < K; ++n) probed[n].iteration = it;
      if (evaluate) {
        std::vector<double> loss, accuracy;
        probe->evaluate(t, loss, accuracy);
        for (size_t n = 0; n < K; ++n) {
          probed[n].evaluated = true;
          probed[n].eval_loss = loss[n];
          probed[n].eval_accuracy = accuracy[n];
        }
      }
      if (align) {
        probe->bptt_gradient(t, std::uint32_t(it));
        t.grad_out = probe->rule_gradient();
      }
      launch_train_step(t, c_.train_plan, std::uint32_t(it), int(it - window_start), it + 1, nullptr);
      t.grad_out = nullptr;
      if (align) {
        const std::vector<double> cosines = probe->cosines();
        for (size_t n = 0; n < K; ++n)
          if (specs_[n].rule != Rule::bptt) probed[n].aligned = true, probed[n].alignment = cosines[n];
      }
      if (evaluate || align)
        for (size_t n = 0; n < K; ++n)
          if (diverged_host[n] < 0 && it >= first[n] && (probed[n].evaluated || probed[n].aligned))
            results[n].probes.push_back(probed[n]);
      // A window ends when the log is full, on a multiple of checkpoint_every (so that
      // checkpoints fall where asked), or at the last iteration.
      const bool on_checkpoint = every > 0 && (it + 1) % every == 0;
      const bool before_track = le_every > 0 && (it + 1) % le_every == 0;
      const bool before_floss = floss_every > 0 && (it + 1) % floss_every == 0;
      const bool window_full = it - window_start + 1 == window || on_checkpoint || before_track || before_floss ||
                               it == config_.iters - 1;
      if (!window_full) continue;
      loss_log.download(loss_host.data(), loss_host.size());  // synchronises
      accuracy_log.download(accuracy_host.data(), accuracy_host.size());
      diverged_at.download(diverged_host.data(), K);
      long trained = 0;  // work units, counted as the CPU counts them (a diverged network's too)
      for (size_t n = 0; n < K; ++n) {
        trained += std::max(0L, it - std::max<long>(window_start, first[n]) + 1);
        for (long i = std::max<long>(window_start, first[n]); i <= it; ++i) {
          if (diverged_host[n] >= 0 && i >= diverged_host[n]) break;
          losses[n].push_back(loss_host[n * window + (i - window_start)]);
          accuracies[n].push_back(accuracy_host[n * window + (i - window_start)]);
        }
      }
      progress_.done += trained;
      for (size_t n = 0; n < K; ++n) {
        auto& tracked = results[n].tracked;
        if (diverged_host[n] >= 0 && !tracked.empty() && tracked.back().iteration >= diverged_host[n])
          tracked.pop_back();  // its loss there was NaN/Inf (its progress units stay counted)
        auto& probes = results[n].probes;
        while (diverged_host[n] >= 0 && !probes.empty() && probes.back().iteration >= diverged_host[n])
          probes.pop_back();
      }
      const long next = it + 1;
      window_start = next;
      const RunControl* control = options_.control;
      const bool stopping = control && control->stopping();
      const bool due = on_checkpoint && next < config_.iters;
      if (stopping || due) checkpoint_all(next, m, v, losses, accuracies, results);
      if (stopping) return false;
    }
    std::vector<float> params(K * P);
    params_.download(params.data(), params.size());
    for (size_t n = 0; n < K; ++n) {
      bool finite = true;
      for (size_t e = 0; e < P; ++e) finite &= std::isfinite(params[n * P + e]);
      results[n].trained = true;
      summarise_training(config_, losses[n], accuracies[n], diverged_host[n], finite, results[n]);
    }
    return true;
  }

  const Config& config_;
  const ChunkShape& c_;
  const std::vector<NetworkSpec>& specs_;
  const RunOptions& options_;
  const size_t max_shared_;
  Progress& progress_;
  const int K_;
  DeviceBuffer<float> params_, feedback_;
  DeviceBuffer<int> rule_;
  DeviceBuffer<double> lr_;
  DeviceBuffer<std::uint32_t> data_seed_, seed_;
  std::vector<std::optional<NetworkCheckpoint>> saved_;  // per network, from an interrupted run
};

class CudaBackend : public Backend {
 public:
  CudaBackend(long max_chunk, std::shared_ptr<const TuningTable> tuning)
      : max_chunk_(max_chunk), device_(device_info()), tuning_(std::move(tuning)) {}

  std::string name() const override { return "cuda"; }
  std::string device() const override {
    std::ostringstream o;
    o << device_.name << " (" << device_.total_memory / (1 << 20) << " MiB)";
    return o.str();
  }

  std::string plan(const Config& config, const std::vector<NetworkSpec>& networks,
                   const RunOptions& options) const override {
    // Iterations index 32-bit signed counters on the device.
    if (config.iters > 2147483647L)
      throw UsageError("config key 'iters' = " + std::to_string(config.iters) +
                       " with --backend cuda: allowed: at most 2^31 - 1");
    std::ostringstream o, instances;
    size_t free_memory = 0, total_memory = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_memory, &total_memory));
    o << "cuda: ";
    bool first = true;
    for (const Group& group : groups_of(config, networks)) {
      const ChunkShape shape = chunk_shape(group.config, group.task, group.file, group.specs, device_, table());
      const size_t per = bytes_per_network(group.config, shape, options);
      const long chunk = chunk_size(per, group.specs.size(), DeviceTaskData::bytes(shape.task));
      const std::string& name = group.name;
      o << (first ? "" : "; ") << name << " " << group.specs.size() << " networks in chunks of " << chunk << " ("
        << per / 1024 << " KiB each, " << free_memory / (1 << 20) << " MiB free)";
      first = false;
      instances << "\n  " << name << " train_step " << shape.train_plan.name() << " (" << shape.train_why << ")";
      if (options.spectra)
        instances << "\n  " << name << " spectrum " << shape.spectrum_plan.name() << " (" << shape.spectrum_why << ")";
      if (config.le_every > 0 && options.train)
        instances << "\n  " << name << " tracked spectrum (le_track_k) " << shape.track_plan.name() << " ("
                  << shape.track_why << ")";
      if (shape.any_floss && options.train)
        instances << "\n  " << name << " floss " << shape.floss_plan.name() << " (" << shape.floss_why << ")";
    }
    return o.str() + "\ncuda kernel instances on " + device_.name + ":" + instances.str();
  }

  std::vector<NetworkResult> train(const Config& config, const std::vector<NetworkSpec>& networks,
                                   const RunOptions& options, Progress& progress) override {
    long long total = 0;
    for (const auto& n : networks) total += cpu::work_units(config, n, options);
    progress.total = total;
    std::map<long, size_t> position;  // network id -> index in `networks`
    for (size_t i = 0; i < networks.size(); ++i) position[networks[i].id] = i;
    std::vector<NetworkResult> results(networks.size());
    for (const Group& group : groups_of(config, networks)) {
      const ChunkShape shape = chunk_shape(group.config, group.task, group.file, group.specs, device_, table());
      const size_t chunk = chunk_size(bytes_per_network(group.config, shape, options), group.specs.size(),
                                      DeviceTaskData::bytes(shape.task));
      for (size_t first = 0; first < group.specs.size(); first += chunk) {
        const std::vector<NetworkSpec> specs(group.specs.begin() + first,
                                             group.specs.begin() + std::min(group.specs.size(), first + chunk));
        const RunControl* control = options.control;
        if (control && control->stopping()) {
          for (const auto& spec : specs) {
            results[position.at(spec.id)].spec = spec;
            results[position.at(spec.id)].interrupted = true;
          }
          continue;
        }
        const DeviceTaskData data(shape.task);  // a file task's trials, on the device for this chunk
        ChunkShape on_device = shape;
        on_device.task = data.params();
        std::vector<NetworkResult> chunk_results =
            Chunk(group.config, on_device, specs, options, device_.max_shared, progress).run();
        for (auto& r : chunk_results) {
          if (!r.interrupted && control && control->finished) control->finished(r);
          results[position.at(r.spec.id)] = std::move(r);
        }
      }
    }
    return results;
  }

 private:
  const TuningTable& table() const { return tuning_ ? *tuning_ : TuningTable::active(); }

  // Networks train together when they share a task and a shape (hidden, batch): a chunk is one
  // kernel instance over one layout. Each group has the config of its shape.
  struct Group {
    TaskKind task;
    int file;  // file tasks: Config::files index
    Config config;  // its hidden and batch are the group's shape
    std::vector<NetworkSpec> specs;
    std::string name;  // for plan: the task, and the shape where the grid has several
  };
  static std::vector<Group> groups_of(const Config& config, const std::vector<NetworkSpec>& networks) {
    std::vector<Group> groups;
    const bool shapes = config.hiddens().size() > 1 || config.batches().size() > 1;
    for (const auto& n : networks) {
      const Config c = config_of(config, n);
      auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) {
        return g.task == n.task && g.file == n.file && g.config.hidden == c.hidden && g.config.batch == c.batch;
      });
      if (it == groups.end()) {
        std::string name = task_label(n);
        if (shapes) name += " (hidden " + std::to_string(c.hidden) + ", batch " + std::to_string(c.batch) + ")";
        groups.push_back({n.task, n.file, c, {n}, name});
      } else {
        it->specs.push_back(n);
      }
    }
    return groups;
  }

  // Networks per chunk: what fits in 80% of the free memory (the rest for the runtime and
  // fragmentation) besides `fixed` bytes (a file task's trials), at most `max_chunk_` when set
  // (tests), at least one.
  size_t chunk_size(size_t bytes_per_net, size_t networks, size_t fixed = 0) const {
    size_t free_memory = 0, total_memory = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_memory, &total_memory));
    const double usable = std::max(0.0, 0.8 * double(free_memory) - double(fixed));
    size_t fit = std::max<size_t>(1, size_t(usable) / bytes_per_net);
    if (max_chunk_ > 0) fit = std::min<size_t>(fit, size_t(max_chunk_));
    return std::min(fit, std::max<size_t>(1, networks));
  }

  long max_chunk_;
  DeviceInfo device_;
  std::shared_ptr<const TuningTable> tuning_;  // null: TuningTable::active()
};

}  // namespace
}  // namespace cuda

bool cuda_device_usable(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    if (why) *why = err != cudaSuccess ? cudaGetErrorString(err) : "no CUDA device found";
    return false;
  }
  return true;
}

std::unique_ptr<Backend> make_cuda_backend(long max_chunk, std::shared_ptr<const TuningTable> tuning) {
  std::string why;
  if (!cuda_device_usable(&why))
    throw UsageError("--backend cuda: no usable GPU here (CUDA runtime: " + why +
                     "); use --backend cpu or auto");
  return std::make_unique<cuda::CudaBackend>(max_chunk, std::move(tuning));
}

}  // namespace rnnsweep
