// Training throughput of the CPU backend (units as in the README's Benchmarks section): network-iterations
// per second for H = 64, batch 32, T = 100 (romo with a 100-step trial), Adam, for bptt and eprop, on all
// cores and on one core (the baseline, timed in the same run), and the ratio between them.
// The PyTorch figure for the same model comes from bench/peers/torch_rnn.py (bench/run.sh
// runs both).
//
// Usage: bench_train [--networks K] [--iters N] [--threads P]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "rnnsweep/backend.h"
#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"

using namespace rnnsweep;

namespace {

struct Timing {
  double rate;  // network-iterations per second
  double first_loss, last_loss;
};

Timing time_sweep(const std::string& rule, int networks, long iters, int threads) {
  std::vector<std::string> overrides = {"tasks=romo",
                                        "rules=" + rule,
                                        "gains=1.0",
                                        "lrs=1e-3",
                                        "hidden=64",
                                        "batch=32",
                                        "romo.T=100",
                                        "iters=" + std::to_string(iters),
                                        "log_every=" + std::to_string(iters)};
  std::string seeds = "seeds=[";
  for (int s = 0; s < networks; ++s) seeds += (s ? "," : "") + std::to_string(s);
  overrides.push_back(seeds + "]");
  const Config config = default_config_with(overrides);
  auto backend = make_backend("cpu", threads);
  Progress progress;
  RunOptions options;
  options.spectra = false;
  const auto start = std::chrono::steady_clock::now();
  const auto results = backend->train(config, expand_grid(config), options, progress);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Validate: every network trained to the end with finite losses that went down.
  double first = 0, last = 0;
  for (const auto& r : results) {
    if (r.diverged || !std::isfinite(r.final_loss) || r.curve.empty()) {
      std::fprintf(stderr, "bench_train: network %ld did not train cleanly; timing is meaningless\n",
                   r.spec.id);
      std::exit(1);
    }
    first += r.curve.front().loss / results.size();
    last += r.tail_loss / results.size();
  }
  return {double(networks) * iters / seconds, first, last};
}

}  // namespace

int main(int argc, char** argv) {
  int networks = 8, threads = int(std::thread::hardware_concurrency());
  long iters = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--networks"))
      networks = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--iters"))
      iters = std::atol(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoi(argv[i + 1]);
  }
  std::printf("# CPU backend, H=64, batch=32, T=100, Adam; %d networks x %ld iterations\n", networks, iters);
  std::printf("%-6s %8s %16s %16s %8s %12s\n", "rule", "threads", "net-iter/s", "1-thread net-iter/s",
              "ratio", "loss first->tail");
  for (const char* rule : {"bptt", "eprop"}) {
    time_sweep(rule, threads, 5, threads);  // warm-up: page in code and allocator
    const Timing all = time_sweep(rule, networks, iters, threads);
    const Timing one = time_sweep(rule, std::max(1, networks / threads), iters, 1);
    std::printf("%-6s %8d %16.1f %16.1f %8.2f %7.4f->%.4f\n", rule, threads, all.rate, one.rate,
                all.rate / one.rate, all.first_loss, all.last_loss);
  }
  return 0;
}
