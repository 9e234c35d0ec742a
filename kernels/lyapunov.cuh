// Lyapunov spectra on the device (QR method, docs/lyapunov.md, section 1), and the block-level pieces that
// the flossing kernel (kernels/floss.cu) shares: the driven trajectory and the thin QR with a
// positive diagonal. CPU twins: host/cpu/spectra.cpp (driven_states, random_frame,
// network_spectrum) and host/cpu/lyapunov.cpp (qr_positive, lyapunov_spectrum).
//
// Everything here is double precision, as on the CPU: a spectrum sums ln R_ii over thousands
// of steps, and the CPU reference it is tested against is double.
// Shapes: K networks, J trajectories per network (le_batch), H hidden, k exponents.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/block_ops.cuh"
#include "rnnsweep/model.h"
#include "rnnsweep/task.h"

namespace rnnsweep::cuda {

// Above this magnitude the driven state is renormalised (h = e^s u, see DrivenTrajectory).
// Large enough that a trajectory that never gets there is computed exactly as without it.
constexpr double kRenormaliseAbove = 1e100;

// W_h of one network as the double-precision kernels read it: a padded float copy in shared
// memory when it fits, otherwise the float parameters in global memory. W_h is float, so a
// float copy is exact and half the size of a double one, and float -> double is exact: every
// placement gives the same numbers. The padding (an odd row stride, H + 1 words) keeps both the
// column reads W(i, l) over i and the transposed reads W(j, i) over i free of bank conflicts.
struct RecurrentWeights {
  const float* shared;  // H x (H + 1), or null
  const float* global;  // H x H column-major (the parameter block), used when shared is null
  int H;
  RNNSWEEP_DEVICE double operator()(int i, int j) const {
    return double(shared ? shared[i + j * (H + 1)] : global[i + j * H]);
  }
};

// Doubles of shared memory that hold W_h's padded float copy.
RNNSWEEP_HD inline size_t recurrent_weights_doubles(int H) { return (size_t(H) * (H + 1) + 1) / 2; }

// Loads W_h into `shared` (recurrent_weights_doubles(H) doubles) if it is not null. Call from
// every thread.
RNNSWEEP_DEVICE RecurrentWeights load_recurrent_weights(const float* W_h, int H, double* shared) {
  float* copy = reinterpret_cast<float*>(shared);
  if (copy)
    for (int e = threadIdx.x; e < H * H; e += blockDim.x) copy[(e % H) + (e / H) * (H + 1)] = W_h[e];
  return RecurrentWeights{copy, W_h, H};
}

// 1e-10 (a + (1 - a) ||W_h||_F): at or below it an R_ii counts as exactly 0 (an annihilated
// direction, exponent -inf); host/cpu/lyapunov.cpp, annihilation_floor, explains the choice.
RNNSWEEP_DEVICE double annihilation_floor(const RecurrentWeights& W, double a, double* reduce) {
  double partial = 0;
  for (int e = threadIdx.x; e < W.H * W.H; e += blockDim.x) {
    const double x = W(e % W.H, e / W.H);
    partial += x * x;
  }
  return 1e-10 * (a + (1 - a) * sqrt(block_sum(partial, reduce)));
}

// Thin QR of the H x k matrix M (column-major, in place): M becomes Q with orthonormal columns
// and diag[j] = R_jj >= 0; if R is not null, the strictly upper part of R (k x k column-major)
// is written too (the lower part is left alone). Modified Gram-Schmidt, right-looking: warp 0
// normalises column j, then the warps project it out of the later columns, one column per warp.
// One barrier per column: warp w projects columns j + 1 + w, j + 1 + w + warps, ..., so column
// j + 1 is always warp 0's own, which may go on to normalise it while the other warps still
// project column j out of theirs (they read only column j and their own columns); the barrier
// after the next normalisation then orders every projection before the next.
// A column whose norm is at or below `floor` is annihilated: it becomes 0 (so that it carries
// nothing into the later columns or the next step) and diag[j] keeps its tiny norm.
// Every thread must call it; diag is in shared memory.
RNNSWEEP_DEVICE void block_qr_positive(double* M, int H, int k, double floor, double* diag, double* R) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int j = 0; j < k; ++j) {
    double* q = M + size_t(j) * H;
    if (warp == 0) {
      double squares = 0;
      for (int i = lane; i < H; i += 32) squares += q[i] * q[i];
      const double norm = sqrt(warp_sum(squares));
      const bool kept = norm > floor;
      for (int i = lane; i < H; i += 32) q[i] = kept ? q[i] / norm : 0.0;
      if (lane == 0) {
        diag[j] = norm;
        if (R) R[j + size_t(j) * k] = norm;
      }
    }
    __syncthreads();
    for (int col = j + 1 + warp; col < k; col += warps) {
      double* m = M + size_t(col) * H;
      double dot = 0;
      for (int i = lane; i < H; i += 32) dot += q[i] * m[i];
      dot = warp_sum(dot);
      for (int i = lane; i < H; i += 32) m[i] -= dot * q[i];
      if (R && lane == 0) R[j + size_t(col) * k] = dot;
    }
  }
  // Ends with the barrier after the last normalisation: no projection follows it.
}

