// The interface both backends implement: train a list of networks, return their results.
// The CPU backend (host/cpu/cpu_backend.cpp) is the reference; the CUDA backend
// (kernels/cuda_backend.cu) must return the same numbers within stated tolerances.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rnnsweep/config.h"
#include "rnnsweep/grid.h"

namespace rnnsweep {

struct CurvePoint {
  long iteration;
  double loss;
  double accuracy;
};

struct FlossPoint {
  long iteration;  // within its episode: 0 .. floss_iters - 1 (pretraining) or floss_iters_each - 1
  double loss;     // sum of the squared leading exponents, before this iteration's update
  int k_used;      // exponents in the loss: floss_k, or fewer when a step annihilated a direction
  long training_iteration = 0;  // the training iteration it preceded: 0 pretraining, else a multiple of floss_every
};

// What a network measures besides its training loss at a logged iteration: the held-out loss
// and accuracy (eval_every) and the alignment of its rule's gradient with BPTT's (alignment);
// NaN where not measured there. Of the network before that iteration's update, as the curve.
struct ProbePoint {
  long iteration = 0;
  bool evaluated = false, aligned = false;  // which of the two were measured here
  double eval_loss = std::numeric_limits<double>::quiet_NaN();  // means over the eval batches
  double eval_accuracy = eval_loss;
  double alignment = eval_loss;  // cos(dW_h of the rule, dW_h of BPTT), same batch and weights
};
inline bool evaluates_at(const Config& c, long i) {
  return c.eval_every > 0 && (i % c.eval_every == 0 || i == c.iters - 1);
}
inline bool aligns_at(const Config& c, Rule rule, long i) {
  return c.alignment && rule != Rule::bptt && (i % c.log_every == 0 || i == c.iters - 1);
}

// Whether a floss = true network flosses (floss_iters_each iterations) just before training
// iteration i: every floss_every iterations after the first (iteration 0 has the pretraining).
inline bool flosses_at(const Config& c, long i) {
  return c.floss_every > 0 && i > 0 && i < c.iters && i % c.floss_every == 0;
}
// How many of those episodes fall at or after training iteration `first`.
inline long floss_episodes_from(const Config& c, long first) {
  if (c.floss_every <= 0 || first >= c.iters) return 0;
  return (c.iters - 1) / c.floss_every - (std::max(first, 1L) - 1) / c.floss_every;
}
// The first batch of the flossing stream that the episode before training iteration i draws
// (batch b of an episode is this plus b): after the pretraining's, every episode its own.
inline long floss_first_batch(const Config& c, long i) {
  return i == 0 ? 0 : c.floss_iters + (i / c.floss_every - 1) * c.floss_iters_each;
}

// The leading exponents of a network during training (le_every > 0): the network after
// `iteration` updates (0: the start of training, after flossing), le_track_k values, decreasing.
struct TrackedSpectrum {
  long iteration;
  std::vector<double> lambda;
};

// Whether training records a tracked spectrum of the network after `i` updates: every
// le_every iterations from 0, and at the end (i == iters), where the network has not diverged
// by then (its loss at i is finite; at i == iters, its weights are).
inline bool tracks_spectrum_at(const Config& c, long i) {
  return c.le_every > 0 && (i % c.le_every == 0 || i == c.iters);
}
// How many tracked spectra fall at or after iteration `first`: the progress units they add
// (le_batch trajectories each).
inline long tracked_spectra_from(const Config& c, long first) {
  if (c.le_every <= 0 || first > c.iters) return 0;
  const long multiples = (c.iters - 1) / c.le_every - (first > 0 ? (first - 1) / c.le_every : -1);
  return std::max(0L, multiples) + 1;  // and iters itself
}

struct NetworkResult {
  NetworkSpec spec;
  bool trained = false;  // false for `rnnsweep lyapunov`: no training statistics
  bool diverged = false;
  long diverged_at = -1;                      // first iteration whose loss was NaN or Inf
  long iterations = 0;                        // iterations trained (== iters unless diverged)
  double final_loss = 0, final_accuracy = 0;  // at the last trained iteration
  double tail_loss = 0, tail_accuracy = 0;    // means over the last 10% of the iterations
  double best_loss = 0;
  std::vector<CurvePoint> curve;  // every log_every iterations and the last one

  // Lyapunov spectra (empty when not computed) and the flossing loss curve
  std::vector<double> spectrum_init, spectrum_flossed, spectrum_trained;
  std::vector<FlossPoint> floss_curve;
  std::vector<TrackedSpectrum> tracked;  // le_every > 0: lyapunov_curves.csv
  std::vector<ProbePoint> probes;        // eval_every > 0 or alignment: curves.csv
  // held-out twins of final_* and tail_* (eval_every > 0, else NaN): at the last iteration, and
  // the mean over the eval points in the last 10% of the iterations (at least the last one)
  double eval_final_loss = std::numeric_limits<double>::quiet_NaN(), eval_final_accuracy = eval_final_loss;
  double eval_tail_loss = eval_final_loss, eval_tail_accuracy = eval_final_loss;
  bool evaluated = false;  // eval_every > 0: the twins above are measured (NaN where diverged)

