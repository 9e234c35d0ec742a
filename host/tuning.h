// The tuning table: which kernel instance ran fastest for each GPU and shape, as measured by
// `rnnsweep tune` (kernels/tuning.cu) on that GPU. The CUDA backend asks it for every launch
// plan it makes; without an entry for the GPU and shape at hand a heuristic picks (the
// kernels' plan_* functions), and the choice says which of the two decided and why, so that
// `rnnsweep plan` can print it. No CPU twin: only the CUDA backend has instances to choose.
//
// The table committed in bench/tuning.json is compiled into the binary; RNNSWEEP_TUNING=FILE
// replaces it (scripts/device-check.sh measures a fresh one and runs with it).
//
// Format (JSON): {"format": "rnnsweep tuning table 1", "gpus": {GPU name: {"measured": time,
// "rnnsweep": version, "entries": [{"kernel", "shape", "instance", "heuristic",
// "timings_ms": {instance: milliseconds per launch}}]}}}. Keys of a shape are the kernel's own
// (e.g. "H=64 Bt=32 I=3 O=2 bias=0" for train_step): what decides which instances exist.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace rnnsweep {

struct TuningEntry {
  std::string kernel;     // "train_step", "spectrum", "floss"
  std::string shape;      // the kernel's shape key
  std::string instance;   // the fastest instance that passed validation
  std::string heuristic;  // what the heuristic would have chosen
  std::map<std::string, double> timings_ms;  // every instance timed, per launch
};

struct GpuTuning {
  std::string measured;  // UTC time of the measurement
  std::string version;   // rnnsweep version that measured it
  std::vector<TuningEntry> entries;
};

class TuningTable {
 public:
  std::string origin;                    // where it came from, for messages
  std::map<std::string, GpuTuning> gpus;  // by the device name CUDA reports

  // Throws std::runtime_error naming `origin` and the problem.
  static TuningTable parse(const std::string& json_text, const std::string& origin);
  static TuningTable load(const std::string& path);
  // bench/tuning.json as it was when this binary was built.
  static TuningTable builtin();
  // RNNSWEEP_TUNING's file when set, else builtin(); read once.
  static const TuningTable& active();

  const TuningEntry* find(const std::string& gpu, const std::string& kernel, const std::string& shape) const;
  // Adds `entries` to the GPU's, replacing any of the same kernel and shape.
  void merge(const std::string& gpu, const GpuTuning& measured);
  std::string dump() const;  // JSON, keys sorted, entries by kernel and shape
};

// The instance to launch, and why: the table's winner for (gpu, kernel, shape) when it is one
// of `available`, else `heuristic`.
struct TuningChoice {
  std::string instance;
  std::string why;  // e.g. "tuning table (built in): 1.31x faster than the heuristic on NVIDIA H200"
  bool from_table = false;
};
TuningChoice choose_instance(const TuningTable& table, const std::string& gpu, const std::string& kernel,
                             const std::string& shape, const std::vector<std::string>& available,
                             const std::string& heuristic);

}  // namespace rnnsweep