// A random H x k orthonormal frame into M: the QR of the Gaussian matrix of the stream
// (lyapunov_frame, seed), as host/cpu/spectra.cpp random_frame. `diag` is k doubles of shared.
RNNSWEEP_DEVICE void block_random_frame(double* M, int H, int k, std::uint32_t seed, double* diag) {
  const Philox rng(Purpose::lyapunov_frame, seed);
  for (int e = threadIdx.x; e < H * k; e += blockDim.x) {
    const int r = e % H, c = e / H;
    M[e] = normal_at(rng, std::uint32_t(r * k + c));
  }
  __syncthreads();
  block_qr_positive(M, H, k, 0.0, diag, nullptr);
}

// One network driven by task trials laid back to back from h_0 = 0, never reset: trial j of
// the batch `iteration` of the stream (purpose, seed) drives steps [j T, (j + 1) T).
// (host/cpu/spectra.cpp, driven_states.) The state is carried as h = e^log_scale u: the map is
// positively homogeneous, so u_{t+1} = a u_t + (1 - a)(W_h relu(u_t) + e^-log_scale (W_x x_t + b))
// is exact, and u is renormalised only when it would otherwise overflow (at gain 2 the state
// passes the range of double after ~2000 steps). The Jacobian needs only the signs of h = those
// of u. All arrays are in shared memory; every thread calls every member.
struct DrivenTrajectory {
  TaskParams task;
  Philox rng;
  std::uint32_t iteration;
  int H, I, O, T;
  double a;
  RecurrentWeights W;
  const double* W_x;    // H x I
  const double* b;      // H (zeros without bias)
  double* u;            // H: the scaled state
  double* scratch;      // 2 H: relu(u) and the next state
  float* trial_x;       // T x I: the current trial
  float* trial_target;  // T x O (romo writes them; unused)
  float* trial_mask;    // T x O
  int* trial_label;     // T
  double* reduce;       // 32 doubles for block reductions
  double log_scale = 0, drive_scale = 1;

  // Ends with a barrier: the callers read every u[l] right after (a Jacobian before any step).
  RNNSWEEP_DEVICE void start() {
    for (int i = threadIdx.x; i < H; i += blockDim.x) u[i] = 0.0;
    log_scale = 0;
    drive_scale = 1;
    __syncthreads();
  }

