// Throughput of the CPU spectra and flossing (units as in the README's Benchmarks section): network-steps per
// second of the full spectrum (H = 64, k = 64, QR every step) and flossing iterations per second (the
// defaults: k = 32, 100 steps after 20 warm-up), each on all cores and on one core (the
// baseline, same run), with their ratio. A network-step is one time step of one trajectory of
// one network: the Jacobian product and the QR of the H x k frame.
//
// Usage: bench_lyapunov [--networks K] [--threads P]
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "host/cpu/spectra.h"

using namespace rnnsweep;
using namespace rnnsweep::cpu;

namespace {

// Seconds to run job(0 .. n-1) on `threads` threads.
double run_parallel(int n, int threads, const std::function<void(int)>& job) {
  std::atomic<int> next{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  auto worker = [&] {
    for (int i; (i = next++) < n;) job(i);
  };
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  int networks = 4, threads = int(std::thread::hardware_concurrency());
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--networks"))
      networks = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoi(argv[i + 1]);
  }
  Config config;
  config.le_steps = 500;
  config.le_warmup = 100;
  config.le_batch = 2;
  config.floss_iters = 10;
  const TaskParams task = config.task(TaskKind::romo);
  const Shape shape{64, task.inputs(), task.outputs(), false};
  std::vector<std::vector<float>> params(networks, std::vector<float>(ParamLayout(shape).size));
  for (int n = 0; n < networks; ++n) init_params(shape, 1.5, n, params[n].data());

  // Validate before timing: W_h = 0 gives ln a for every exponent.
  {
    std::vector<float> zero(ParamLayout(shape).size, 0.0f);
    for (double l : network_spectrum(config, task, shape, zero.data(), 0))
      if (std::fabs(l - std::log(0.5)) > 1e-9) {
        std::fprintf(stderr, "bench_lyapunov: W_h = 0 gave %g, not ln 0.5; timing is meaningless\n", l);
        return 1;
      }
  }
  std::printf("# CPU spectra, H=64; %d networks at gain 1.5\n", networks);
  std::printf("%-22s %8s %14s %20s %8s\n", "what", "threads", "rate", "1-thread rate", "ratio");

  auto spectrum_job = [&](int n) { network_spectrum(config, task, shape, params[n].data(), n); };
  const double steps = double(networks) * config.le_batch * config.le_steps;
  const double all = steps / run_parallel(networks, threads, spectrum_job);
  const double one = steps / run_parallel(networks, 1, spectrum_job);
  std::printf("%-22s %8d %14.0f %20.0f %8.2f\n", "spectrum k=64 steps/s", threads, all, one, all / one);

  auto floss_job = [&](int n) {
    std::vector<float> p = params[n];
    floss_network(config, task, shape, p.data(), n);
  };
  const double iters = double(networks) * config.floss_iters;
  const double f_all = iters / run_parallel(networks, threads, floss_job);
  const double f_one = iters / run_parallel(networks, 1, floss_job);
  std::printf("%-22s %8d %14.1f %20.1f %8.2f\n", "floss k=32 iters/s", threads, f_all, f_one, f_all / f_one);
  std::printf("%-22s %8d %14.0f %20.0f %8.2f\n", "floss k=32 steps/s", threads, f_all * config.floss_steps,
              f_one * config.floss_steps, f_all / f_one);
  return 0;
}
