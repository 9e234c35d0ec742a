// A sweep's configuration: the grid axes, training, Lyapunov and flossing settings, and the
// task parameters. Read from a TOML file in configs/, overridden by `--set key=value`,
// validated before any work starts; every key, its default and its allowed values are in
// one table (host/config.cpp) that also produces the resolved config for the manifest.
#pragma once

#include <nlohmann/json.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "rnnsweep/init.h"
#include "rnnsweep/model.h"
#include "rnnsweep/task.h"

namespace rnnsweep {

// Bad input from the user (config, flag, output folder): main prints it and exits with 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TaskData;  // host/task_file.h

// A task read from a file: an entry "file:NAME" in `tasks` with a table [file.NAME]
// (host/task_file.h, docs/model.md section 3.4). Loaded and validated with the config.
struct FileTask {
  std::string name;               // NAME: letters, digits, _ and -
  std::string path;               // file.NAME.path, absolute once the config is loaded
  double dt_over_tau = 0;         // file.NAME.dt_over_tau (or dt and tau, or the file's); 0: unset
  double dt = 0, tau = 0;         // file.NAME.dt and .tau (ms); 0: unset
  std::string accuracy = "none";  // regression: "response" (romo's rule) or "none" (NaN)
  std::string hash;               // file.NAME.hash: the file's content hash (set: the file must have it)
  long size = -1;                 // file.NAME.size: its bytes (set: the file must have them)
  std::shared_ptr<const TaskData> data;
  TaskParams params;  // the generator's view of `data` (host pointers)
  std::string label() const { return "file:" + name; }
};

struct Config {
  // grid axes (docs/model.md, sections 5 and 6)
  std::vector<std::string> tasks = {"romo", "2af", "dms"};
  std::vector<std::string> inits = {"gaussian"};  // key `init`: the initial connectivity (rnnsweep/init.h)
  std::vector<std::string> rules = {"bptt", "eprop", "rflo"};
  std::vector<double> gains = {0.2, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0};
  std::vector<double> lrs = {1e-4, 3e-4, 1e-3, 3e-3};
  std::vector<long> seeds = {0, 1, 2, 3, 4};
  std::vector<bool> floss = {false};

  InitOptions init_options;  // lowrank.rank, lowrank.strength, sparse.density, dale.excitatory

  // training. `hidden` and `batch` are the shape of the networks at hand: the config's first
  // values, or (Config::for_shape) one shape of a grid whose keys list several, which are then
  // grid axes too (hidden_list, batch_list; empty for a single value).
  int hidden = 64;
  int batch = 32;
  std::vector<int> hidden_list, batch_list;
  long iters = 5000;
  long log_every = 10;
  // Training iterations between checkpoints of the networks in flight (also written on SIGTERM,
  // SIGINT and SIGUSR1); 0 writes them only on those signals.
  long checkpoint_every = 1000;
  // Held-out evaluation (0: off): every eval_every iterations (a multiple of log_every) and at
  // the last, loss and accuracy of the network on eval_trials fixed trials (a multiple of
  // batch) of its data seed's eval stream, as batches of `batch` trials.
  long eval_every = 0;
  long eval_trials = 256;
  // e-prop and RFLO networks: the cosine between the rule's W_h gradient and BPTT's on the same
  // batch, at every logged iteration.
  bool alignment = false;
  std::string optimizer = "adam";
  // The CUDA backend's step products: "fp32" (FMA pipes) or "tf32x3" (tensor cores, TF32 with the
  // 3xTF32 split: FP32's accuracy, docs/precision.md). The CPU backend computes in FP32 for both.
  std::string precision = "fp32";
  bool bias = false;
  long data_seed = -1;  // -1: each network trains on the trials of its own seed
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_eps = 1e-8;

  // Lyapunov spectra (docs/lyapunov.md, section 1); le_k = 0 is "not set": the full spectrum, k = hidden
  int le_k = 0;
  long le_steps = 1000, le_warmup = 100;
  int le_batch = 8;
  // the top le_track_k exponents every le_every training iterations (0: off), with le_steps,
  // le_warmup and le_batch as above: lyapunov_curves.csv (docs/lyapunov.md, section 1)
  long le_every = 0;
  int le_track_k = 1;

