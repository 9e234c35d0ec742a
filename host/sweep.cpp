// Running, resuming, merging and planning sweeps. What survives what is in the README ("Runs
// that survive clusters"); the folder's durable layout is in host/run_store.h.
#include "host/sweep.h"

#include <csignal>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "host/gpu_model.h"
#include "host/progress.h"
#include "host/run_store.h"
#include "host/writers.h"
#include "rnnsweep/backend.h"
#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"

#ifndef RNNSWEEP_VERSION
#define RNNSWEEP_VERSION "unknown"
#endif

namespace fs = std::filesystem;

namespace rnnsweep {
namespace {

using json = nlohmann::json;

// Set by SIGTERM (Slurm's preemption and scancel), SIGINT (Ctrl-C) and SIGUSR1 (Slurm's
// warning before the time limit): the backends checkpoint the networks in flight and return.
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "a signal handler may only touch lock-free atomics");

extern "C" void request_stop(int) { g_stop.store(true); }

// What an in-process caller watches (SweepArgs::embedded): the running run's progress and folder.
std::atomic<const Progress*> g_progress{nullptr};
std::mutex g_out_mutex;
std::string g_out;

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int signal : {SIGTERM, SIGINT, SIGUSR1}) sigaction(signal, &action, nullptr);
  // A file-size limit (ulimit -f) then makes writes fail with EFBIG, a clear error, instead of
  // killing the process mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
}

struct Shard {
  int index = 0, count = 1;
};

// The CPU time of this process, all its threads together.
double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

Shard parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  auto bad = [&] {
    return UsageError("--shard '" + text + "': allowed: I/N with integers 0 <= I < N (e.g. --shard 0/4)");
  };
  if (slash == std::string::npos) throw bad();
  try {
    size_t used_i = 0, used_n = 0;
    const std::string i_text = text.substr(0, slash), n_text = text.substr(slash + 1);
    const long i = std::stol(i_text, &used_i), n = std::stol(n_text, &used_n);
    if (used_i != i_text.size() || used_n != n_text.size() || n < 1 || i < 0 || i >= n || n > 1000000)
      throw bad();
    return {int(i), int(n)};
  } catch (const std::logic_error&) {
    throw bad();
  }
}

// Inside a Slurm array task: shard (task id - min task id) of the array's task count.
bool shard_from_slurm(Shard& shard) {
  const char* id = std::getenv("SLURM_ARRAY_TASK_ID");
  const char* min = std::getenv("SLURM_ARRAY_TASK_MIN");
  const char* count = std::getenv("SLURM_ARRAY_TASK_COUNT");
  if (!id || !min || !count) return false;
  shard = parse_shard(std::to_string(std::atol(id) - std::atol(min)) + "/" + count);
  return true;
}

// The shard a new run or a plan covers: --shard, else a Slurm array task's, else the whole grid.
Shard requested_shard(const SweepArgs& args) {
  Shard shard;
  if (!args.shard.empty())
    shard = parse_shard(args.shard);
  else
    shard_from_slurm(shard);
  return shard;
}

void check_progress_every(double seconds) {
  if (!(seconds >= 0) || seconds > 86400)
    throw UsageError("--progress-every " + format_number(seconds) +
                     ": allowed: seconds between progress lines, > 0 and at most 86400 (0: the default)");
}

void check_threads(int threads) {
  if (threads < 0)
    throw UsageError("--threads " + std::to_string(threads) +
                     ": allowed: 0 (all cores) or a positive integer");
}

std::string default_out_dir(const std::string& config_path, const Shard& shard) {
  std::time_t t = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&t));
  std::string base = "results/" + fs::path(config_path).stem().string() + "-" + stamp;
  if (shard.count > 1) base += "-shard" + std::to_string(shard.index) + "of" + std::to_string(shard.count);
  std::string out = base;
  for (int n = 2; fs::exists(out); ++n) out = base + "-" + std::to_string(n);
  return out;
}

const char* kResultFiles[] = {"manifest.json", "networks.csv",     "curves.csv",  "summary.csv",
                              "lyapunov.csv",  "floss_curves.csv", "timings.csv", "results.jsonl",
                              "checkpoints",   "weights",          "partial",     "partial.tmp", "lyapunov_curves.csv"};

