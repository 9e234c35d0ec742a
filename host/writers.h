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

// Each network's initial and final W_h, W_x, w (and with bias = true b and b_out, H x 1 and
// O x 1) as float32 .npy (C order, shape rows x cols) in `dir`, named
// net<id>_<init|final>_<W_h|W_x|w|b|b_out>.npy; RFLO networks also net<id>_B.npy.
void write_weights(const std::string& dir, const Config& config, const std::vector<NetworkResult>& results);

// A float32 matrix stored column-major, written as a C-order .npy array of shape rows x cols.
void write_npy(const std::string& path, const float* column_major, int rows, int cols);
// Any C-order .npy array: `descr` is numpy's type code ("<f4", "<i4"), `data` holds `bytes`.
void write_npy_array(const std::string& path, const char* descr, const std::vector<long>& shape, const void* data,
                     size_t bytes);
// A float32 matrix that write_npy wrote, back in column-major order; a file that is not one, or
// not of shape rows x cols, is a UsageError naming it.
std::vector<float> read_npy_matrix(const std::string& path, int rows, int cols);

void write_json(const std::string& path, const nlohmann::json& j);

}  // namespace rnnsweep
