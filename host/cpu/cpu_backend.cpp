// The CPU backend: a pool of threads, each training whole networks one at a time.
// Networks never share state, so results do not depend on the number of threads or on which
// thread ran which network; Eigen's own threading is off (EIGEN_DONT_PARALLELIZE) for the same
// reason and because networks are the better unit of parallelism.
#include <algorithm>
#include <atomic>
#include <exception>
#include <fstream>
#include <mutex>
#include <thread>

#include "host/cpu/train.h"

namespace rnnsweep {
namespace {

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(int threads)
      : threads_(threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency())) {}

  std::string name() const override { return "cpu"; }
  std::string device() const override {
    return std::to_string(threads_) + " thread" + (threads_ > 1 ? "s" : "") + " on " + cpu_model_name();
  }

  std::vector<NetworkResult> train(const Config& config, const std::vector<NetworkSpec>& networks,
                                   const RunOptions& options, Progress& progress) override {
    long long total = 0;
    for (const auto& n : networks) total += cpu::work_units(config, n, options);
    progress.total = total;
    std::vector<NetworkResult> results(networks.size());
    std::atomic<size_t> next{0};
    std::exception_ptr failure;
    std::mutex failure_mutex;
    // When one worker fails (a full disk, a damaged checkpoint), the others checkpoint the
    // networks they are training and return at once, rather than finish them first.
    std::atomic<bool> failed{false};
    RunControl control = options.control ? *options.control : RunControl{};
    control.abort = &failed;
    RunOptions worker_options = options;
    worker_options.control = &control;
    auto worker = [&] {
      try {
        for (size_t i; (i = next++) < networks.size();) {
          // A stopped run starts no new network; the ones in flight checkpoint and return.
          if (control.stopping()) {
            results[i].spec = networks[i];
            results[i].interrupted = true;
            continue;
          }
          results[i] = cpu::train_network(config, networks[i], worker_options, progress.done);
          if (!results[i].interrupted && control.finished) control.finished(results[i]);
        }
      } catch (...) {
        // Stop handing out work and report the first failure from the calling thread.
        failed = true;
        next = networks.size();
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
    };
    const int n = std::min<int>(threads_, std::max<size_t>(1, networks.size()));
    std::vector<std::thread> pool;
    for (int t = 1; t < n; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    if (failure) std::rethrow_exception(failure);
    return results;
  }

 private:
  int threads_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace rnnsweep