// The output folder: a fresh one by default; an existing one only if it holds no results, or
// with --force (then the previous results are removed first, never mixed with new ones).
std::string prepare_out_dir(const std::string& out, bool force) {
  if (fs::exists(out) && !fs::is_directory(out))
    throw UsageError("--out '" + out + "' exists and is not a folder");
  bool has_results = false;
  for (const char* f : kResultFiles) has_results |= fs::exists(fs::path(out) / f);
  if (has_results && !force)
    throw UsageError("--out '" + out +
                     "' already holds results; choose another folder, pass --force to replace them, or "
                     "continue an interrupted run with rnnsweep run --resume '" +
                     out + "'");
  std::error_code ec;
  if (has_results) {
    for (const char* f : kResultFiles) fs::remove_all(fs::path(out) / f, ec);
    // scripts/plot.py's figures of the results just removed: they would describe another run
    // (and plot.py would refuse to draw over them)
    fs::remove_all(fs::path(out) / "plots", ec);
  }
  fs::create_directories(out, ec);
  if (ec || !fs::is_directory(out))
    throw UsageError("--out '" + out + "': cannot create the folder" + (ec ? ": " + ec.message() : ""));
  return out;
}

Shard shard_of_manifest(const json& manifest) {
  Shard s;
  if (manifest.contains("shard"))
    s = {manifest["shard"].at("index").get<int>(), manifest["shard"].at("count").get<int>()};
  return s;
}

// A run's bookkeeping of finished networks for the manifest, shared by the workers.
struct Counts {
  std::mutex mutex;
  long finished = 0;
  std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
};


// The tables of the networks of `dir` finished so far, as a results folder of their own at `out`
// (default dir/partial) whose manifest says status "partial" and how many networks it holds:
// plot.py and pandas read it like a finished run's. Written beside in `out`.tmp and renamed into
// place, so a reader never sees a mix of two snapshots. Reads the journal without changing it,
// so it is safe beside the run that appends to it. Returns how many networks the tables hold.
long write_partial_snapshot(const std::string& dir, const json& manifest, const std::vector<NetworkSpec>& networks,
                            const std::string& out) {
  const std::vector<NetworkResult> finished = RunStore(dir, RunStore::Access::read).finished_results_of(networks);
  const std::string tmp = out + ".tmp";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw std::runtime_error("cannot create '" + tmp + "': " + ec.message());
  const bool trained = manifest.value("mode", "run") != "lyapunov";
  json snapshot = manifest;
  snapshot["files"] = write_tables(tmp, finished, trained);
  snapshot["partial"] = {{"of", dir},
                         {"run_status", manifest.value("status", "unknown")},
                         {"networks_in_tables", finished.size()},
                         {"networks", networks.size()},
                         {"written_at", utc_now()}};
  snapshot["status"] = "partial";
  snapshot["networks_finished"] = finished.size();
  write_json(tmp + "/manifest.json", snapshot);
  fs::remove_all(out, ec);  // the previous snapshot, with any figures drawn from it
  fs::rename(tmp, out, ec);
  if (ec) throw std::runtime_error("cannot rename '" + tmp + "' to '" + out + "': " + ec.message());
  return long(finished.size());
}

void remove_partial_snapshot(const std::string& dir) {
  std::error_code ignored;
  fs::remove_all(dir + "/partial", ignored);
  fs::remove_all(dir + "/partial.tmp", ignored);
}

}  // namespace

json read_manifest(const std::string& dir, const std::string& flag) {
  const std::string path = dir + "/manifest.json";
  std::ifstream in(path);
  if (!in) throw UsageError(flag + " '" + dir + "': not an rnnsweep results folder (no manifest.json)");
  try {
    return json::parse(in);
  } catch (const json::exception&) {
    throw UsageError(flag + " '" + dir + "': manifest.json is damaged");
  }
}

void request_run_stop(bool stop) { g_stop.store(stop); }

bool run_progress(long long& done, long long& total) {
  const Progress* p = g_progress.load();
  if (!p) return false;
  done = p->done.load();
  total = p->total.load();
  return true;
}

std::string last_run_dir() {
  std::lock_guard<std::mutex> lock(g_out_mutex);
  return g_out;
}

Config config_from_manifest(const json& manifest, const std::string& dir) {
  std::vector<std::string> overrides;
  for (const auto& [key, value] : manifest.at("config").items())
    overrides.push_back(key + "=" + value.dump());
  Config config = default_config_with(overrides);
  if (config_to_json(config) != manifest.at("config"))
    throw UsageError("'" + dir + "/manifest.json': its config does not read back the same in this version");
  return config;
}

std::vector<NetworkSpec> networks_of_manifest(const json& manifest, const std::string& dir) {
  const Config config = config_from_manifest(manifest, dir);
  const auto grid = expand_grid(config);
  const Shard shard = shard_of_manifest(manifest);
  return shard.count > 1 ? shard_of(config, grid, shard.index, shard.count) : grid;
}

