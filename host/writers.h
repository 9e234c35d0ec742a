// The outputs of a sweep (docs/model.md, sections 5 and 6): tidy CSV tables, .npy weights and the manifest.
// Column names are a contract documented in the README; change them only with it.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rnnsweep/backend.h"

namespace rnnsweep {

// One row per (task, init, rule, gain, floss): the lr with the lowest mean tail loss across seeds.
struct SummaryRow {
  std::string task, init;
  int hidden, batch;
  std::string rule;
  double gain;
  bool floss;
  double best_lr;
  int n_seeds, n_diverged;
  double tail_loss_mean, tail_loss_std, tail_accuracy_mean, tail_accuracy_std;
};
std::vector<SummaryRow> summarize(const std::vector<NetworkResult>& results);

// Shortest text that reads back as the same double ("nan", "inf" for non-finite).
std::string format_number(double v);

void write_networks_csv(const std::string& path, const std::vector<NetworkResult>& results);
void write_curves_csv(const std::string& path, const std::vector<NetworkResult>& results);
void write_floss_curves_csv(const std::string& path, const std::vector<NetworkResult>& results);
// lyapunov_curves.csv: network, iteration, index, exponent, finite (le_every > 0)
void write_lyapunov_curves_csv(const std::string& path, const std::vector<NetworkResult>& results);
void write_lyapunov_csv(const std::string& path, const std::vector<NetworkResult>& results);
void write_summary_csv(const std::string& path, const std::vector<SummaryRow>& rows);
void write_timings_csv(const std::string& path, const std::vector<NetworkResult>& results);

// Each network's initial and final W_h, W_x, w as float32 .npy (C order, shape rows x cols)
// in `dir`, named net<id>_<init|final>_<W_h|W_x|w>.npy.
void write_weights(const std::string& dir, const Config& config, const std::vector<NetworkResult>& results);

// A float32 matrix stored column-major, written as a C-order .npy array of shape rows x cols.
void write_npy(const std::string& path, const float* column_major, int rows, int cols);

void write_json(const std::string& path, const nlohmann::json& j);

}  // namespace rnnsweep
