// Throughput of the CUDA kernels (units as in the README's Benchmarks section), on the GPU only:
// - training: network-iterations per second of launch_train_step for H = 64, batch 32, T = 100
//   (romo with a 100-step trial), Adam, K networks per launch, for bptt, eprop and rflo; FLOP/s
//   as a fraction of the card's FP32 peak (the usual counts: forward 2 H^2 Bt T, BPTT ~3x, e-prop ~2x);
// - spectra: network-steps per second of the full spectrum (k = H = 64, QR every step);
// - flossing: flossing iterations per second (H = 64, floss_k = 32, 20 warm-up and 100 chain
//   steps, the study's), the register instance and the general kernel, the first iteration's
//   losses checked against the CPU (host/cpu/spectra.cpp floss_network) first.
// The baselines, timed in the same run: the CPU backend's single-thread reference on a few
// networks (what one GPU buys over one core of this machine), and the general training kernel
// (kernels/train_step.cu) on the same networks (what the register kernel buys over it).
// Before timing, the first iteration's losses of the first networks are checked against the CPU
// reference (host/cpu/model.cpp) on the same weights and trials; a mismatch exits 1.
//
// Usage: bench_cuda [--networks K] [--iters N] [--results FILE.md] [--rules LIST] [--no-spectra]
// (--no-spectra also leaves out flossing)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "host/cpu/adam.h"
#include "host/cpu/model.h"
#include "host/cpu/spectra.h"
#include "host/cpu/tasks.h"
#include "kernels/cuda_utils.cuh"
#include "kernels/floss.cuh"
#include "kernels/lyapunov.cuh"
#include "kernels/train_layered.cuh"
#include "kernels/train_step.cuh"
#include "rnnsweep/config.h"

using namespace rnnsweep;
using cuda::DeviceBuffer;