  // Advances the state from step `step` to step + 1. Ends with a barrier, which the callers rely
  // on: whatever they wrote before calling it is visible to every thread after it, and the
  // next call may overwrite what this one's threads read (the trial, the scratch, `reduce`).
  RNNSWEEP_DEVICE void advance(long step) {
    const long trial = step / T;
    const int t = int(step % T);
    if (t == 0) {
      // the previous trial's inputs were last read before the previous call's closing barrier
      if (threadIdx.x == 0) {
        const TrialView one{T, 1, I, O, trial_x, trial_target, trial_mask, trial_label};
        generate_trial(task, rng, iteration, int(trial), one, 0);
      }
    }
    double* relu_u = scratch;
    double* next = scratch + H;
    for (int i = threadIdx.x; i < H; i += blockDim.x) relu_u[i] = u[i] > 0 ? u[i] : 0.0;
    __syncthreads();
    double largest = 0;
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
      double recurrent = 0;
      for (int j = 0; j < H; ++j) recurrent += W(i, j) * relu_u[j];
      double drive = 0;
      for (int k = 0; k < I; ++k) drive += W_x[i + k * H] * double(trial_x[t * I + k]);
      drive += b[i];
      next[i] = a * u[i] + (1 - a) * (recurrent + drive_scale * drive);
      largest = fmax(largest, fabs(next[i]));
    }
    // block-wide max through the sum's scratch: a max of non-negative numbers, warp by warp
    // (`reduce` was last read before the previous call's closing barrier, or by a block_sum,
    // which ends in one)
    for (int offset = 16; offset > 0; offset /= 2)
      largest = fmax(largest, __shfl_xor_sync(0xffffffffu, largest, offset));
    if (threadIdx.x % 32 == 0) reduce[threadIdx.x / 32] = largest;
    __syncthreads();
    largest = 0;
    for (int w = 0; w < int(blockDim.x / 32); ++w) largest = fmax(largest, reduce[w]);
    const bool renormalise = largest > kRenormaliseAbove && is_finite(largest);  // as the CPU
    for (int i = threadIdx.x; i < H; i += blockDim.x) u[i] = renormalise ? next[i] / largest : next[i];
    if (renormalise) {
      log_scale += log(largest);
      drive_scale = exp(-log_scale);
    }
    __syncthreads();
  }
};

// Device memory of a spectrum launch: K networks of one task, J trajectories each.
struct SpectrumChunk {
  int K = 0, J = 1;
  Shape shape;
  TaskParams task;
  int k = 0;  // exponents
  long warmup = 0, steps = 0;
  Purpose purpose = Purpose::lyapunov_trials;
  std::uint32_t iteration_offset = 0;   // trajectory j uses batch iteration_offset + j of the stream
  const float* params = nullptr;        // K x P
  const std::uint32_t* seed = nullptr;  // K: trials, frame
  const int* active = nullptr;          // K: 0 skips the network (diverged), null = all
  double* frames = nullptr;             // (K J) x 2 H k when the frames do not fit in shared memory
  double* lambda = nullptr;             // (K J) x k: (1/steps) sum ln R_ii, QR order
};

// An instance of the spectrum kernel: block size, where W_h and the frames live, the shared
// memory that needs. Every instance computes the same spectrum (the block size changes who
// computes an entry, not the order of its sums) up to the last bits of the annihilation floor.
struct SpectrumLaunchPlan {
  int threads = 128;
  bool W_h_shared = true, frames_shared = true;
  // the frame in registers (kernels/spectrum_registers.cu, full spectra at H = 32 and 64);
  // W_h and the frame are then in shared memory as that kernel lays them out
  bool registers = false;
  size_t shared_bytes = 0;
  std::string name() const;  // "threads=128 W_h=shared frames=shared", or "registers threads=256"
};

// The heuristic's plan (the register instance where one exists and fits, else the general
// kernel); throws std::invalid_argument when nothing fits.
SpectrumLaunchPlan plan_spectrum(const Shape& shape, int k, const TaskParams& task, size_t max_shared);
// Every instance that can run this shape (the register instance, the general kernel at 64 to 256
// threads and the heuristic's, each placement that fits), the heuristic's first.
std::vector<SpectrumLaunchPlan> spectrum_candidates(const Shape& shape, int k, const TaskParams& task,
                                                    size_t max_shared);
std::string spectrum_shape_key(const Shape& shape, int k, const TaskParams& task);

// lambda of every (network, trajectory) of the chunk; the caller averages over trajectories
// and sorts, as network_spectrum does. Asynchronous.
void launch_spectrum(const SpectrumChunk& chunk, const SpectrumLaunchPlan& plan, cudaStream_t stream);

}  // namespace rnnsweep::cuda
