// Lyapunov spectra and gradient flossing of one whole network (docs/lyapunov.md): the
// driven trajectories, the starting frame, the averaging over trajectories, and the flossing
// loop. The QR mathematics is in lyapunov.h and floss.h. CUDA twin: kernels/lyapunov.cu.
#pragma once

#include <cstdint>
#include <vector>

#include "host/cpu/lyapunov.h"
#include "rnnsweep/backend.h"
#include "rnnsweep/config.h"
#include "rnnsweep/model.h"

namespace rnnsweep::cpu {

// Hidden states h_t for t = warmup .. warmup + steps - 1 (H x steps, double) of the network
// driven from h_0 = 0 by task trials laid back to back, never reset: trials 0, 1, 2, ... of the
// batch `iteration` of the stream (purpose, seed). Column j is the state at which J_t is taken,
// up to a positive factor per column: where the state would leave the double range (a positive
// max LE makes |h_t| grow like e^(lambda1 t)) it is carried rescaled, which keeps each column's
// sign pattern, and relu'(h_t) = [h_t > 0] is all the Jacobian uses. Where |h_t| stays below
// 1e100 no rescaling happens and the columns are the states themselves.
Mat<double> driven_states(const Shape& s, double a, const float* params, const TaskParams& task,
                          Purpose purpose, std::uint32_t seed, std::uint32_t iteration, long warmup,
                          long steps);

// A random H x k orthonormal frame (QR of a Gaussian matrix from the stream
// (lyapunov_frame, seed)). Starting the QR method from it instead of the identity columns
// keeps a silent ReLU unit's invariant direction e_j from occupying a leading slot (see
// lyapunov.h); it is the same frame on every backend.
Mat<double> random_frame(int H, int k, std::uint32_t seed);

// The first k exponents (k = 0: config.spectrum_k(); le_track_k for the tracked spectra during
// training), averaged over config.le_batch trajectories and sorted in decreasing order (index 1
// is the max LE). The trajectories and the frame depend on the seed alone, so the spectra of one
// network at different times of training are taken on the same inputs.
std::vector<double> network_spectrum(const Config& config, const TaskParams& task, const Shape& s,
                                     const float* params, std::uint32_t seed, int k = 0);

// Flossing: Adam steps on W_h (in place in `params`) of sum_{i <= floss_k} lambda_i^2, h_t held
// constant -- config.floss_iters of them before training (training_iteration 0, the
// pretraining), or config.floss_iters_each just before training iteration training_iteration
// (floss_every > 0). Each episode starts its own Adam state and draws its own batches of the
// flossing stream (floss_first_batch). Returns the loss of every iteration (before its update)
// and how many exponents it covered (see floss.h: fewer than floss_k when a step annihilates a
// direction; an iteration that covers none makes no update).
std::vector<FlossPoint> floss_network(const Config& config, const TaskParams& task, const Shape& s,
                                      float* params, std::uint32_t seed, long training_iteration = 0);

}  // namespace rnnsweep::cpu
