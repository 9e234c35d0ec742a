// The `init` axis: W_h of every initial connectivity (include/rnnsweep/init.h). Host only; the
// CUDA backend initialises on the host too, with this same function.
#include "rnnsweep/init.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "rnnsweep/rng.h"

namespace rnnsweep {

namespace {
const char* const kInitNames[] = {"gaussian", "orthogonal", "lowrank", "sparse", "dale"};
}

InitKind parse_init(const std::string& name) {
  for (int k = 0; k < 5; ++k)
    if (name == kInitNames[k]) return InitKind(k);
  throw std::invalid_argument("unknown init '" + name + "'");
}

const char* init_name(InitKind k) { return kInitNames[int(k)]; }

int dale_excitatory_units(int H, double excitatory) {
  return std::clamp(int(std::lround(excitatory * H)), 1, std::max(1, H - 1));
}

void init_network(const Shape& s, InitKind kind, const InitOptions& o, double gain, std::uint32_t seed,
                  float* params) {
  init_params(s, gain, seed, params);  // W_x, w, biases; W_h = g Z, which the structured inits replace
  if (kind == InitKind::gaussian) return;
  const int H = s.H;
  const ParamLayout L(s);
  // Z: the standard normal draw of init_params (entry (r, c) = element r H + c of init_W_h)
  const Philox z(Purpose::init_W_h, seed);
  Eigen::MatrixXd Z(H, H);
  for (int r = 0; r < H; ++r)
    for (int c = 0; c < H; ++c) Z(r, c) = normal_at(z, std::uint32_t(r * H + c));
  const double scale = gain / std::sqrt(double(H));
  Eigen::MatrixXd W(H, H);
  switch (kind) {
    case InitKind::orthogonal: {
      // Haar measure: Q of Z = QR with R's diagonal made positive (Mezzadri 2007)
      const Eigen::HouseholderQR<Eigen::MatrixXd> qr(Z);
      Eigen::MatrixXd Q = qr.householderQ() * Eigen::MatrixXd::Identity(H, H);
      const Eigen::MatrixXd R = qr.matrixQR().triangularView<Eigen::Upper>();
      for (int c = 0; c < H; ++c)
        if (R(c, c) < 0) Q.col(c) = -Q.col(c);
      W = gain * Q;
      break;
    }
    case InitKind::lowrank: {
      const Philox pm(Purpose::init_lowrank_m, seed), pn(Purpose::init_lowrank_n, seed);
      const int rank = o.lowrank_rank;
      Eigen::MatrixXd m(H, rank), n(H, rank);
      for (int r = 0; r < H; ++r)
        for (int j = 0; j < rank; ++j) {
          m(r, j) = normal_at(pm, std::uint32_t(r * rank + j));
          n(r, j) = normal_at(pn, std::uint32_t(r * rank + j));
        }
      W = scale * Z + (o.lowrank_strength / H) * (m * n.transpose());
      break;
    }
    case InitKind::sparse: {
      const Philox pmask(Purpose::init_sparse_mask, seed);
      for (int r = 0; r < H; ++r)
        for (int c = 0; c < H; ++c) {
          const bool kept = uniform_at(pmask, std::uint32_t(r * H + c), 0.0, 1.0) < o.sparse_density;
          W(r, c) = kept ? scale * Z(r, c) / std::sqrt(o.sparse_density) : 0.0;
        }
      break;
    }
    case InitKind::dale: {
      const int n_e = dale_excitatory_units(H, o.dale_excitatory), n_i = H - n_e;
      const double c_e = std::sqrt(double(n_i) / n_e), c_i = -std::sqrt(double(n_e) / n_i);
      for (int r = 0; r < H; ++r)
        for (int c = 0; c < H; ++c) W(r, c) = scale * std::abs(Z(r, c)) * (c < n_e ? c_e : c_i);
      break;
    }
    case InitKind::gaussian:
      break;
  }
  for (int r = 0; r < H; ++r)
    for (int c = 0; c < H; ++c) params[L.W_h + c * H + r] = static_cast<float>(W(r, c));
}

}  // namespace rnnsweep