void refuse_snapshot(const json& manifest, const std::string& dir, const std::string& what) {
  if (manifest.value("status", "") == "partial")
    throw UsageError(what + " '" + dir + "': it holds the partial tables of '" +
                     manifest["partial"].value("of", "?") + "', not a run; name that run's folder");
}

int run_sweep(const SweepArgs& args, const std::string& command_line) {
  const auto start = std::chrono::steady_clock::now();
  const bool resuming = !args.resume_dir.empty();
  Config config;
  Shard shard;
  bool spectra_only = args.spectra_only, save_weights = args.save_weights;
  std::string out;
  json manifest;
  if (resuming) {
    out = args.resume_dir;
    manifest = read_manifest(out, "--resume");
    refuse_snapshot(manifest, out, "--resume");
    if (manifest.value("status", "") == "complete") {
      std::fprintf(stderr, "rnnsweep: '%s' is already complete; nothing to do\n", out.c_str());
      std::printf("%s\n", out.c_str());
      return 0;
    }
    if (manifest.value("rnnsweep_version", "") != RNNSWEEP_VERSION)
      throw UsageError("--resume '" + out + "': it was run by rnnsweep " +
                       manifest.value("rnnsweep_version", "?") + ", this is " + RNNSWEEP_VERSION +
                       "; resume it with that version");
    config = config_from_manifest(manifest, out);
    shard = shard_of_manifest(manifest);
    spectra_only = manifest.value("mode", "run") == "lyapunov";
    save_weights = manifest.value("save_weights", false);
  } else {
    config = load_config(args.config_path, args.overrides);
    shard = requested_shard(args);
  }
  check_threads(args.threads);
  check_progress_every(args.progress_every);
  // A resumed run keeps its backend unless told otherwise: float results are identical only
  // on the same backend (and device).
  std::string backend_name = args.backend.empty() ? "auto" : args.backend;
  if (resuming && args.backend.empty()) backend_name = manifest.value("backend", "auto");
  auto backend = make_backend(backend_name, args.threads);
  if (resuming && backend->name() != manifest.value("backend", backend->name()))
    std::fprintf(stderr,
                 "rnnsweep: warning: resuming a run made on %s with %s: its tables will agree with an "
                 "uninterrupted run within float rounding, not byte for byte\n",
                 manifest.value("backend", "?").c_str(), backend->name().c_str());
  const auto grid = expand_grid(config);
  const auto networks = shard.count > 1 ? shard_of(config, grid, shard.index, shard.count) : grid;
  RunOptions options;
  options.keep_weights = save_weights;
  options.train = !spectra_only;
  // The backend checks it can run this grid (shapes, memory) before anything is written.
  const std::string plan = backend->plan(config, networks, options);
  if (!resuming)
    out = prepare_out_dir(args.out.empty() ? default_out_dir(args.config_path, shard) : args.out, args.force);
  {
    std::lock_guard<std::mutex> lock(g_out_mutex);
    g_out = out;
  }

  RunStore store(out);
  const std::set<long> already = store.finished_ids();
  std::vector<NetworkSpec> remaining;
  for (const auto& n : networks)
    if (!already.count(n.id)) remaining.push_back(n);
  // `rnnsweep lyapunov`: a network's initial spectrum depends on its task, init, hidden, gain and
  // seed only (rule, lr, batch, data seed and flossing shape the training, which is not run), so each distinct
  // initial network is computed once, and its result recorded for every grid point sharing it.
  std::map<long, std::vector<NetworkSpec>> sharing;  // computed network -> the grid points it stands for
  long distinct = 0;
  if (spectra_only) {
    std::map<std::tuple<int, int, int, int, double, std::uint32_t>, long> first_of;
    std::vector<NetworkSpec> computed;
    for (const auto& n : remaining) {
      // (a file task is its own task: n.file)
      const auto [it, fresh] =
          first_of.emplace(std::make_tuple(int(n.task), n.file, int(n.init), n.hidden, n.gain, n.seed), n.id);
      if (fresh) computed.push_back(n);
      sharing[it->second].push_back(n);
    }
    distinct = long(computed.size());
    remaining = std::move(computed);
  }

  if (!resuming) {
    manifest = {{"rnnsweep_version", RNNSWEEP_VERSION},
                {"command", command_line},
                {"config_file", args.config_path},
                {"config", config_to_json(config)},
                {"mode", spectra_only ? "lyapunov" : "run"},
                {"save_weights", save_weights},
                {"shard", {{"index", shard.index}, {"count", shard.count}}},
                {"grid_networks", grid.size()},
                {"networks", networks.size()},
                {"started_at", utc_now()}};
  } else {
    manifest["resumed"] = manifest.value("resumed", 0) + 1;
    manifest["resumed_at"] = utc_now();
    manifest["resume_command"] = command_line;
  }
  manifest["backend"] = backend->name();
  manifest["device"] = backend->device();
  manifest["plan"] = plan;
  manifest["status"] = "running";
  manifest["networks_finished"] = already.size();
  if (spectra_only) manifest["distinct_initial_networks_to_go"] = distinct;
  write_json(out + "/manifest.json", manifest);  // also proves the folder is writable

  std::fprintf(stderr, "rnnsweep: %s%s on %s (%s) -> %s\n", count_of(networks.size(), "network").c_str(),
               shard.count > 1 ? (" (shard " + std::to_string(shard.index) + "/" +
                                  std::to_string(shard.count) + " of " + std::to_string(grid.size()) + ")")
                                     .c_str()
                               : "",
               backend->name().c_str(), backend->device().c_str(), out.c_str());
  if (resuming)
    std::fprintf(stderr, "rnnsweep: resuming: %zu finished, %zu to go\n", already.size(),
                 networks.size() - already.size());
  if (spectra_only)
    std::fprintf(stderr,
                 "rnnsweep: %s share %ld distinct initial networks (task, init, hidden, gain, seed): each spectrum is "
                 "computed once\n",
                 count_of(networks.size() - already.size(), "network").c_str(), distinct);
  if (!plan.empty()) std::fprintf(stderr, "rnnsweep: %s\n", plan.c_str());

  // Finished networks go to the journal (and their weights to weights/) as they finish; the
  // manifest's count follows at most every few seconds.
  Counts counts;
  counts.finished = long(already.size());
  std::mutex manifest_mutex;
  RunControl control;
  control.stop = &g_stop;
  control.checkpoint_every = config.checkpoint_every;
  auto record = [&](const NetworkResult& r) {
    if (save_weights) write_weights(out + "/weights", config, {r});
    store.append_result(r);
  };
  control.finished = [&](const NetworkResult& r) {
    long recorded = 1;
    if (!spectra_only) {
      record(r);
    } else {
      // every grid point this network stands for, each with an equal share of its time
      const std::vector<NetworkSpec>& points = sharing.at(r.spec.id);
      for (const NetworkSpec& point : points) {
        NetworkResult copy = r;
        copy.spec = point;
        copy.seconds = r.seconds / double(points.size());
        record(copy);
      }
      recorded = long(points.size());
    }
    std::lock_guard<std::mutex> lock(counts.mutex);
    counts.finished += recorded;
    if (std::chrono::steady_clock::now() - counts.last_write > std::chrono::seconds(5)) {
      counts.last_write = std::chrono::steady_clock::now();
      std::lock_guard<std::mutex> m(manifest_mutex);
      manifest["networks_finished"] = counts.finished;
      write_json(out + "/manifest.json", manifest);
    }
  };
  control.checkpoint = [&](const NetworkCheckpoint& c) { store.save_checkpoint(c); };
  control.resume = [&](long id) { return store.load_checkpoint(id); };
  options.control = &control;
  if (!args.embedded) install_stop_handlers();

  Progress progress;
  g_progress = &progress;
  struct Unpublish {  // the progress goes out of scope with this function
    ~Unpublish() { g_progress = nullptr; }
  } unpublish;
  const auto train_start = std::chrono::steady_clock::now();
  std::vector<NetworkResult> results;
  try {
    ProgressPrinter printer(progress, "work units (iterations, spectrum trajectories)", args.quiet,
                            args.progress_every);
    results = backend->train(config, remaining, options, progress);
    printer.stop(g_stop.load());
  } catch (const std::exception& e) {
    // Record the failure where a batch system's user looks; the journal and checkpoints on
    // disk are intact (every write is atomic), so the run can be resumed once the cause is gone.
    std::lock_guard<std::mutex> m(manifest_mutex);
    manifest["status"] = "failed";
    manifest["error"] = e.what();
    manifest["networks_finished"] = counts.finished;
    try {
      write_json(out + "/manifest.json", manifest);
    } catch (const std::exception&) {
    }
    throw std::runtime_error(std::string(e.what()) + " (finished results are kept; after fixing the cause: " +
                             "rnnsweep run --resume '" + out + "')");
  }
  const double train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start).count();
  long long iterations = 0;
  bool interrupted = g_stop.load();
  for (const auto& r : results) interrupted |= r.interrupted, iterations += r.interrupted ? 0 : r.iterations;
  manifest["networks_finished"] = counts.finished;
  manifest["timings"] = {{"train_s", train_seconds},
                         {"network_iterations", iterations},
                         {"network_iterations_per_s", train_seconds > 0 ? iterations / train_seconds : 0.0}};
  if (interrupted) {
    manifest["status"] = "interrupted";
    manifest["interrupted_at"] = utc_now();
    // The finished networks' tables, so that an interrupted run can be looked at before it is
    // resumed; a failure here (a full disk) costs only the snapshot, never the run.
    std::string snapshot;
    if (counts.finished > 0) try {
        write_partial_snapshot(out, manifest, networks, out + "/partial");
        manifest["partial_tables"] = "partial";
        snapshot = "; their tables are in " + out + "/partial";
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rnnsweep: warning: no partial tables: %s\n", e.what());
      }
    write_json(out + "/manifest.json", manifest);
    std::fprintf(
        stderr,
        "rnnsweep: interrupted: %ld of %s finished%s, the ones in flight checkpointed; continue "
        "with: rnnsweep run --resume %s\n",
        counts.finished, count_of(networks.size(), "network").c_str(), snapshot.c_str(), out.c_str());
    return kExitInterrupted;
  }

  // The tables come from the journal, the same way for a plain, a resumed and a merged run.
  const std::vector<NetworkResult> all = store.results_of(networks);
  std::vector<std::string> files = write_tables(out, all, !spectra_only);
  if (save_weights) files.push_back("weights/");
  files.push_back("results.jsonl");
  long diverged = 0;
  for (const auto& r : all) diverged += r.diverged;
  const double total_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  manifest["status"] = "complete";
  manifest["finished_at"] = utc_now();
  manifest["diverged"] = diverged;
  manifest["files"] = files;
  manifest["timings"]["total_s"] = total_seconds;
  manifest.erase("partial_tables");
  write_json(out + "/manifest.json", manifest);
  remove_partial_snapshot(out);  // the whole tables supersede it
  std::error_code ignored;
  fs::remove_all(out + "/checkpoints", ignored);  // every network is finished: nothing to resume
  std::fprintf(stderr, "rnnsweep: done in %s, %ld diverged; results in %s\n",
               clock_text(total_seconds).c_str(), diverged, out.c_str());
  std::printf("%s\n", out.c_str());
  return 0;
}

