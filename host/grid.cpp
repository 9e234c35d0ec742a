// Grid expansion: the Cartesian product in a fixed order, ids by position.
#include "rnnsweep/grid.h"

namespace rnnsweep {

std::vector<NetworkSpec> expand_grid(const Config& c) {
  std::vector<NetworkSpec> out;
  long id = 0;
  for (const auto& task : c.tasks)
    for (const auto& rule : c.rules)
      for (double gain : c.gains)
        for (double lr : c.lrs)
          for (long seed : c.seeds)
            for (bool floss : c.floss) {
              const auto s = static_cast<std::uint32_t>(seed);
              const auto data = c.data_seed < 0 ? s : static_cast<std::uint32_t>(c.data_seed);
              out.push_back({id++, parse_task(task), parse_rule(rule), gain, lr, s, data, floss});
            }
  return out;
}

}  // namespace rnnsweep
