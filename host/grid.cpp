// Grid expansion: the Cartesian product in a fixed order, ids by position.
#include "rnnsweep/grid.h"

#include <algorithm>
#include <numeric>

namespace rnnsweep {

std::vector<NetworkSpec> expand_grid(const Config& c) {
  std::vector<NetworkSpec> out;
  long id = 0;
  // `init`, `hidden` and `batch` right after the task: with one value each, ids are those of
  // before these axes existed
  for (const auto& task : c.tasks)
    for (const auto& init : c.inits)
      for (int hidden : c.hiddens())
        for (int batch : c.batches())
          for (const auto& rule : c.rules)
            for (double gain : c.gains)
              for (double lr : c.lrs)
                for (long seed : c.seeds)
                  for (bool floss : c.floss) {
                    const auto s = static_cast<std::uint32_t>(seed);
                    const auto data = c.data_seed < 0 ? s : static_cast<std::uint32_t>(c.data_seed);
                    // file:NAME is files[f] (validate puts them in the order of `tasks`)
                    int file = -1;
                    for (size_t f = 0; f < c.files.size(); ++f)
                      if (c.files[f].label() == task) file = int(f);
                    out.push_back({id++, file >= 0 ? TaskKind::file : parse_task(task), parse_rule(rule), gain, lr,
                                   s, data, floss, parse_init(init), hidden, batch, file,
                                   file >= 0 ? c.files[size_t(file)].name : std::string()});
                  }
  return out;
}

double network_cost(const Config& grid, const NetworkSpec& n) {
  const Config c = config_of(grid, n);
  const TaskParams& task = task_of(c, n);
  // A BPTT iteration is about three forward passes, an e-prop or RFLO one about two (the
  // matrix products per step); a QR step of k columns about k / 8 forward steps at H = 64; a
  // step costs H^2 (relative to H = 64).
  const double h2 = double(c.hidden) * c.hidden / (64.0 * 64.0);
  const double per_iteration = h2 * double(task.T()) * c.batch * (n.rule == Rule::bptt ? 3 : 2);
  const double spectrum = h2 * double(c.le_batch) * (c.le_warmup + c.le_steps) * (1 + c.spectrum_k() / 8.0);
  const double floss =
      n.floss ? h2 * double(c.flossing_iterations()) * (c.floss_warmup + c.floss_steps) * (1 + c.floss_k / 4.0) : 0.0;
  return double(c.iters) * per_iteration + (n.floss ? 3 : 2) * spectrum + floss;
}

std::vector<NetworkSpec> shard_of(const Config& c, const std::vector<NetworkSpec>& networks, int index,
                                  int count) {
  std::vector<size_t> order(networks.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::vector<double> cost(networks.size());
  for (size_t i = 0; i < networks.size(); ++i) cost[i] = network_cost(c, networks[i]);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return cost[a] != cost[b] ? cost[a] > cost[b] : networks[a].id < networks[b].id;
  });
  std::vector<double> load(count, 0.0);
  std::vector<NetworkSpec> mine;
  for (size_t i : order) {
    const int lightest = int(std::min_element(load.begin(), load.end()) - load.begin());
    load[lightest] += cost[i];
    if (lightest == index) mine.push_back(networks[i]);
  }
  std::sort(mine.begin(), mine.end(), [](const NetworkSpec& a, const NetworkSpec& b) { return a.id < b.id; });
  return mine;
}

}  // namespace rnnsweep