  // gradient flossing (docs/lyapunov.md, section 2)
  long floss_iters = 100;
  double floss_lr = 1e-3;
  int floss_k = 32;
  long floss_steps = 100, floss_warmup = 20;
  // flossing during training (floss = true networks): floss_iters_each flossing iterations
  // before every floss_every-th training iteration (0: pretraining only)
  long floss_every = 0;
  long floss_iters_each = 10;

  TaskParams romo = make_task(TaskKind::romo);
  TaskParams two_af = make_task(TaskKind::two_af);
  TaskParams dms = make_task(TaskKind::dms);
  // the [file.NAME] tables; once loaded, those that `tasks` lists, in the order of `tasks`
  std::vector<FileTask> files;

  static TaskParams make_task(TaskKind k) {
    TaskParams p;
    p.kind = k;
    return p;
  }
  // The parameters of built-in task k, or (k = file) of files[file].
  const TaskParams& task(TaskKind k, int file = -1) const {
    if (k == TaskKind::file) return files.at(size_t(file)).params;
    return k == TaskKind::romo ? romo : k == TaskKind::two_af ? two_af : dms;
  }
  // "romo", "2af", "dms" or "file:NAME"
  std::string task_label(TaskKind k, int file = -1) const;
  // The task so named (a file task must be one `tasks` lists); throws UsageError.
  const TaskParams& task_named(const std::string& label) const;
  // file tasks: whether the task has an accuracy (classification, or regression with accuracy = "response")
  bool task_has_accuracy(TaskKind k, int file = -1) const {
    return k != TaskKind::file || files.at(size_t(file)).params.classification() ||
           files.at(size_t(file)).accuracy == "response";
  }
  int spectrum_k() const { return le_k > 0 ? le_k : hidden; }
  // the flossing iterations of one floss = true network: its pretraining and its episodes
  // during training (one before every floss_every-th iteration after the first)
  long flossing_iterations() const {
    return floss_iters + (floss_every > 0 ? (iters - 1) / floss_every : 0) * floss_iters_each;
  }
  // the grid axes `hidden` and `batch`: every value the config lists
  std::vector<int> hiddens() const { return hidden_list.empty() ? std::vector<int>{hidden} : hidden_list; }
  std::vector<int> batches() const { return batch_list.empty() ? std::vector<int>{batch} : batch_list; }
  // this config for networks of one shape (hidden H, batch Bt): what a backend trains them with
  Config for_shape(int H, int Bt) const {
    Config c = *this;
    c.hidden = H;
    c.batch = Bt;
    c.hidden_list.clear();
    c.batch_list.clear();
    return c;
  }
};

// Defaults, then the file, then the overrides (each "key=value", value in TOML syntax; a list
// may also be written a,b,c). Throws UsageError naming the key and its allowed values.
Config load_config(const std::string& path, const std::vector<std::string>& overrides);
// The same from the text of a config: `source_name` stands for the file in messages. Every
// rejection is a UsageError of one line (control characters in the input are escaped).
Config load_config_text(const std::string& text, const std::vector<std::string>& overrides,
                        const std::string& source_name);
Config default_config_with(const std::vector<std::string>& overrides);

// Every key with its resolved value.
nlohmann::json config_to_json(const Config& c);

// All config key names, for suggestions and documentation.
std::vector<std::string> config_key_names();

// The closest of `candidates` to `word` (edit distance), or "" if none is close.
std::string nearest(const std::string& word, const std::vector<std::string>& candidates);

TaskKind parse_task(const std::string& name);  // romo | 2af | dms (file tasks: Config::files)
const char* task_name(TaskKind k);
Rule parse_rule(const std::string& name);  // bptt | eprop | rflo
const char* rule_name(Rule r);

}  // namespace rnnsweep
