// rnnsweep: the command line. Only this file turns exceptions into messages and exit codes:
// 2 for bad input (always before any training starts), 1 for anything else.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "host/cpu/tasks.h"
#include "host/writers.h"
#include "rnnsweep/backend.h"
#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"

#ifndef RNNSWEEP_VERSION
#define RNNSWEEP_VERSION "unknown"
#endif

namespace fs = std::filesystem;
using namespace rnnsweep;

namespace {

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string clock_text(double seconds) {
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

// Prints "what: 42.0% (done/total units), rate, elapsed, ETA" on stderr until stopped: in place
// on a terminal, a line every 10 s otherwise (logs of batch jobs stay short).
class ProgressPrinter {
 public:
  ProgressPrinter(const Progress& p, std::string units, bool quiet)
      : progress_(p), units_(std::move(units)), tty_(isatty(STDERR_FILENO)) {
    if (!quiet) thread_ = std::thread([this] { loop(); });
  }
  ~ProgressPrinter() { stop(); }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) {
      thread_.join();
      print(true);
    }
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto period = std::chrono::seconds(tty_ ? 1 : 10);
    while (!wake_.wait_for(lock, period, [this] { return stopping_; })) print(false);
  }
  void print(bool last) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const long long done = progress_.done, total = std::max(1LL, progress_.total.load());
    const double rate = elapsed > 0 ? done / elapsed : 0;
    const std::string eta = rate > 0 ? clock_text((total - done) / rate) : "?";
    std::fprintf(stderr, "%srnnsweep: %5.1f%% (%lld/%lld %s), %.0f/s, elapsed %s, ETA %s%s", tty_ ? "\r" : "",
                 100.0 * done / total, done, total, units_.c_str(), rate, clock_text(elapsed).c_str(),
                 last ? "0:00" : eta.c_str(), tty_ && !last ? "" : "\n");
    std::fflush(stderr);
  }

  const Progress& progress_;
  std::string units_;
  bool tty_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

const char* kResultFiles[] = {"manifest.json", "networks.csv",     "curves.csv", "summary.csv",
                              "lyapunov.csv",  "floss_curves.csv", "timings.csv"};

// The output folder: a fresh one by default; an existing one only if it holds no results,
// or with --force (then the previous results are removed first, never mixed with new ones).
std::string prepare_out_dir(std::string out, const std::string& config_path, bool force) {
  if (out.empty()) {
    std::time_t t = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&t));
    std::string base = "results/" + fs::path(config_path).stem().string() + "-" + stamp;
    out = base;
    for (int n = 2; fs::exists(out); ++n) out = base + "-" + std::to_string(n);
  }
  if (fs::exists(out) && !fs::is_directory(out))
    throw UsageError("--out '" + out + "' exists and is not a folder");
  bool has_results = false;
  for (const char* f : kResultFiles) has_results |= fs::exists(fs::path(out) / f);
  has_results |= fs::exists(fs::path(out) / "weights");
  if (has_results && !force)
    throw UsageError("--out '" + out +
                     "' already holds results; choose another folder or pass --force to replace them");
  if (has_results) {
    for (const char* f : kResultFiles) fs::remove(fs::path(out) / f);
    fs::remove_all(fs::path(out) / "weights");
  }
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw UsageError("--out '" + out + "': cannot create the folder: " + ec.message());
  return out;
}

struct RunArgs {
  std::string config_path, out, backend = "auto";
  std::vector<std::string> overrides;
  int threads = 0;
  bool force = false, save_weights = false, quiet = false;
};

