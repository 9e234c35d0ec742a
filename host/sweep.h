// The commands that run sweeps: run (and --resume), lyapunov, merge and plan. host/main.cpp
// parses the command line into these and turns their exceptions into exit codes.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"

namespace rnnsweep {

// Exit code of a run stopped by SIGTERM, SIGINT or SIGUSR1 after checkpointing: resume it.
constexpr int kExitInterrupted = 3;

struct SweepArgs {
  std::string config_path, out, shard, resume_dir;
  std::string backend;  // "" = not given: auto for a new run, the run's own for --resume
  std::vector<std::string> overrides;
  int threads = 0;
  double progress_every = 0;  // seconds between progress lines; 0: 1 on a terminal, 10 otherwise
  bool force = false, save_weights = false, quiet = false;
  bool spectra_only = false;  // `rnnsweep lyapunov`
  // In-process (the Python package): no signal handlers; request_run_stop() stops the run as
  // SIGINT would, and run_progress() and last_run_dir() say how far it is and where it writes.
  bool embedded = false;
};

// For a caller that runs run_sweep in-process on another thread (one run at a time):
// stop the run after checkpointing, as SIGINT does (it returns kExitInterrupted; false clears
// the request, before a run starts) ...
void request_run_stop(bool stop = true);
// ... its work units done and announced so far (false before the run's work has started) ...
bool run_progress(long long& done, long long& total);
// ... and its results folder (empty until the run has one).
std::string last_run_dir();

// `rnnsweep run` / `rnnsweep lyapunov` (and `run --resume DIR`). Returns the exit code.
int run_sweep(const SweepArgs& args, const std::string& command_line);

// `rnnsweep merge SHARD_DIR... --out DIR`.
int merge_runs(const std::vector<std::string>& shard_dirs, const std::string& out, bool force,
               const std::string& command_line);

// `rnnsweep tables DIR [--out DIR2]`: the tables of the networks of an unfinished (running,
// interrupted or failed) run that have finished so far, into DIR/partial (or DIR2), a results
// folder of its own whose manifest says status "partial". Safe beside the running run.
int write_tables_so_far(const std::string& dir, const std::string& out);

// A results folder, as the commands that read one see it. Each problem is a UsageError naming
// `flag` (the command or option that named the folder) and the folder.
nlohmann::json read_manifest(const std::string& dir, const std::string& flag);
// The config a manifest was run with: every key set back from its resolved value (the config
// file itself may have changed since).
Config config_from_manifest(const nlohmann::json& manifest, const std::string& dir);
// A run's networks: its shard of its config's grid.
std::vector<NetworkSpec> networks_of_manifest(const nlohmann::json& manifest, const std::string& dir);
// Refuses a snapshot folder (status "partial") given where a run's own folder belongs.
void refuse_snapshot(const nlohmann::json& manifest, const std::string& dir, const std::string& what);

// `rnnsweep plan CONFIG`: grid size, memory, chunking and a time estimate from a short
// calibration run, printed on stdout.
int plan_sweep(const SweepArgs& args);

}  // namespace rnnsweep
