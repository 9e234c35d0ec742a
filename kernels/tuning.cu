// Autotuning of the kernel instances (kernels/tuning.cuh). No CPU twin.
//
// For each shape and kernel: K networks of that shape (distinct gains and seeds), one launch
// with the heuristic's instance as the reference, then every candidate from the same start,
// validated against that reference (losses, spectra and weights agree; today's instances
// compute the same bits, so any difference is a bug and the candidate is dropped), then timed:
// `launches` launches after the validating one, the median in milliseconds per launch. A
// candidate that does not launch on this GPU (too many registers for its block size, say) is
// dropped with its error.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda_utils.cuh"
#include "kernels/floss.cuh"
#include "kernels/lyapunov.cuh"
#include "kernels/train_step.cuh"
#include "kernels/tuning.cuh"
#include "rnnsweep/config.h"
#include "rnnsweep/model.h"

namespace rnnsweep::cuda {
namespace {

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return buffer;
}

// Milliseconds of `launch()`, the median of `repeats` runs, each between two events.
template <typename Launch>
double median_ms(int repeats, Launch&& launch) {
  std::vector<double> ms;
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  for (int r = 0; r < repeats; ++r) {
    CUDA_CHECK(cudaEventRecord(start, nullptr));
    launch(r);
    CUDA_CHECK(cudaEventRecord(stop, nullptr));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float elapsed = 0;
    CUDA_CHECK(cudaEventElapsedTime(&elapsed, start, stop));
    ms.push_back(elapsed);
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Whether two arrays agree: equal where both are not finite, within `tolerance` times the
// larger magnitude (at least 1) otherwise.
bool agree(const std::vector<double>& a, const std::vector<double>& b, double tolerance) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) {
      if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
      continue;
    }
    if (std::fabs(a[i] - b[i]) > tolerance * std::max({1.0, std::fabs(a[i]), std::fabs(b[i])})) return false;
  }
  return true;
}

template <typename T>
std::vector<double> download(const DeviceBuffer<T>& buffer, size_t count) {
  std::vector<T> host(count);
  buffer.download(host.data(), count);
  return {host.begin(), host.end()};
}

// K networks of one shape: parameters (distinct gains and seeds), on the host and the device.
struct Networks {
  TaskParams task;
  Shape shape;
  int K, P;
  std::vector<float> params;
  std::vector<std::uint32_t> seeds;
  DeviceBuffer<float> params_dev;
  DeviceBuffer<std::uint32_t> seeds_dev;

  Networks(const TaskParams& t, int H, bool bias, int networks)
      : task(t), shape{H, t.inputs(), t.outputs(), bias}, K(networks), P(ParamLayout(shape).size) {
    params.resize(size_t(K) * P);
    seeds.resize(K);
    // 16 distinct networks repeated: initialising thousands on one host core takes longer than tuning
    const int distinct = std::min(K, 16);
    for (int n = 0; n < K; ++n) {
      seeds[n] = std::uint32_t(n % distinct);
      if (n < distinct)
        init_params(shape, 0.5 + n / double(distinct), seeds[n], params.data() + size_t(n) * P);
      else
        std::copy_n(params.begin() + size_t(n % distinct) * P, P, params.begin() + size_t(n) * P);
    }
    params_dev = DeviceBuffer<float>(params.size());
    seeds_dev = DeviceBuffer<std::uint32_t>(K);
    seeds_dev.upload(seeds.data(), K);
    reset();
  }
  void reset() { params_dev.upload(params.data(), params.size()); }
};

void log_line(const TuneOptions& o, const std::string& line) {
  if (o.log) o.log(line);
}

// Times every candidate with `run(plan, first)`: first = true is the validating launch, whose
// result `check(plan)` compares with the reference; returns the entry (or none when no
// candidate ran).
template <typename Plan, typename Run, typename Result>
bool tune_one(const char* kernel, const std::string& shape_key, const std::vector<Plan>& candidates,
              const TuneOptions& options, Run&& run, Result&& result, TuningEntry& entry) {
  entry = TuningEntry{kernel, shape_key, "", candidates.front().name(), {}};
  std::vector<double> reference;
  double best = 0;
  for (const Plan& plan : candidates) {
    try {
      run(plan, true);
      const std::vector<double> got = result();
      if (reference.empty()) {
        reference = got;  // the heuristic's instance comes first: the reference
      } else if (!agree(got, reference, 1e-5)) {
        log_line(options, std::string(kernel) + " " + shape_key + ": " + plan.name() +
                              " disagrees with the heuristic's results; dropped");
        continue;
      }
      const double ms = median_ms(options.launches, [&](int) { run(plan, false); });
      entry.timings_ms[plan.name()] = ms;
      log_line(options, std::string(kernel) + " " + shape_key + ": " + plan.name() + " " + std::to_string(ms) + " ms");
      if (entry.instance.empty() || ms < best) entry.instance = plan.name(), best = ms;
    } catch (const std::exception& e) {
      (void)cudaGetLastError();  // a launch refused for resources is not sticky: clear it
      log_line(options, std::string(kernel) + " " + shape_key + ": " + plan.name() + " does not run here (" +
                            e.what() + "); dropped");
      if (reference.empty()) return false;  // without the heuristic's reference nothing is checked
    }
  }
  return !entry.instance.empty();
}