int run_sweep(const RunArgs& args, bool spectra_only, const std::string& command_line) {
  const auto start = std::chrono::steady_clock::now();
  const Config config = load_config(args.config_path, args.overrides);
  if (args.threads < 0)
    throw UsageError("--threads " + std::to_string(args.threads) +
                     ": allowed: 0 (all cores) or a positive integer");
  auto backend = make_backend(args.backend, args.threads);
  const auto networks = expand_grid(config);
  RunOptions options;
  options.keep_weights = args.save_weights;
  options.train = !spectra_only;
  // The backend checks it can run this grid (shapes, memory) before anything is written.
  const std::string plan = backend->plan(config, networks, options);
  const std::string out = prepare_out_dir(args.out, args.config_path, args.force);

  nlohmann::json manifest = {{"rnnsweep_version", RNNSWEEP_VERSION},
                             {"command", command_line},
                             {"config_file", args.config_path},
                             {"config", config_to_json(config)},
                             {"mode", spectra_only ? "lyapunov" : "run"},
                             {"backend", backend->name()},
                             {"device", backend->device()},
                             {"plan", plan},
                             {"networks", networks.size()},
                             {"started_at", utc_now()},
                             {"status", "running"}};
  write_json(out + "/manifest.json", manifest);  // also proves the folder is writable
  std::fprintf(stderr, "rnnsweep: %zu networks on %s (%s) -> %s\n", networks.size(), backend->name().c_str(),
               backend->device().c_str(), out.c_str());
  if (!plan.empty()) std::fprintf(stderr, "rnnsweep: %s\n", plan.c_str());

  Progress progress;
  const auto train_start = std::chrono::steady_clock::now();
  std::vector<NetworkResult> results;
  {
    ProgressPrinter printer(progress, "work units (iterations, spectrum trajectories)", args.quiet);
    results = backend->train(config, networks, options, progress);
  }
  const double train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start).count();

  write_networks_csv(out + "/networks.csv", results);
  write_lyapunov_csv(out + "/lyapunov.csv", results);
  write_timings_csv(out + "/timings.csv", results);
  std::vector<std::string> files = {"networks.csv", "lyapunov.csv", "timings.csv"};
  if (!spectra_only) {
    write_curves_csv(out + "/curves.csv", results);
    write_floss_curves_csv(out + "/floss_curves.csv", results);
    write_summary_csv(out + "/summary.csv", summarize(results));
    files.insert(files.end(), {"curves.csv", "floss_curves.csv", "summary.csv"});
  }
  if (args.save_weights) {
    write_weights(out + "/weights", config, results);
    files.push_back("weights/");
  }
  long diverged = 0;
  long long iterations = 0;
  for (const auto& r : results) diverged += r.diverged, iterations += r.iterations;
  const double total_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  manifest["status"] = "complete";
  manifest["finished_at"] = utc_now();
  manifest["diverged"] = diverged;
  manifest["files"] = files;
  manifest["timings"] = {{"total_s", total_seconds},
                         {"train_s", train_seconds},
                         {"network_iterations", iterations},
                         {"network_iterations_per_s", train_seconds > 0 ? iterations / train_seconds : 0.0}};
  write_json(out + "/manifest.json", manifest);
  std::fprintf(stderr, "rnnsweep: done in %s, %ld diverged; results in %s\n",
               clock_text(total_seconds).c_str(), diverged, out.c_str());
  std::printf("%s\n", out.c_str());
  return 0;
}

struct TrialsArgs {
  std::string task, out, config_path;
  std::vector<std::string> overrides;
  long data_seed = 0, iteration = 0;
  int batch = 1;
};

int write_trials(const TrialsArgs& args) {
  const Config config = args.config_path.empty() ? default_config_with(args.overrides)
                                                 : load_config(args.config_path, args.overrides);
  const TaskParams& task = config.task(parse_task(args.task));
  if (args.data_seed < 0 || args.data_seed > 4294967295L)
    throw UsageError("--data-seed " + std::to_string(args.data_seed) + ": allowed: an integer in [0, 2^32)");
  if (args.iteration < 0 || args.iteration > 4294967295L)
    throw UsageError("--iteration " + std::to_string(args.iteration) + ": allowed: an integer in [0, 2^32)");
  if (args.batch < 1)
    throw UsageError("--batch " + std::to_string(args.batch) + ": allowed: an integer >= 1");
  if (fs::exists(args.out))
    throw UsageError("--out '" + args.out + "' already exists; it is never overwritten");
  const cpu::Trials t = cpu::training_trials(task, static_cast<std::uint32_t>(args.data_seed),
                                             static_cast<std::uint32_t>(args.iteration), args.batch);
  std::ofstream o(args.out);
  if (!o) throw UsageError("--out '" + args.out + "': cannot write");
  o << "trial,step";
  for (int i = 0; i < t.I; ++i) o << ",x" << i;
  if (task.classification())
    o << ",label";
  else
    for (const char* col : {"target", "mask"})
      for (int k = 0; k < t.O; ++k) o << ',' << col << k;
  o << '\n';
  for (int b = 0; b < t.Bt; ++b)
    for (int s = 0; s < t.T; ++s) {
      const size_t row = size_t(s) * t.Bt + b;
      o << b << ',' << s;
      for (int i = 0; i < t.I; ++i) o << ',' << format_number(t.x[row * t.I + i]);
      if (task.classification())
        o << ',' << t.label[row];
      else {
        for (int k = 0; k < t.O; ++k) o << ',' << format_number(t.target[row * t.O + k]);
        for (int k = 0; k < t.O; ++k) o << ',' << format_number(t.mask[row * t.O + k]);
      }
      o << '\n';
    }
  return 0;
}