namespace {

struct Gpu {
  std::string name;
  double fp32_peak;  // FLOP/s
  size_t max_shared;
};

Gpu gpu() {
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int clock_khz = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  // FP32 lanes per multiprocessor: 64 on sm_80 (A100), 128 on sm_86/89/90.
  const int lanes = (prop.major == 8 && prop.minor == 0) ? 64 : 128;
  return {prop.name, 2.0 * lanes * prop.multiProcessorCount * clock_khz * 1e3,
          size_t(prop.sharedMemPerBlockOptin)};
}

TaskParams bench_task() {
  TaskParams task = Config::make_task(TaskKind::romo);
  task.romo_T = 100;
  return task;
}

struct TrainResult {
  double rate;  // network-iterations per second
  double flop_fraction;
};

// Which kernel: the heuristic's fp32 instance (the register kernel at this shape), the general
// kernel (kernels/train_step.cu: the kernel before it, the same-run baseline) or the tensor-core
// instance (precision tf32x3, kernels/train_mma.cu), or the layered path on cuBLAS
// (kernels/train_layered.cu, meant for sizes past the fused kernels: here for the ratio).
enum class Variant { fp32, general, tf32x3, layered };

TrainResult time_training(Rule rule, int K, int iters, const Gpu& g, Variant variant) {
  const TaskParams task = bench_task();
  const Shape shape{64, task.inputs(), task.outputs(), false};
  const int T = task.T(), Bt = 32, P = ParamLayout(shape).size;
  // 64 distinct networks (gains 0.5 .. 1.5, their own seeds) repeated to K: initialising 4096
  // networks on one host core would take longer than the benchmark.
  const int distinct = std::min(K, 64);
  std::vector<float> params(size_t(K) * P), feedback(size_t(K) * shape.H * shape.O);
  for (int n = 0; n < distinct; ++n) {
    init_params(shape, 0.5 + n / double(distinct), n, params.data() + size_t(n) * P);
    const std::vector<float> B = rflo_feedback(shape, n);
    std::copy(B.begin(), B.end(), feedback.begin() + size_t(n) * shape.H * shape.O);
  }
  for (int n = distinct; n < K; ++n) {
    std::copy_n(params.begin() + size_t(n % distinct) * P, P, params.begin() + size_t(n) * P);
    std::copy_n(feedback.begin() + size_t(n % distinct) * shape.H * shape.O, shape.H * shape.O,
                feedback.begin() + size_t(n) * shape.H * shape.O);
  }
  const std::vector<int> rules(K, int(rule));
  const std::vector<double> lrs(K, 1e-3);
  std::vector<std::uint32_t> data_seeds(K);
  for (int n = 0; n < K; ++n) data_seeds[n] = n % distinct;

  DeviceBuffer<float> p(params.size()), fb(feedback.size());
  p.upload(params.data(), params.size());
  fb.upload(feedback.data(), feedback.size());
  DeviceBuffer<int> rule_dev(K);
  rule_dev.upload(rules.data(), K);
  DeviceBuffer<double> lr(K);
  lr.upload(lrs.data(), K);
  DeviceBuffer<std::uint32_t> seeds(K);
  seeds.upload(data_seeds.data(), K);
  cuda::TrainLaunchPlan layered;
  layered.layered = true;
  const cuda::TrainLaunchPlan plan =
      variant == Variant::layered ? layered
      : variant == Variant::general ? cuda::plan_train_general(shape, Bt, g.max_shared)
                                  : cuda::plan_train_step(shape, Bt, T, g.max_shared,
                                                          variant == Variant::tf32x3 ? cuda::Precision::tf32x3
                                                                                     : cuda::Precision::fp32);
  if ((variant == Variant::tf32x3) != plan.mma) {
    std::fprintf(stderr, "bench_cuda: %s runs %s, not the instance asked for\n", rule_name(rule), plan.name().c_str());
    std::exit(1);
  }
  cuda::TrainScratch scratch(task, shape, K, Bt, rule == Rule::bptt, !plan.grad_shared, 1, plan.layered);
  const cuda::TrainChunk c = scratch.chunk(p.get(), fb.get(), rule_dev.get(), lr.get(), seeds.get());
  DeviceBuffer<double>& loss = scratch.loss_log;

  // Validate iteration 0 against the CPU reference on the same weights and trials.
  cuda::launch_train_step(c, plan, 0, 0, 1, nullptr);
  std::vector<double> got(K);
  loss.download(got.data(), K);
  for (int n = 0; n < std::min(K, 4); ++n) {
    cpu::Forward<float> fwd;
    const cpu::Trials trials = cpu::training_trials(task, data_seeds[n], 0, Bt);
    cpu::forward(shape, c.a, params.data() + size_t(n) * P, trials, fwd);
    const double want = cpu::task_loss<float>(trials, fwd.y, nullptr).loss;
    if (!(std::fabs(got[n] - want) <= 1e-4 * std::fabs(want))) {
      std::fprintf(stderr, "bench_cuda: %s network %d: loss %.9g on the GPU, %.9g on the CPU; not timing\n",
                   rule_name(rule), n, got[n], want);
      std::exit(1);
    }
  }
  for (int it = 1; it < 3; ++it) cuda::launch_train_step(c, plan, it, 0, it + 1, nullptr);  // warm-up
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  CUDA_CHECK(cudaEventRecord(start, nullptr));
  for (int it = 3; it < 3 + iters; ++it) cuda::launch_train_step(c, plan, it, 0, it + 1, nullptr);
  CUDA_CHECK(cudaEventRecord(stop, nullptr));
  CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  const double rate = double(K) * iters / (ms / 1e3);
  const double forward = 2.0 * shape.H * shape.H * Bt * T;
  const double flops = forward * (rule == Rule::bptt ? 3 : 2);
  return {rate, rate * flops / g.fp32_peak};
}

// The spectrum's and flossing's networks: 64 distinct ones (gains 0.5 .. 1.5, their own seeds)
// repeated to K, as time_training's.
void bench_networks(const Shape& shape, int K, std::vector<float>& params, std::vector<std::uint32_t>& seed) {
  const int P = ParamLayout(shape).size, distinct = std::min(K, 64);
  params.assign(size_t(K) * P, 0.0f);
  seed.assign(K, 0);
  for (int n = 0; n < distinct; ++n)
    init_params(shape, 0.5 + n / double(distinct), n, params.data() + size_t(n) * P);
  for (int n = distinct; n < K; ++n)
    std::copy_n(params.begin() + size_t(n % distinct) * P, P, params.begin() + size_t(n) * P);
  for (int n = 0; n < K; ++n) seed[n] = n % distinct;
}

double time_spectra(int K, const Gpu& g) {
  const TaskParams task = bench_task();
  const Shape shape{64, task.inputs(), task.outputs(), false};
  const int P = ParamLayout(shape).size, k = 64;
  const long steps = 200;
  std::vector<float> params;
  std::vector<std::uint32_t> seed;
  bench_networks(shape, K, params, seed);
  DeviceBuffer<float> p(params.size());
  p.upload(params.data(), params.size());
  DeviceBuffer<std::uint32_t> seeds(K);
  seeds.upload(seed.data(), K);
  DeviceBuffer<double> lambda(size_t(K) * k);
  cuda::SpectrumChunk c;
  c.K = K;
  c.J = 1;
  c.shape = shape;
  c.task = task;
  c.k = k;
  c.warmup = 0;
  c.steps = steps;
  c.params = p.get();
  c.seed = seeds.get();
  c.lambda = lambda.get();
  const cuda::SpectrumLaunchPlan plan = cuda::plan_spectrum(shape, k, task, g.max_shared);
  DeviceBuffer<double> frames(plan.frames_shared ? 0 : size_t(K) * 2 * shape.H * k);
  c.frames = frames.get();
  cuda::launch_spectrum(c, plan, nullptr);  // warm-up
  CUDA_CHECK(cudaDeviceSynchronize());
  const auto start = std::chrono::steady_clock::now();
  cuda::launch_spectrum(c, plan, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<double> host(lambda.size());
  lambda.download(host.data(), host.size());
  if (!std::isfinite(host[0])) {
    std::fprintf(stderr, "bench_cuda: the spectrum of network 0 is not finite; not reporting\n");
    std::exit(1);
  }
  return double(K) * steps / seconds;
}

// Flossing iterations per second of K networks at the study's flossing shape, on the heuristic's
// instance (the register kernel here) or on the general kernel; the first iteration's losses of
// the first networks are checked against the CPU first.
double time_flossing(int K, const Gpu& g, bool general) {
  Config config;  // floss_k 32, floss_warmup 20, floss_steps 100, floss_lr 1e-3
  const TaskParams task = bench_task();
  const Shape shape{64, task.inputs(), task.outputs(), false};
  const int P = ParamLayout(shape).size, H = shape.H, k = config.floss_k, reps = 3;
  const long iters = 1 + reps;
  std::vector<float> params;
  std::vector<std::uint32_t> seed;
  bench_networks(shape, K, params, seed);
  std::vector<cuda::FlossLaunchPlan> candidates = cuda::floss_candidates(shape, k, task, g.max_shared);
  const auto plan = general ? std::find_if(candidates.begin(), candidates.end(), [](const auto& p) { return !p.registers; })
                            : candidates.begin();
  if (plan == candidates.end() || (!general && !plan->registers)) {
    std::fprintf(stderr, "bench_cuda: flossing has no %s instance at H = 64, k = 32\n", general ? "general" : "register");
    std::exit(1);
  }
  DeviceBuffer<float> p(params.size()), m(size_t(K) * H * H), v(size_t(K) * H * H);
  p.upload(params.data(), params.size());
  m.zero();
  v.zero();
  DeviceBuffer<std::uint32_t> seeds(K);
  seeds.upload(seed.data(), K);
  DeviceBuffer<int> adam_steps(K), k_used(size_t(K) * iters);
  adam_steps.zero();
  DeviceBuffer<double> scratch(size_t(K) * cuda::floss_scratch_doubles(H, k, config.floss_steps)),
      loss(size_t(K) * iters);
  cuda::FlossChunk f;
  f.K = K;
  f.shape = shape;
  f.task = task;
  f.k = k;
  f.warmup = config.floss_warmup;
  f.steps = config.floss_steps;
  f.iters = iters;
  f.lr = config.floss_lr;
  f.params = p.get();
  f.seed = seeds.get();
  f.adam_m = m.get();
  f.adam_v = v.get();
  f.adam_steps = adam_steps.get();
  f.scratch = scratch.get();
  f.loss = loss.get();
  f.k_used = k_used.get();
  const cuda::FlossBiasCorrections bias_corrections(f);
  // the validating (and warm-up) iteration 0
  cuda::launch_floss_iteration(f, *plan, 0, nullptr);
  std::vector<double> got(loss.size());
  loss.download(got.data(), got.size());
  config.floss_iters = 1;
  for (int n = 0; n < std::min(K, 2); ++n) {
    std::vector<float> cpu_params(params.begin() + size_t(n) * P, params.begin() + size_t(n + 1) * P);
    const double want = cpu::floss_network(config, task, shape, cpu_params.data(), seed[n]).at(0).loss;
    if (!(std::fabs(got[size_t(n) * iters] - want) <= 1e-6 * std::fabs(want) + 1e-12)) {
      std::fprintf(stderr, "bench_cuda: flossing (%s) network %d: loss %.12g on the GPU, %.12g on the CPU; not timing\n",
                   plan->name().c_str(), n, got[size_t(n) * iters], want);
      std::exit(1);
    }
  }
  CUDA_CHECK(cudaDeviceSynchronize());
  const auto start = std::chrono::steady_clock::now();
  for (long it = 1; it < iters; ++it) cuda::launch_floss_iteration(f, *plan, it, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return double(K) * reps / seconds;
}

// The CPU reference on one core, same model: network-iterations per second.
double cpu_baseline(Rule rule, int iters) {
  const TaskParams task = bench_task();
  const Shape shape{64, task.inputs(), task.outputs(), false};
  std::vector<float> params(ParamLayout(shape).size), grad(params.size());
  init_params(shape, 1.0, 0, params.data());
  cpu::AdamState<float> adam(params.size());
  const cpu::Mat<float> B = cpu::Mat<float>::Zero(shape.H, shape.O);
  const auto start = std::chrono::steady_clock::now();
  for (int it = 0; it < iters; ++it) {
    const cpu::Trials trials = cpu::training_trials(task, 0, it, 32);
    cpu::Forward<float> fwd;
    cpu::Mat<float> dL_dy;
    cpu::forward(shape, float(task.leak()), params.data(), trials, fwd);
    cpu::task_loss(trials, fwd.y, &dL_dy);
    if (rule == Rule::bptt)
      cpu::bptt_gradient(shape, float(task.leak()), params.data(), fwd, dL_dy, grad.data());
    else
      cpu::eprop_gradient(shape, float(task.leak()), params.data(), fwd, dL_dy, B, grad.data());
    cpu::adam_step(params.data(), grad.data(), params.size(), 1e-3, cpu::AdamHyper{}, adam);
  }
  return iters / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  int K = 4096, iters = 50;
  std::string results_file, rules_arg = "bptt,eprop,rflo";
  bool spectra_too = true;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (!std::strcmp(argv[i], "--networks") && has_value)
      K = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--iters") && has_value)
      iters = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--results") && has_value)
      results_file = argv[++i];
    else if (!std::strcmp(argv[i], "--rules") && has_value)  // a comma list (for a profiler run)
      rules_arg = argv[++i];
    else if (!std::strcmp(argv[i], "--no-spectra"))
      spectra_too = false;
    else {
      std::fprintf(stderr, "bench_cuda: unknown argument %s; allowed: --networks K, --iters N, --results FILE, "
                           "--rules bptt,eprop,rflo, --no-spectra\n", argv[i]);
      return 2;
    }
  }
  std::vector<Rule> rules;
  for (Rule rule : {Rule::bptt, Rule::eprop, Rule::rflo})
    if (("," + rules_arg + ",").find(std::string(",") + rule_name(rule) + ",") != std::string::npos) rules.push_back(rule);
  if (rules.empty() || K < 1 || iters < 1) {
    std::fprintf(stderr, "bench_cuda: --rules takes bptt, eprop, rflo; --networks and --iters at least 1\n");
    return 2;
  }
  if (!cuda::device_available()) {
    std::fprintf(stderr, "bench_cuda: no CUDA device\n");
    return 1;
  }
  const Gpu g = gpu();
  std::string table = "| what | " + g.name + ", K = " + std::to_string(K) +
                      " | FP32 peak fraction | CPU reference, 1 core | ratio |\n|---|---|---|---|---|\n";
  char line[256];
  std::string before;
  std::string tensor;
  for (Rule rule : rules) {
    const TrainResult r = time_training(rule, K, iters, g, Variant::fp32);
    const TrainResult old = time_training(rule, K, iters, g, Variant::general);
    const TrainResult tf = time_training(rule, K, iters, g, Variant::tf32x3);
    const TrainResult cublas = cuda::layered_available() ? time_training(rule, K, iters, g, Variant::layered)
                                                         : TrainResult{0, 0};
    const double base = cpu_baseline(rule, 20);
    std::snprintf(line, sizeof line, "| %s, network-iterations/s | %.0f | %.2f | %.1f | %.0f |\n",
                  rule_name(rule), r.rate, r.flop_fraction, base, r.rate / base);
    table += line;
    std::snprintf(line, sizeof line, "| %s, general kernel (the baseline), network-iterations/s | %.0f | %.2f | | %.2fx |\n",
                  rule_name(rule), old.rate, old.flop_fraction, r.rate / old.rate);
    before += line;
    std::snprintf(line, sizeof line, "| %s, tf32x3 (tensor cores), network-iterations/s | %.0f | %.2f | | %.2fx fp32 |\n",
                  rule_name(rule), tf.rate, tf.flop_fraction, tf.rate / r.rate);
    tensor += line;
    std::snprintf(line, sizeof line, "| %s, layered path (cuBLAS), network-iterations/s | %.0f | %.2f | | %.2fx fp32 |\n",
                  rule_name(rule), cublas.rate, cublas.flop_fraction, cublas.rate / r.rate);
    before += line;
  }
  table += tensor + before;
  if (spectra_too) {
    const double spectra = time_spectra(K, g);
    std::snprintf(line, sizeof line, "| spectrum k = 64, network-steps/s | %.0f | | | |\n", spectra);
    table += line;
    // at most 4096 networks: each keeps its chain (2.5 MiB at 100 steps) in global memory
    const int floss_K = std::min(K, 4096);
    const double floss = time_flossing(floss_K, g, false), floss_general = time_flossing(floss_K, g, true);
    std::snprintf(line, sizeof line,
                  "| flossing H = 64, k = 32, 100 steps, K = %d, iterations/s (register instance) | %.0f | | | %.2fx general |\n",
                  floss_K, floss, floss / floss_general);
    table += line;
    std::snprintf(line, sizeof line, "| flossing, general kernel (the baseline), iterations/s | %.0f | | | |\n",
                  floss_general);
    table += line;
  }
  std::printf("# H = 64, batch 32, T = 100, Adam; %d iterations timed after 3 warm-up\n%s", iters,
              table.c_str());
  if (!results_file.empty()) {
    if (FILE* f = std::fopen(results_file.c_str(), "w")) {
      std::fprintf(f, "%s", table.c_str());
      std::fclose(f);
    }
  }
  return 0;
}