  std::vector<float> params_init, params_final;  // only with RunOptions::keep_weights
  double seconds = 0;
  // Stopped by RunControl::stop before it finished: its state, if any, is in a checkpoint and
  // nothing else of this result is meaningful.
  bool interrupted = false;
};

// The whole training state of one network in flight, written every checkpoint_every
// iterations and when a run is stopped, so that `rnnsweep run --resume` continues it exactly.
struct NetworkCheckpoint {
  long id = -1;
  long iteration = 0;  // the next iteration to train
  std::vector<float> params, adam_m, adam_v;
  long adam_step = 0;
  std::vector<double> losses, accuracies;  // of every iteration so far
  std::vector<double> spectrum_init, spectrum_flossed;
  std::vector<FlossPoint> floss_curve;
  std::vector<TrackedSpectrum> tracked;  // those of the iterations before `iteration`
  std::vector<ProbePoint> probes;        // likewise
};

// How a run is steered from outside the backend: stopping, finished results, checkpoints.
// Every member is optional. The callbacks may be called from several threads at once (the CPU
// backend's workers); the caller makes them thread-safe.
struct RunControl {
  const std::atomic<bool>* stop = nullptr;   // set (e.g. by a signal): checkpoint and return soon
  const std::atomic<bool>* abort = nullptr;  // the same, set by a backend when one of its workers failed
  std::function<void(const NetworkResult&)> finished;               // each network as soon as it is done
  std::function<void(const NetworkCheckpoint&)> checkpoint;         // save (atomically)
  std::function<std::optional<NetworkCheckpoint>(long id)> resume;  // a saved one, if any
  long checkpoint_every = 0;  // training iterations between checkpoints; 0: only when stopped

  bool stopping() const { return (stop && stop->load()) || (abort && abort->load()); }
};

struct RunOptions {
  bool keep_weights = false;
  bool train = true;    // false: only the initial spectra (`rnnsweep lyapunov`)
  bool spectra = true;  // compute Lyapunov spectra before and after training
  const RunControl* control = nullptr;
};

// Work done so far, in units the backend chooses and announces in `total`; read by the
// progress printer on another thread.
struct Progress {
  std::atomic<long long> done{0};
  std::atomic<long long> total{0};
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual std::string device() const = 0;
  // Results in the order of `networks`.
  virtual std::vector<NetworkResult> train(const Config& config, const std::vector<NetworkSpec>& networks,
                                           const RunOptions& options, Progress& progress) = 0;
  // Checks that this backend can run the grid (throws UsageError naming the key otherwise) and
  // returns a one-line description of how it will (chunking), or "" when there is nothing to say.
  // Called before any work starts.
  virtual std::string plan(const Config& config, const std::vector<NetworkSpec>& networks,
                           const RunOptions& options) const {
    (void)config, (void)networks, (void)options;
    return "";
  }
};

// "auto" (CUDA if built and a GPU is present, otherwise CPU), "cpu" or "cuda". Throws
// UsageError naming the flag when the choice cannot be honoured here (no GPU, no CUDA build).
std::unique_ptr<Backend> make_backend(const std::string& which, int threads);

// Whether --backend cuda can run here (a CUDA build and a usable GPU); if not, why.
bool gpu_here(std::string* why);

// `rnnsweep tune`: the kernel instances timed on this machine's GPU (kernels/tuning.cuh) and
// merged into the tuning table at `out` (host/tuning.h; created if missing, this GPU's entries
// for the same shapes replaced). shapes: "all" (every task at H 32..256, batch 16..64),
// "paper" (every task at H 64, batch 32) or a list TASK:H:BATCH,... Prints one line per
// entry. Throws UsageError, before any work, for bad arguments and where no GPU is usable.
struct TuneArgs {
  std::string out;
  std::string shapes = "all";
  int networks = 1024;
  int launches = 3;
  bool quiet = false;
};
void tune_kernels(const TuneArgs& args);

// The training statistics of `r` (iterations, curve, best, final and tail loss and accuracy,
// divergence) from the loss and accuracy of every iteration trained before the network
// diverged (diverged_at: the first iteration whose loss was NaN/Inf, -1 if none) and whether
// its final parameters are finite (an update in the last iteration may break them), and the
// held-out twins from r.probes (which must hold the eval points of those iterations). Both
// backends summarise through this one function, so their tables differ only in the numbers.
void summarise_training(const Config& config, const std::vector<double>& losses,
                        const std::vector<double>& accuracies, long diverged_at, bool final_params_finite,
                        NetworkResult& r);

}  // namespace rnnsweep