// CLI11 collects unexpected arguments when extras are allowed; we name the first unknown flag
// and the closest valid one ourselves.
void reject_extras(const CLI::App& sub) {
  const auto extras = sub.remaining();
  if (extras.empty()) return;
  std::vector<std::string> flags;
  for (const CLI::Option* opt : sub.get_options())
    for (const auto& n : opt->get_lnames()) flags.push_back("--" + n);
  const std::string& bad = extras.front();
  std::string msg = "unknown argument '" + bad + "' for 'rnnsweep " + sub.get_name() + "'";
  const std::string near = nearest(bad.substr(0, bad.find('=')), flags);
  if (!near.empty()) msg += "; did you mean '" + near + "'?";
  msg += " (see rnnsweep " + sub.get_name() + " --help)";
  throw UsageError(msg);
}

}  // namespace

int main(int argc, char** argv) {
  std::string command_line;
  for (int i = 0; i < argc; ++i) command_line += (i ? " " : "") + std::string(argv[i]);

  CLI::App app{"rnnsweep: train a grid of small recurrent networks at once"};
  app.set_version_flag("--version", RNNSWEEP_VERSION);
  app.require_subcommand(1);

  RunArgs run_args, lyap_args;
  auto add_sweep_options = [](CLI::App* sub, RunArgs& a) {
    sub->add_option("config", a.config_path, "config file (TOML), e.g. configs/quick.toml")->required();
    // one value per --set, so that `run --set iters=5 CONFIG` leaves CONFIG to the positional
    sub->add_option("--set", a.overrides, "override a config key: --set key=value (repeatable)")
        ->allow_extra_args(false);
    sub->add_option("--out", a.out, "output folder (default: results/<config>-<time>)");
    sub->add_option("--backend", a.backend, "auto (CUDA where a GPU is usable, else CPU) | cpu | cuda");
    sub->add_option("--threads", a.threads, "CPU threads (0: all cores)");
    sub->add_flag("--force", a.force, "replace the results already in --out");
    sub->add_flag("--quiet", a.quiet, "no progress line");
    sub->allow_extras();
  };
  CLI::App* run = app.add_subcommand("run", "train every network of a grid and write its results");
  add_sweep_options(run, run_args);
  run->add_flag("--save-weights", run_args.save_weights, "write initial and final W_h, W_x, w as .npy");
  CLI::App* lyap = app.add_subcommand("lyapunov", "only the Lyapunov spectra of a grid's initial networks");
  add_sweep_options(lyap, lyap_args);

  TrialsArgs trials_args;
  CLI::App* trials = app.add_subcommand("trials", "write the trials a data seed trains on at one iteration");
  trials->add_option("--task", trials_args.task, "romo | 2af | dms")->required();
  trials->add_option("--data-seed", trials_args.data_seed, "data seed")->required();
  trials->add_option("--iteration", trials_args.iteration, "training iteration")->required();
  trials->add_option("--batch", trials_args.batch, "trials in the batch")->required();
  trials->add_option("--out", trials_args.out, "CSV file to write (must not exist)")->required();
  trials->add_option("--config", trials_args.config_path, "take task parameters from this config");
  trials->add_option("--set", trials_args.overrides, "override a config key (task parameters)")
      ->allow_extra_args(false);
  trials->allow_extras();

  try {
    app.parse(argc, argv);
    for (CLI::App* sub : {run, lyap, trials})
      if (sub->parsed()) reject_extras(*sub);
    if (run->parsed()) return run_sweep(run_args, false, command_line);
    if (lyap->parsed()) return run_sweep(lyap_args, true, command_line);
    return write_trials(trials_args);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "rnnsweep: error: %s (see rnnsweep --help)\n", e.what());
    return 2;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "rnnsweep: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rnnsweep: failed: %s\n", e.what());
    return 1;
  }
}