int merge_runs(const std::vector<std::string>& shard_dirs, const std::string& out_arg, bool force,
               const std::string& command_line) {
  if (shard_dirs.empty()) throw UsageError("merge: name the shard folders to join");
  if (out_arg.empty()) throw UsageError("merge: --out DIR is required");
  std::vector<json> manifests;
  for (const auto& dir : shard_dirs) manifests.push_back(read_manifest(dir, "merge:"));
  const json& first = manifests.front();
  std::map<int, std::string> by_index;
  int count = 0;
  for (size_t i = 0; i < shard_dirs.size(); ++i) {
    const json& m = manifests[i];
    const std::string& dir = shard_dirs[i];
    refuse_snapshot(m, dir, "merge:");
    if (m.value("status", "") != "complete")
      throw UsageError("merge: '" + dir + "' is unfinished (status " + m.value("status", "unknown") +
                       "); finish it first: rnnsweep run --resume '" + dir + "'");
    if (m.value("rnnsweep_version", "") != first.value("rnnsweep_version", ""))
      throw UsageError("merge: '" + dir + "' was run by rnnsweep " + m.value("rnnsweep_version", "?") +
                       ", '" + shard_dirs[0] + "' by " + first.value("rnnsweep_version", "?"));
    if (m.at("config") != first.at("config") || m.value("mode", "") != first.value("mode", "")) {
      // name the first key that differs (a task file that changed between shards shows as its hash)
      std::string key;
      for (const auto& [k, v] : m.at("config").items())
        if (key.empty() && (!first.at("config").contains(k) || first.at("config").at(k) != v)) key = k;
      for (const auto& [k, v] : first.at("config").items())
        if (key.empty() && !m.at("config").contains(k)) key = k;
      std::string why = key.empty() ? "" : " (key '" + key + "' differs";
      if (key.rfind("file.", 0) == 0 && key.size() > 5 && key.substr(key.size() - 5) == ".hash")
        why += ": the task file changed between the shards";
      throw UsageError("merge: '" + dir + "' was run with a different config than '" + shard_dirs[0] + "'" + why +
                       (why.empty() ? "" : ")"));
    }
    const Shard s = shard_of_manifest(m);
    if (i == 0) count = s.count;
    if (s.count != count)
      throw UsageError("merge: '" + dir + "' is one of " + std::to_string(s.count) + " shards, '" +
                       shard_dirs[0] + "' one of " + std::to_string(count));
    const auto [it, fresh] = by_index.emplace(s.index, dir);
    if (!fresh)
      throw UsageError("merge: shard " + std::to_string(s.index) + "/" + std::to_string(count) +
                       " appears twice ('" + it->second + "' and '" + dir + "')");
  }
  for (int i = 0; i < count; ++i)
    if (!by_index.count(i))
      throw UsageError("merge: shard " + std::to_string(i) + "/" + std::to_string(count) + " is missing");

  const Config config = config_from_manifest(first, shard_dirs[0]);
  const auto grid = expand_grid(config);
  std::vector<NetworkResult> all;
  for (const auto& [index, dir] : by_index) {
    auto part = RunStore(dir).results_of(count > 1 ? shard_of(config, grid, index, count) : grid);
    all.insert(all.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  std::sort(all.begin(), all.end(),
            [](const NetworkResult& a, const NetworkResult& b) { return a.spec.id < b.spec.id; });

  const std::string out = prepare_out_dir(out_arg, force);
  const bool spectra_only = first.value("mode", "run") == "lyapunov";
  std::vector<std::string> files = write_tables(out, all, !spectra_only);
  for (const auto& [index, dir] : by_index) {
    if (!fs::exists(dir + "/weights")) continue;
    fs::create_directories(out + "/weights");
    for (const auto& entry : fs::directory_iterator(dir + "/weights"))
      fs::copy_file(entry.path(), fs::path(out) / "weights" / entry.path().filename(),
                    fs::copy_options::overwrite_existing);
  }
  if (fs::exists(out + "/weights")) files.push_back("weights/");
  long diverged = 0;
  for (const auto& r : all) diverged += r.diverged;
  json manifest = first;
  manifest["command"] = command_line;
  manifest["merged_from"] = shard_dirs;
  manifest["shard"] = {{"index", 0}, {"count", 1}};
  manifest["networks"] = all.size();
  manifest["networks_finished"] = all.size();
  manifest["diverged"] = diverged;
  manifest["files"] = files;
  manifest["finished_at"] = utc_now();
  manifest.erase("timings");
  write_json(out + "/manifest.json", manifest);
  std::fprintf(stderr, "rnnsweep: merged %s, %s -> %s\n", count_of(count, "shard").c_str(),
               count_of(all.size(), "network").c_str(), out.c_str());
  std::printf("%s\n", out.c_str());
  return 0;
}

int write_tables_so_far(const std::string& dir, const std::string& out_arg) {
  const json manifest = read_manifest(dir, "tables:");
  refuse_snapshot(manifest, dir, "tables:");
  const std::string status = manifest.value("status", "unknown");
  if (status == "complete") {
    std::fprintf(stderr, "rnnsweep: '%s' is complete: its tables are in it\n", dir.c_str());
    std::printf("%s\n", dir.c_str());
    return 0;
  }
  const std::string out = out_arg.empty() ? dir + "/partial" : out_arg;
  // --out elsewhere: a snapshot there is refreshed, anything else is never replaced
  if (!out_arg.empty() && fs::exists(out)) {
    bool has_results = false;
    for (const char* f : kResultFiles) has_results |= fs::exists(fs::path(out) / f);
    if (has_results && read_manifest(out, "--out").value("status", "") != "partial")
      throw UsageError("--out '" + out + "' holds results that are not a partial snapshot; choose another folder");
  }
  const std::vector<NetworkSpec> networks = networks_of_manifest(manifest, dir);
  const long n = write_partial_snapshot(dir, manifest, networks, out);
  std::fprintf(stderr, "rnnsweep: the tables of %ld of %s of '%s' (%s) -> %s\n", n,
               count_of(networks.size(), "network").c_str(), dir.c_str(), status.c_str(), out.c_str());
  std::printf("%s\n", out.c_str());
  return 0;
}

int plan_sweep(const SweepArgs& args) {
  const Config config = load_config(args.config_path, args.overrides);
  const Shard shard = requested_shard(args);
  check_threads(args.threads);
  // --backend cuda where no GPU is at hand (a login node): the estimate comes from the kernels'
  // static model for an H200 instead of a calibration run
  std::string no_gpu;
  const bool modeled = args.backend == "cuda" && !gpu_here(&no_gpu);
  auto backend = modeled ? nullptr : make_backend(args.backend.empty() ? "auto" : args.backend, args.threads);
  const auto grid = expand_grid(config);
  const auto networks = shard.count > 1 ? shard_of(config, grid, shard.index, shard.count) : grid;
  RunOptions options;
  const std::string chunking = modeled ? "" : backend->plan(config, networks, options);

  std::printf("grid: %s (%s x %s x %zu hidden x %zu batch x %s x %s x %s x %s x %zu floss)\n",
              count_of(grid.size(), "network").c_str(), count_of(config.tasks.size(), "task").c_str(),
              count_of(config.inits.size(), "init").c_str(), config.hiddens().size(), config.batches().size(),
              count_of(config.rules.size(), "rule").c_str(),
              count_of(config.gains.size(), "gain").c_str(), count_of(config.lrs.size(), "lr").c_str(),
              count_of(config.seeds.size(), "seed").c_str(), config.floss.size());
  if (shard.count > 1)
    std::printf("shard %d/%d: %s\n", shard.index, shard.count, count_of(networks.size(), "network").c_str());
  long long iterations = 0, flossing = 0, trajectories = 0;
  size_t params = 0;
  double state_bytes = 0;
  for (const auto& n : networks) {
    const Config shaped = config_of(config, n);
    const TaskParams& task = task_of(config, n);
    const Shape s{shaped.hidden, task.inputs(), task.outputs(), config.bias};
    iterations += config.iters;
    flossing += n.floss ? config.flossing_iterations() : 0;
    trajectories += config.le_batch * (n.floss ? 3 : 2);
    params = std::max<size_t>(params, ParamLayout(s).size);
    // parameters and Adam moments, plus BPTT's history of the hidden state
    state_bytes =
        std::max(state_bytes, 3.0 * ParamLayout(s).size * 4 +
                                  (n.rule == Rule::bptt ? 2.0 * (task.T() + 1) * s.H * shaped.batch * 4 : 0));
  }
  std::printf(
      "work: %lld network-iterations, %lld flossing iterations, %lld spectrum trajectories of %ld steps\n",
      iterations, flossing, trajectories, config.le_warmup + config.le_steps);
  std::printf("memory: %zu parameters per network; training state up to %.1f MiB per network in flight\n",
              params, state_bytes / (1 << 20));
  if (modeled) {
    const GpuModelEstimate m = model_gpu_time(config, networks, options);
    std::printf("backend: cuda, not here (%s): the estimate is the kernels' static model of an H200\n",
                no_gpu.c_str());
    for (const std::string& note : m.notes) std::printf("model: %s\n", note.c_str());
    std::printf("estimated time on an H200: %s (training %s, spectra %s, flossing %s; modeled from the compiler's "
                "output, bench/MODEL.md, not measured: run plan on the GPU node for a calibrated one)\n",
                clock_text(m.total()).c_str(), clock_text(m.train_s).c_str(), clock_text(m.spectra_s).c_str(),
                clock_text(m.floss_s).c_str());
    return 0;
  }
  std::printf("backend: %s on %s\n", backend->name().c_str(), backend->device().c_str());
  if (!chunking.empty()) std::printf("%s\n", chunking.c_str());

  // Calibration: for every task, a sample of each rule's networks (spread over the grid, up to
  // `sample_size` per task) trains a few iterations, a sample's spectra run a few steps and a
  // flossing iteration is timed, each kRepeats times; each repeat gives an estimate, the median
  // is printed with the lowest and highest. On the CPU the cost is this process's CPU time,
  // which other users of a shared machine do not inflate, spread over the threads the run will
  // use; on a GPU, wall-clock time.
  constexpr int kRepeats = 3;
  const bool on_cpu = backend->name() == "cpu";
  const int threads = args.threads > 0 ? args.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  const int sample_size = on_cpu ? threads : 256;
  double calibration_cpu = 0, calibration_capacity = 0;
  auto time_of = [&](const Config& c, const std::vector<NetworkSpec>& specs, bool train, bool spectra) {
    RunOptions o;
    o.train = train;
    o.spectra = spectra;
    Progress p;
    const double cpu0 = process_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    backend->train(c, specs, o, p);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = process_cpu_seconds() - cpu0;
    calibration_cpu += cpu;
    calibration_capacity += wall * std::min<double>(threads, double(specs.size()));
    // CPU seconds of one network's work on one thread, or the GPU's wall time for the whole sample
    return on_cpu ? cpu : wall;
  };
  // `count` of `from`, evenly spread (every gain, lr and seed has its turn).
  auto spread = [](const std::vector<NetworkSpec>& from, size_t count) {
    std::vector<NetworkSpec> picked;
    const size_t n = std::min(count, from.size());
    for (size_t i = 0; i < n; ++i) picked.push_back(from[i * from.size() / n]);
    for (auto& p : picked) p.floss = false;
    return picked;
  };
  std::vector<double> estimates(kRepeats, 0.0);  // CPU: CPU seconds; GPU: wall seconds
  for (const auto& task : config.tasks) {
    std::vector<NetworkSpec> of_task;
    for (const auto& n : networks)
      if (task_label(n) == task) of_task.push_back(n);
    if (of_task.empty()) continue;
    Config c = config;
    c.iters = std::min<long>(config.iters, 10);
    c.log_every = c.iters;
    c.le_every = 0;  // the tracked spectra are timed on their own below
    c.eval_every = 0;  // and the probes are counted as training iterations:
    c.alignment = false;
    // an eval point as its eval_trials / batch batches, an alignment point as one iteration
    auto points = [&](long every) { return every > 0 ? (config.iters - 1) / every + 1 + ((config.iters - 1) % every != 0) : 0; };
    const double eval_iterations = double(points(config.eval_every)) * double(config.eval_trials / config.batch);
    for (const auto& rule : config.rules) {
      std::vector<NetworkSpec> of_rule;
      for (const auto& n : of_task)
        if (rule_name(n.rule) == rule) of_rule.push_back(n);
      if (of_rule.empty()) continue;
      const auto sample = spread(of_rule, std::max<size_t>(1, sample_size / config.rules.size()));
      for (int r = 0; r < kRepeats; ++r) {
        const double per_iteration = time_of(c, sample, true, false) / (double(c.iters) * sample.size());
        const double probes = eval_iterations + (config.alignment && rule != "bptt" ? points(config.log_every) : 0);
        estimates[r] += double(of_rule.size()) * (double(config.iters) + probes) * per_iteration;
      }
    }
    const auto sample = spread(of_task, size_t(sample_size));
    long long task_trajectories = 0, task_flossing = 0;
    const long long task_tracked = config.le_batch * tracked_spectra_from(config, 0) * (long long)of_task.size();
    for (const auto& n : of_task) {
      task_trajectories += config.le_batch * (n.floss ? 3 : 2);
      task_flossing += n.floss ? config.flossing_iterations() : 0;
    }
    // one trajectory per sampled network, as long as the run's (up to 2000 steps): a short one
    // would weigh its fixed costs (frame, trials) too heavily, and warm-up steps cost less than
    // the steps that carry the QR
    Config le = config;
    const double shorten = std::min(1.0, 2000.0 / double(config.le_warmup + config.le_steps));
    le.le_steps = std::max(1L, long(config.le_steps * shorten));
    le.le_warmup = long(config.le_warmup * shorten);
    le.le_batch = 1;
    Config tracked = le;  // a tracked spectrum: le_track_k exponents on the same trajectory
    tracked.le_k = config.le_track_k;
    Config f = config;
    f.le_every = 0;
    f.iters = 1;
    f.log_every = 1;
    f.floss_every = 0;
    f.floss_iters = std::clamp<long>(config.floss_iters, 1, 5);  // more than one: its setup is paid once
    std::vector<NetworkSpec> flossed = sample;
    for (auto& n : flossed) n.floss = true;
    for (int r = 0; r < kRepeats; ++r) {
      const double per_trajectory = time_of(le, sample, false, true) / double(sample.size()) / shorten;
      estimates[r] += double(task_trajectories) * per_trajectory;
      if (task_tracked > 0)
        estimates[r] += double(task_tracked) * time_of(tracked, sample, false, true) / double(sample.size()) / shorten;
      if (task_flossing > 0) {
        const double per_iteration = time_of(c, sample, true, false) / (double(c.iters) * sample.size());
        const double per_floss =
            std::max(0.0, time_of(f, flossed, true, false) / sample.size() - per_iteration) / f.floss_iters;
        estimates[r] += double(task_flossing) * per_floss;
      }
    }
  }
  // CPU seconds become wall-clock seconds on the threads the run will keep busy.
  const double parallel = on_cpu ? double(std::min<size_t>(threads, std::max<size_t>(1, networks.size()))) : 1.0;
  for (double& e : estimates) e /= parallel;
  std::sort(estimates.begin(), estimates.end());
  const double median = estimates[kRepeats / 2];
  std::printf("estimated time: %s (%s to %s over %d calibration repeats; %s)\n", clock_text(median).c_str(),
              clock_text(estimates.front()).c_str(), clock_text(estimates.back()).c_str(), kRepeats,
              on_cpu ? ("this process's CPU time, samples of every rule of every task, spread over " +
                        count_of(long(parallel), "thread"))
                           .c_str()
                     : "wall-clock time of samples of every rule of every task on this GPU");
  // How busy the machine was: the share of the calibration's thread time that ran on a CPU.
  const double busy = calibration_capacity > 0 ? calibration_cpu / calibration_capacity : 1;
  if (on_cpu && busy < 0.7)
    std::printf("note: the calibration got %.0f%% of its threads' time: this machine is shared, and the run will "
                "take longer than estimated unless it gets its %s to itself\n",
                100 * busy, count_of(threads, "thread").c_str());
  return 0;
}

}  // namespace rnnsweep