void tune_training(const TuneShape& t, size_t max_shared, const TuneOptions& options, GpuTuning& out) {
  const TaskParams task = Config::make_task(t.task);
  std::vector<TrainLaunchPlan> candidates;
  const Shape shape{t.H, task.inputs(), task.outputs(), false};
  try {
    candidates = train_candidates(shape, t.Bt, task.T(), max_shared);
  } catch (const std::invalid_argument& e) {
    log_line(options, std::string("train_step ") + train_shape_key(shape, t.Bt) + ": skipped (" + e.what() + ")");
    return;
  }
  const int K = options.networks, H = t.H, O = shape.O;
  Networks nets(task, H, false, K);
  // the rules mixed as in a grid: bptt, eprop, rflo in turn
  std::vector<int> rules(K);
  std::vector<float> feedback(size_t(K) * H * O);
  for (int n = 0; n < K; ++n) {
    rules[n] = n % 3;
    const std::vector<float> B = rflo_feedback(shape, nets.seeds[n]);
    std::copy(B.begin(), B.end(), feedback.begin() + size_t(n) * H * O);
  }
  const std::vector<double> lrs(K, 1e-3);
  DeviceBuffer<float> fb(feedback.size());
  DeviceBuffer<int> rule(K);
  DeviceBuffer<double> lr(K);
  fb.upload(feedback.data(), feedback.size());
  rule.upload(rules.data(), K);
  lr.upload(lrs.data(), K);
  const bool any_layered =
      std::any_of(candidates.begin(), candidates.end(), [](const TrainLaunchPlan& p) { return p.layered; });
  TrainScratch scratch(task, shape, K, t.Bt, true, true, 1, any_layered);
  TrainChunk c = scratch.chunk(nets.params_dev.get(), fb.get(), rule.get(), lr.get(), nets.seeds_dev.get());
  std::uint32_t iteration = 0;
  auto run = [&](const TrainLaunchPlan& plan, bool first) {
    if (first) {  // every candidate's validating launch starts from the same networks
      nets.reset();
      scratch.restart();
      iteration = 0;
    }
    // validated after an SGD step: Adam's first step moves every weight by about lr whatever
    // the gradient's size, so instances that sum in another order (the register kernel and the
    // general one) could differ by lr where a gradient is near 0; timed with Adam, as trained
    c.optimizer = first ? Optimizer::sgd : Optimizer::adam;
    launch_train_step(c, plan, iteration, 0, long(iteration) + 1, nullptr);
    ++iteration;
  };
  auto result = [&] {
    std::vector<double> r = download(scratch.loss_log, K);
    const std::vector<double> p = download(nets.params_dev, size_t(std::min(K, 4)) * nets.P);
    r.insert(r.end(), p.begin(), p.end());
    return r;
  };
  TuningEntry entry;
  if (tune_one("train_step", train_shape_key(shape, t.Bt), candidates, options, run, result, entry))
    out.entries.push_back(entry);
}

