// One training iteration of every network of a chunk, in one launch. CPU twins:
// host/cpu/model.cpp (forward, loss), host/cpu/bptt.cpp, host/cpu/eprop.cpp, host/cpu/adam.h.
//
// A chunk is K networks of one task and one shape (H, I, O, Bt, T, bias); each network has its
// own rule, learning rate, data seed and parameters. Shapes: K networks, T steps, Bt trials,
// H hidden, I inputs, O outputs, P = ParamLayout(shape).size parameters per network.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cuda_utils.cuh"
#include "kernels/portability.cuh"
#include "rnnsweep/model.h"
#include "rnnsweep/task.h"

namespace rnnsweep::cuda {

enum class Optimizer : int { adam = 0, sgd = 1 };
// The step products' arithmetic (config key precision): FP32 FMAs, or TF32 tensor cores with the
// 3xTF32 split (kernels/train_mma.cu), as accurate as FP32 in another order.
enum class Precision : int { fp32 = 0, tf32x3 = 1 };

// Device memory of a chunk, as the training kernel sees it. Arrays are per network, networks
// back to back (network n's block starts at n times the per-network size).
struct TrainChunk {
  int K = 0;
  Shape shape;
  TaskParams task;
  int T = 0, Bt = 0, P = 0;
  float a = 0;  // leak

  float* params = nullptr;                   // K x P, layout of include/rnnsweep/model.h
  float* adam_m = nullptr;                   // K x P
  float* adam_v = nullptr;                   // K x P
  const float* feedback = nullptr;           // K x (H x O) RFLO's B (read only for rflo networks)
  const int* rule = nullptr;                 // K, Rule as int
  const double* lr = nullptr;                // K
  const std::uint32_t* data_seed = nullptr;  // K
  // the stream the trials come from: training's, or the held-out set's (eval_every, whose
  // launches on a copy of the networks only read the loss)
  Purpose purpose = Purpose::trials;

  // scratch the kernel owns during a launch
  float* trial_x = nullptr;       // K x (T Bt I)
  float* trial_target = nullptr;  // K x (T Bt O), regression tasks
  float* trial_mask = nullptr;    // K x (T Bt O), regression tasks
  int* trial_label = nullptr;     // K x (T Bt), classification tasks
  float* history = nullptr;       // K x ((T + 1) H Bt): f(h_t) for BPTT (null if no bptt network)
  float* output_grad = nullptr;   // K x (T O Bt): dL/dy_t for BPTT (null if no bptt network)
  float* grad_global = nullptr;   // K x P: gradient accumulators when they do not fit in shared memory
  float* layered = nullptr;       // K x layered_floats: the layered path's state (kernels/train_layered.cuh)
  bool any_bptt = true;           // whether some network of the chunk is bptt (the layered path's backward)

  // results
  double* loss_log = nullptr;      // K x log_window
  double* accuracy_log = nullptr;  // K x log_window
  int log_window = 1;
  int* diverged_at = nullptr;  // K: -1 while training, else the first iteration whose loss was NaN/Inf
  float* grad_out = nullptr;   // K x P: optional copy of each gradient (tests)

  // Resumed networks (all null otherwise): network n trains only from iteration
  // first_iteration[n] on, its Adam step then being adam_steps_before[n] + (iteration -
  // first_iteration[n]) + 1, whose bias corrections 1 - beta^step are read from the tables
  // (computed on the host with std::pow, as the CPU does, so resumed runs match exactly).
  const int* first_iteration = nullptr;         // K
  const long long* adam_steps_before = nullptr;  // K
  const double* bias_correction1 = nullptr;     // indexed by Adam step
  const double* bias_correction2 = nullptr;

  Optimizer optimizer = Optimizer::adam;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

// The device memory a chunk trains in besides its networks' own arrays (parameters, RFLO's B,
// rules, learning rates, data seeds, which the caller owns because spectra and flossing use
// them too): Adam moments, the trials of an iteration, BPTT's history and output gradients, the
// gradient accumulators when they are not in shared memory, the logs. One place sizes it and
// fills a TrainChunk from it, for the backend, the tests, the benchmark and the tuner.
class TrainScratch {
 public:
  // layered: the layered path's scratch too (which needs the history, dL/dy and grad_global
  // whatever the rules).
  TrainScratch(const TaskParams& task, const Shape& shape, int K, int Bt, bool any_bptt, bool grad_global,
               int log_window, bool layered = false);
  // The launch's view of these buffers and of the networks' own arrays; shapes from the
  // constructor's. The optimizer is Adam with PyTorch's defaults until the caller changes it.
  TrainChunk chunk(float* params, const float* feedback, const int* rule, const double* lr,
                   const std::uint32_t* data_seed) const;
  // Adam moments to zero and every network marked as not diverged: a fresh start.
  void restart();

