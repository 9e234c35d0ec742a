// `rnnsweep evaluate DIR`: the trained networks of a results folder (the weights/ that
// `run --save-weights` wrote) run on fresh trials, written as files, so that analyses of trained
// networks (PCA of the hidden states, fixed points, psychometric curves) start from the
// network's own numbers instead of a re-implemented forward pass (docs/model.md, section 6).
//
// The forward pass is the CPU reference's (host/cpu/model.cpp), the one the CPU backend trains
// with and the CUDA backend is tested against. A forward pass of a few hundred trials costs a
// few milliseconds per network, far less than writing its hidden states, so evaluate has no
// CUDA twin.
#pragma once

#include <string>

namespace rnnsweep {

struct EvaluateArgs {
  std::string dir, out;  // out: default DIR/evaluate
  std::string networks;  // "" (every network with saved weights) or a list: 0,3,10-19
  std::string stage = "final";  // final | init | both
  long trials = 256, data_seed = 0;
  int threads = 0;
  bool states = true, force = false;
};

// Returns the exit code; bad input throws UsageError before anything is written.
int evaluate_networks(const EvaluateArgs& args, const std::string& command_line);

}  // namespace rnnsweep
