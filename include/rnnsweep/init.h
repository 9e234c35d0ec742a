// The initial connectivity of a network: the `init` grid axis (docs/model.md, section 1). Every
// init is scaled by the gain so that the gain keeps its meaning (W_h ~ g / sqrt(H) per entry),
// and all gains of a seed scale the same random draw. Both backends initialise on the host with
// this one function, so their networks start bit for bit the same.
#pragma once

#include <cstdint>
#include <string>

#include "rnnsweep/model.h"

namespace rnnsweep {

enum class InitKind {
  gaussian,    // W_h = g Z, Z_rc ~ N(0, 1/H): the study's
  orthogonal,  // W_h = g Q, Q the Haar-random orthogonal factor of Z: every singular value g
  lowrank,     // W_h = g Z + strength m n^T / H, m and n H x rank with N(0, 1) entries
  sparse,      // W_h = g Z mask / sqrt(density), mask_rc ~ Bernoulli(density): the row variance kept
  dale,        // W_h_rc = g |Z_rc| c_col: the first round(excitatory H) columns (units) excitatory
               // with c = sqrt(n_I / n_E), the others inhibitory with c = -sqrt(n_E / n_I), so the
               // expected input to a unit is zero and the entries' second moment stays g^2 / H
};

InitKind parse_init(const std::string& name);  // gaussian | orthogonal | lowrank | sparse | dale
const char* init_name(InitKind k);

// The parameters of the structured inits (config keys lowrank.rank, lowrank.strength,
// sparse.density, dale.excitatory).
struct InitOptions {
  int lowrank_rank = 1;
  double lowrank_strength = 1.0;
  double sparse_density = 0.1;
  double dale_excitatory = 0.8;
};

// The initial parameters of a network (layout of include/rnnsweep/model.h): W_x, w and the
// biases as `init_params`, W_h by `kind`. `gaussian` is exactly `init_params`.
void init_network(const Shape& s, InitKind kind, const InitOptions& options, double gain, std::uint32_t seed,
                  float* params);

// The number of excitatory units of a Dale start: round(excitatory H), at least 1 and at most H - 1.
int dale_excitatory_units(int H, double excitatory);

}  // namespace rnnsweep
