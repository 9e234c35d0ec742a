// The grid of a sweep: one network per point of
// tasks x inits x hidden x batch x rules x gains x lrs x seeds x floss.
#pragma once

#include <cstdint>
#include <vector>

#include "rnnsweep/config.h"

namespace rnnsweep {

struct NetworkSpec {
  long id;  // position in the grid's fixed order (tasks, inits, hidden, batch, rules, gains, lrs, seeds, floss)
  TaskKind task;
  Rule rule;
  double gain;
  double lr;
  std::uint32_t seed;       // initial weights (and RFLO's B)
  std::uint32_t data_seed;  // training trials
  bool floss;
  InitKind init = InitKind::gaussian;  // the initial connectivity (last: {id, task, ...} stays valid)
  int hidden = 0, batch = 0;           // the network's shape; 0: the config's hidden / batch
  int file = -1;                       // task file:NAME: its index in Config::files ...
  std::string file_name = "";          // ... and NAME
};

// The task of `n`: its parameters and its name in tables ("romo", "2af", "dms" or "file:NAME").
inline const TaskParams& task_of(const Config& c, const NetworkSpec& n) { return c.task(n.task, n.file); }
inline std::string task_label(const NetworkSpec& n) { return n.file >= 0 ? "file:" + n.file_name : task_name(n.task); }

// The config that trains `n`: `c` for n's shape (Config::for_shape).
inline Config config_of(const Config& c, const NetworkSpec& n) {
  return c.for_shape(n.hidden > 0 ? n.hidden : c.hidden, n.batch > 0 ? n.batch : c.batch);
}

// Every network of the grid, in id order. The id of a grid point depends only on the axes,
// so ids are stable across runs, shards and backends.
std::vector<NetworkSpec> expand_grid(const Config& c);

// The estimated cost of a network, in time steps of one trial (training, flossing and spectra),
// used to balance shards; only ratios between networks of one grid matter.
double network_cost(const Config& c, const NetworkSpec& n);

// Shard `index` of `count` (0 <= index < count) of `networks`: a deterministic partition that
// balances the estimated cost (largest first, each to the lightest shard, ties by id and by
// shard index), returned in id order. The union of all shards is `networks`, each once.
std::vector<NetworkSpec> shard_of(const Config& c, const std::vector<NetworkSpec>& networks, int index,
                                  int count);

}  // namespace rnnsweep