void tune_spectrum(const TuneShape& t, size_t max_shared, const TuneOptions& options, GpuTuning& out) {
  const TaskParams task = Config::make_task(t.task);
  const Shape shape{t.H, task.inputs(), task.outputs(), false};
  const int k = t.H;
  std::vector<SpectrumLaunchPlan> candidates;
  try {
    candidates = spectrum_candidates(shape, k, task, max_shared);
  } catch (const std::invalid_argument& e) {
    log_line(options, "spectrum " + spectrum_shape_key(shape, k, task) + ": skipped (" + e.what() + ")");
    return;
  }
  const int K = options.networks;
  Networks nets(task, t.H, false, K);
  DeviceBuffer<double> lambda(size_t(K) * k), frames(size_t(K) * 2 * t.H * k);
  SpectrumChunk c;
  c.K = K;
  c.J = 1;
  c.shape = shape;
  c.task = task;
  c.k = k;
  c.warmup = 0;
  c.steps = options.spectrum_steps;
  c.params = nets.params_dev.get();
  c.seed = nets.seeds_dev.get();
  c.frames = frames.get();
  c.lambda = lambda.get();
  auto run = [&](const SpectrumLaunchPlan& plan, bool) { launch_spectrum(c, plan, nullptr); };
  auto result = [&] { return download(lambda, size_t(std::min(K, 16)) * k); };
  TuningEntry entry;
  if (tune_one("spectrum", spectrum_shape_key(shape, k, task), candidates, options, run, result, entry))
    out.entries.push_back(entry);
}

void tune_floss(const TuneShape& t, size_t max_shared, const TuneOptions& options, GpuTuning& out) {
  const TaskParams task = Config::make_task(t.task);
  const Shape shape{t.H, task.inputs(), task.outputs(), false};
  const int k = std::min(32, t.H), H = t.H;
  std::vector<FlossLaunchPlan> candidates;
  try {
    candidates = floss_candidates(shape, k, task, max_shared);
  } catch (const std::invalid_argument& e) {
    log_line(options, "floss " + floss_shape_key(shape, k, task) + ": skipped (" + e.what() + ")");
    return;
  }
  const int K = options.networks;
  Networks nets(task, H, false, K);
  const long iters = 1 + options.launches;
  DeviceBuffer<float> m(size_t(K) * H * H), v(size_t(K) * H * H);
  DeviceBuffer<int> adam_steps(K), k_used(size_t(K) * iters);
  DeviceBuffer<double> scratch(size_t(K) * floss_scratch_doubles(H, k, options.floss_steps)),
      loss(size_t(K) * iters);
  FlossChunk f;
  f.K = K;
  f.shape = shape;
  f.task = task;
  f.k = k;
  f.warmup = 2;
  f.steps = options.floss_steps;
  f.iters = iters;
  f.params = nets.params_dev.get();
  f.seed = nets.seeds_dev.get();
  f.adam_m = m.get();
  f.adam_v = v.get();
  f.adam_steps = adam_steps.get();
  f.scratch = scratch.get();
  f.loss = loss.get();
  f.k_used = k_used.get();
  // a candidate makes at most iters updates (its validating launch and options.launches more)
  const FlossBiasCorrections bias_corrections(f);
  long iteration = 0;
  auto run = [&](const FlossLaunchPlan& plan, bool first) {
    if (first) {
      nets.reset();
      m.zero();
      v.zero();
      adam_steps.zero();
      iteration = 0;
    }
    launch_floss_iteration(f, plan, iteration, nullptr);
    iteration = std::min(iteration + 1, iters - 1);
  };
  auto result = [&] {  // every network's loss of iteration 0, then the first networks' weights
    const std::vector<double> all = download(loss, size_t(K) * iters);
    std::vector<double> r(K);
    for (int n = 0; n < K; ++n) r[n] = all[size_t(n) * iters];
    const std::vector<double> p = download(nets.params_dev, size_t(std::min(K, 4)) * nets.P);
    r.insert(r.end(), p.begin(), p.end());
    return r;
  };
  TuningEntry entry;
  if (tune_one("floss", floss_shape_key(shape, k, task), candidates, options, run, result, entry))
    out.entries.push_back(entry);
}

}  // namespace

std::string current_gpu_name() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

GpuTuning autotune(const std::vector<TuneShape>& shapes, const TuneOptions& options) {
  if (options.networks < 1 || options.launches < 1)
    throw std::invalid_argument("autotune: networks and launches must be at least 1");
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  const size_t max_shared = prop.sharedMemPerBlockOptin;
  GpuTuning out;
  out.measured = utc_now();
  out.version = RNNSWEEP_VERSION;
  std::vector<std::string> spectra_done, floss_done;  // spectra and flossing do not depend on the batch
  for (const TuneShape& t : shapes) {
    tune_training(t, max_shared, options, out);
    const std::string once = std::to_string(int(t.task)) + "/" + std::to_string(t.H);
    if (std::find(spectra_done.begin(), spectra_done.end(), once) == spectra_done.end()) {
      spectra_done.push_back(once);
      tune_spectrum(t, max_shared, options, out);
      tune_floss(t, max_shared, options, out);
    }
  }
  return out;
}

}  // namespace rnnsweep::cuda