  DeviceBuffer<float> adam_m, adam_v, trial_x, trial_target, trial_mask, history, output_grad, grad_global, layered;
  DeviceBuffer<int> trial_label, diverged_at;
  DeviceBuffer<double> loss_log, accuracy_log;

 private:
  TaskParams task_;
  Shape shape_;
  int K_, Bt_, log_window_;
  bool any_bptt_;
};

// An instance of the training kernel and the shared memory it needs. Two kernels:
// - registers (kernels/train_registers.cu): W_h and dW_h in registers, compiled for the
//   study's sizes (H 32 or 64, batch 16, 32 or 64); the fastest where it exists;
// - general (this file): any shape, with a block size and W_h and the gradient accumulators in
//   shared or global memory. Its instances compute the same bits whatever the block size and
//   placement; the register instance sums in another order (agreeing to float rounding).
struct TrainLaunchPlan {
  bool registers = false;   // the register kernel (then only `threads` and `shared_bytes` apply)
  bool mma = false;         // the tensor-core kernel, tf32x3 (likewise)
  bool layered = false;     // the layered path on cuBLAS (kernels/train_layered.cu): any hidden size
  int threads = 256;
  int bptt_threads = 256;   // the register kernel's BPTT instance (where it differs: one row a thread)
  bool W_h_shared = true;   // general: W_h in shared memory (else read from global memory / L2)
  bool grad_shared = true;  // general: gradient accumulators in shared memory (else grad_global)
  size_t shared_bytes = 0;  // the larger of the two rule families' (bptt also keeps dL/dy)
  // "registers threads=256" or "general threads=256 W_h=shared grad=shared": the instance's
  // name in the tuning table
  std::string name() const;
};

// The heuristic's plan for this shape and trial length on a device with `max_shared` bytes of
// dynamic shared memory per block: the register instance where it exists and fits, else
// plan_train_general's.
// With precision tf32x3, the tensor-core instance where it exists and fits, else as fp32.
// Where no fused kernel fits one block's shared memory, the layered path (kernels/train_layered.cu),
// which takes any hidden size.
// `classification`, where given, is the task's loss: the fused instances exist for the built-in
// pairings only (1 input and 2 outputs with romo's squared error, 3 and 3 with cross-entropy), so
// a file task of another pairing at those shapes takes the general kernel. The layered path takes
// at most 3 inputs and outputs.
TrainLaunchPlan plan_train_step(const Shape& shape, int Bt, int T, size_t max_shared,
                                Precision precision = Precision::fp32,
                                std::optional<bool> classification = std::nullopt);

// The general kernel's heuristic plan; throws std::invalid_argument naming the supported range
// when even the smallest plan does not fit (the hidden state, traces and deltas, 5 H Bt
// floats, must be in shared memory).
TrainLaunchPlan plan_train_general(const Shape& shape, int Bt, size_t max_shared);

// The smallest hidden size at which the layered path is also a candidate (for the tuner).
constexpr int kLayeredCandidateHidden = 256;

// Every instance that can run this shape (the register instance, the general kernel at block
// sizes 128 to 512 and the heuristic's, each placement that fits, the layered path from
// kLayeredCandidateHidden on), the heuristic's first; what `rnnsweep tune` times.
std::vector<TrainLaunchPlan> train_candidates(const Shape& shape, int Bt, int T, size_t max_shared,
                                              Precision precision = Precision::fp32,
                                              std::optional<bool> classification = std::nullopt);

// The shape key of the tuning table: what decides which instances exist.
std::string train_shape_key(const Shape& shape, int Bt);

// The largest H that plan_train_general accepts for this batch and shared memory size.
int max_hidden_for(int Bt, int I, int O, size_t max_shared);

// cos(a_n, b_n) of every network's first `length` entries of two K x P arrays (the W_h blocks
// of two gradients: alignment), summed in double as host/cpu/train.cpp cosine, into out[n].
void launch_gradient_cosines(int K, int P, int length, const float* a, const float* b, double* out,
                             cudaStream_t stream);

// Iteration `iteration` (0-based) of every network of the chunk that has not diverged:
// trials from the (trials, data_seed) stream, forward pass, loss and accuracy into slot
// `log_slot` of the logs, gradient by the network's rule, then one optimizer step
// (adam_step = this network's Adam step count after the update, 1-based). Asynchronous.
void launch_train_step(const TrainChunk& chunk, const TrainLaunchPlan& plan, std::uint32_t iteration,
                       int log_slot, long adam_step, cudaStream_t stream);

}  // namespace rnnsweep::cuda
