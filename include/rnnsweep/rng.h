// Counter-based random numbers shared by the CPU and CUDA backends.
//
// Every random number of a sweep is Philox4x32-10 (Random123) of a counter under a key
// (purpose, seed). Nothing is sequential state, so a number is a pure function of where it is
// used: the trials a network sees at iteration i, or entry (r, c) of its initial W_h, are the
// same whichever backend, thread or batch order computes them. That is what lets the CUDA
// backend be tested against the CPU one value by value instead of statistically.
//
// The conversions to [0,1) and to normals are done in double so that host and device agree
// to the last bit of the float they return (both round a correctly-rounded-ish double).
#pragma once

#include <Random123/philox.h>

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define RNNSWEEP_HD __host__ __device__
#else
#define RNNSWEEP_HD
#endif

namespace rnnsweep {

// One purpose per independent use of randomness; the value is the first key word.
// Never renumber: results of past sweeps depend on these values.
enum class Purpose : std::uint32_t {
  init_W_h = 1,
  init_W_x = 2,
  init_w = 3,
  init_b = 4,
  init_b_out = 5,
  rflo_B = 6,
  trials = 7,           // task trials used for training, keyed by data_seed
  lyapunov_trials = 8,  // task inputs that drive the Lyapunov trajectories, keyed by seed
  floss_trials = 9,     // task inputs for flossing iterations, keyed by seed
  lyapunov_frame = 10,  // random orthonormal starting frame of the QR method, keyed by seed
  init_lowrank_m = 11,  // the low-rank part's left vectors (init = "lowrank"), keyed by seed
  init_lowrank_n = 12,  // ... and its right vectors
  init_sparse_mask = 13,  // which entries of W_h a sparse start keeps (init = "sparse")
  eval_trials = 14,       // the held-out trials of eval_every, keyed by data_seed (batches 0, 1, ...)
  evaluate_trials = 15,   // the fresh trials of `rnnsweep evaluate`, keyed by its --data-seed (batch 0)
};

struct Philox {
  std::uint32_t purpose;
  std::uint32_t seed;

  RNNSWEEP_HD Philox(Purpose p, std::uint32_t s) : purpose(static_cast<std::uint32_t>(p)), seed(s) {}

  // Four 32-bit words for counter (c0, c1, c2, c3).
  RNNSWEEP_HD r123::Philox4x32::ctr_type words(std::uint32_t c0, std::uint32_t c1 = 0, std::uint32_t c2 = 0,
                                               std::uint32_t c3 = 0) const {
    r123::Philox4x32 gen;
    r123::Philox4x32::ctr_type ctr = {{c0, c1, c2, c3}};
    r123::Philox4x32::key_type key = {{purpose, seed}};
    return gen(ctr, key);
  }
};

// [0, 1) with 32 random bits.
RNNSWEEP_HD inline double to_unit(std::uint32_t x) { return x * (1.0 / 4294967296.0); }

// (0, 1]: safe for log().
RNNSWEEP_HD inline double to_unit_open0(std::uint32_t x) { return (x + 1.0) * (1.0 / 4294967296.0); }

// Uniform integer in {0, .., n-1}.
RNNSWEEP_HD inline int to_index(std::uint32_t x, int n) {
  int i = static_cast<int>(to_unit(x) * n);
  return i < n ? i : n - 1;
}

// Two independent standard normals from two words (Box-Muller).
struct NormalPair {
  double first, second;
};
RNNSWEEP_HD inline NormalPair to_normals(std::uint32_t u, std::uint32_t v) {
  const double radius = sqrt(-2.0 * log(to_unit_open0(u)));
  const double angle = 6.283185307179586 * to_unit(v);
  return {radius * cos(angle), radius * sin(angle)};
}

// Element `index` of a stream of standard normals (two per Philox call, counter index / 2).
RNNSWEEP_HD inline double normal_at(const Philox& rng, std::uint32_t index) {
  auto w = rng.words(index / 2);
  NormalPair n = to_normals(w[0], w[1]);
  return (index % 2 == 0) ? n.first : n.second;
}

// Element `index` of a stream of uniforms on [lo, hi).
RNNSWEEP_HD inline double uniform_at(const Philox& rng, std::uint32_t index, double lo, double hi) {
  auto w = rng.words(index / 4);
  return lo + (hi - lo) * to_unit(w[index % 4]);
}

}  // namespace rnnsweep
