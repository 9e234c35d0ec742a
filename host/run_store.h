// A run's folder as the durable record of a sweep while it runs, so that a killed, preempted or
// requeued run loses at most the work in flight:
//   manifest.json   status (running / interrupted / complete) with counts
//   results.jsonl   one line per finished network, appended and fsync'ed as each finishes
//   checkpoints/    net<id>.ckpt: the training state of a network in flight (atomic, checksummed)
//   weights/        .npy files (--save-weights), written as each network finishes
//   *.csv           the tables, assembled from results.jsonl once every network is done
// Every file but results.jsonl is written to a temporary name, fsync'ed and renamed into place;
// results.jsonl only grows by whole lines, and a line torn by a crash is cut off on resume.
#pragma once

#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "rnnsweep/backend.h"
#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"

namespace rnnsweep {

// Writes `bytes` to `path` through a temporary file that is fsync'ed and renamed, then fsyncs
// the folder: after it returns the file is complete on disk, and if it throws (full disk,
// unwritable folder) the previous file at `path`, if any, is untouched. The message names the
// path and the system's reason.
void write_file_durably(const std::string& path, const std::string& bytes);

// A network's result as one JSON object and back, exactly: every double is stored as the
// shortest text that reads back to the same value ("nan", "inf" included). The weights are not
// part of it (they go to weights/).
nlohmann::json result_to_json(const NetworkResult& r);
NetworkResult result_from_json(const nlohmann::json& j, const NetworkSpec& spec);

// The checkpoint file format: a magic word, the fields, and an FNV-1a checksum of everything
// before it. Decoding throws std::runtime_error saying what is wrong with a damaged file.
std::string encode_checkpoint(const NetworkCheckpoint& c);
NetworkCheckpoint decode_checkpoint(const std::string& bytes, const std::string& name);

class RunStore {
 public:
  // `write`: the run that owns the folder; cuts off a torn last line of results.jsonl left by
  // a crash. `read`: a reader beside a run that may still be appending (`rnnsweep tables`):
  // changes nothing, and an unfinished last line is not read. The folder must exist.
  enum class Access { write, read };
  explicit RunStore(std::string dir, Access access = Access::write);

  const std::string& dir() const { return dir_; }

  // Appends a finished network durably (thread-safe) and removes its checkpoint.
  void append_result(const NetworkResult& r);
  // The ids recorded in results.jsonl.
  std::set<long> finished_ids() const;
  // The recorded results of `networks`, in their order; throws if one is missing.
  std::vector<NetworkResult> results_of(const std::vector<NetworkSpec>& networks) const;
  // The recorded results of those of `networks` that have finished so far, in their order.
  std::vector<NetworkResult> finished_results_of(const std::vector<NetworkSpec>& networks) const;

  void save_checkpoint(const NetworkCheckpoint& c) const;
  // The checkpoint of network `id`, if there is one; throws if it is damaged.
  std::optional<NetworkCheckpoint> load_checkpoint(long id) const;

 private:
  std::string checkpoint_path(long id) const;
  std::vector<nlohmann::json> read_journal() const;
  std::vector<NetworkResult> recorded(const std::vector<NetworkSpec>& networks, bool all_required) const;

  std::string dir_;
  mutable std::mutex mutex_;
};

// Writes the tables of a finished run (networks, curves, floss_curves, lyapunov, summary,
// timings; `trained` false for `rnnsweep lyapunov`: networks, lyapunov, timings) from results
// in id order, and returns their file names.
std::vector<std::string> write_tables(const std::string& dir, const std::vector<NetworkResult>& results,
                                      bool trained);

}  // namespace rnnsweep
