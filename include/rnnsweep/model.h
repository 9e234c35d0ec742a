// Shapes and parameter layout of one network (docs/model.md, section 1), shared by both backends.
//
// A network's parameters are one contiguous block [W_h | W_x | w | b | b_out], each matrix
// column-major (the Eigen and cuBLAS default), networks back to back; Adam is then one flat
// loop over everything and a checkpoint one write. The initial values are a function of
// (gain, seed, entry) only -- see `init_params` -- so gains with the same seed are paired.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "rnnsweep/rng.h"

namespace rnnsweep {

enum class Rule { bptt, eprop, rflo };

struct Shape {
  int H = 64, I = 1, O = 2;
  bool bias = false;
};

struct ParamLayout {
  int W_h, W_x, w, b, b_out, size;  // offsets into the block, and its length

  explicit RNNSWEEP_HD ParamLayout(const Shape& s)
      : W_h(0),
        W_x(s.H * s.H),
        w(W_x + s.H * s.I),
        b(w + s.O * s.H),
        b_out(b + (s.bias ? s.H : 0)),
        size(b_out + (s.bias ? s.O : 0)) {}
};

// Initial parameters of the network with this gain and seed, into `params` (layout above).
// Entry (r, c) of each matrix takes element r * cols + c of its own Philox stream, so the
// numbers do not depend on storage order, and W_h = gain * Z with Z the same at every gain.
inline void init_params(const Shape& s, double gain, std::uint32_t seed, float* params) {
  const ParamLayout L(s);
  const Philox z(Purpose::init_W_h, seed), wx(Purpose::init_W_x, seed), wo(Purpose::init_w, seed),
      bh(Purpose::init_b, seed), bo(Purpose::init_b_out, seed);
  const double z_std = 1.0 / std::sqrt(double(s.H));
  const double x_bound = 1.0 / std::sqrt(double(s.I)), h_bound = 1.0 / std::sqrt(double(s.H));
  for (int r = 0; r < s.H; ++r)
    for (int c = 0; c < s.H; ++c)
      params[L.W_h + c * s.H + r] = static_cast<float>(gain * z_std * normal_at(z, r * s.H + c));
  for (int r = 0; r < s.H; ++r)
    for (int c = 0; c < s.I; ++c)
      params[L.W_x + c * s.H + r] = static_cast<float>(uniform_at(wx, r * s.I + c, -x_bound, x_bound));
  for (int r = 0; r < s.O; ++r)
    for (int c = 0; c < s.H; ++c)
      params[L.w + c * s.O + r] = static_cast<float>(uniform_at(wo, r * s.H + c, -h_bound, h_bound));
  if (s.bias) {
    // fan_in of the recurrent bias is H (the W_h input); of the readout bias, H.
    for (int r = 0; r < s.H; ++r) params[L.b + r] = static_cast<float>(uniform_at(bh, r, -h_bound, h_bound));
    for (int r = 0; r < s.O; ++r)
      params[L.b_out + r] = static_cast<float>(uniform_at(bo, r, -h_bound, h_bound));
  }
}

// RFLO's fixed random feedback B ~ N(0, 1/O), H x O column-major (Murray 2019).
inline std::vector<float> rflo_feedback(const Shape& s, std::uint32_t seed) {
  std::vector<float> B(size_t(s.H) * s.O);
  const Philox rng(Purpose::rflo_B, seed);
  for (int r = 0; r < s.H; ++r)
    for (int c = 0; c < s.O; ++c)
      B[c * s.H + r] = static_cast<float>(normal_at(rng, r * s.O + c) / std::sqrt(double(s.O)));
  return B;
}

}  // namespace rnnsweep
