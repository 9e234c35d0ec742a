// Gradient flossing on the device (docs/lyapunov.md, section 2). CPU twins: host/cpu/floss.cpp
// (floss_loss_and_gradient, qr_positive_backward) and host/cpu/spectra.cpp (floss_network).
// Shapes: K networks, H hidden, k = floss_k exponents, n = floss_steps QR steps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda_utils.cuh"
#include "kernels/portability.cuh"
#include "rnnsweep/model.h"
#include "rnnsweep/task.h"

namespace rnnsweep::cuda {

// K flossing networks (blocks); their parameters are entries network[0..K) of a larger array.
struct FlossChunk {
  int K = 0;
  const int* network = nullptr;  // K: index into params / seed (null: the identity)
  Shape shape;
  TaskParams task;
  int k = 0;
  long warmup = 0, steps = 0, iters = 0;
  long first_batch = 0;  // iteration i drives its trajectory with batch first_batch + i of the flossing stream
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  float* params = nullptr;              // (any) x P; W_h is updated in place
  const std::uint32_t* seed = nullptr;  // indexed like params
  float* adam_m = nullptr;              // K x H H (flossing has its own Adam state)
  float* adam_v = nullptr;              // K x H H
  int* adam_steps = nullptr;            // K: updates made so far (iterations without one do not count)
  // iters + 1 each: Adam's bias corrections 1 - beta^s for s = 0 .. iters, computed on the host
  // (adam_bias_corrections) so that they are std::pow's, as the CPU's (the device's pow may
  // differ by an ulp or two)
  const double* bias_correction1 = nullptr;
  const double* bias_correction2 = nullptr;
  double* scratch = nullptr;            // K x floss_scratch_doubles(...)
  double* loss = nullptr;               // K x iters: sum of the squared exponents, before the update
  int* k_used = nullptr;                // K x iters
};

// ---- device code shared by the two flossing kernels (kernels/floss.cu, kernels/floss_registers.cu)

// The iteration's loss, the sum of lambda_j^2 = (log_sum[j] / steps)^2 over the k_used leading
// columns (in column order), recorded with k_used by thread 0 (0 when no column is left).
RNNSWEEP_DEVICE double floss_record_loss(const FlossChunk& c, int slot, long iteration, const double* log_sum,
                                         int k_used) {
  double loss = 0;
  for (int col = 0; col < k_used; ++col) {
    const double lambda = log_sum[col] / double(c.steps);
    loss += lambda * lambda;
  }
  if (threadIdx.x == 0) {
    c.loss[size_t(slot) * c.iters + iteration] = k_used > 0 ? loss : 0.0;
    c.k_used[size_t(slot) * c.iters + iteration] = k_used;
  }
  return loss;
}

// PyTorch's Adam on W_h of network slot's flossing state, entry by entry, as the CPU does (float
// moments, the bias corrections of update `step` from the host).
struct FlossAdam {
  float b1, b2, eps, step_size, sqrt_bc2;
  float *m, *v, *W_h;
  RNNSWEEP_DEVICE FlossAdam(const FlossChunk& c, int slot, int step, float* W_h_params)
      : b1(float(c.beta1)),
        b2(float(c.beta2)),
        eps(float(c.eps)),
        step_size(float(c.lr / c.bias_correction1[step])),
        sqrt_bc2(float(sqrt(c.bias_correction2[step]))),
        m(c.adam_m + size_t(slot) * c.shape.H * c.shape.H),
        v(c.adam_v + size_t(slot) * c.shape.H * c.shape.H),
        W_h(W_h_params) {}
  // entry e = i + j H of W_h, its gradient
  RNNSWEEP_DEVICE void update(int e, double gradient) const {
    const float gr = float(gradient);
    m[e] = b1 * m[e] + (1 - b1) * gr;
    v[e] = b2 * v[e] + (1 - b2) * gr * gr;
    W_h[e] -= step_size * m[e] / (sqrtf(v[e]) / sqrt_bc2 + eps);
  }
};

// An instance of the flossing kernel: block size, where W_h lives, and where the chain works:
// chain_shared forms and factorises each M in shared memory and keeps the backward pass's work
// arrays there (H = 64, k = 32: 80 KiB), the chain's frames and triangles going to global
// scratch once each way; without it every product and QR works on global scratch.
struct FlossLaunchPlan {
  int threads = 64;
  bool W_h_shared = true;
  bool chain_shared = true;
  // the chain's frame in registers (kernels/floss_registers.cu, H = 64 with k = 32, H = k = 32);
  // W_h and the chain are then in shared memory as that kernel lays them out
  bool registers = false;
  size_t shared_bytes = 0;
  std::string name() const;  // "threads=64 W_h=shared chain=shared", or "registers threads=128"
};

// The heuristic's plan for this shape on a device with `max_shared` bytes of dynamic shared
// memory per block (the register instance where one exists and fits, else the general kernel);
// throws std::invalid_argument when nothing fits.
FlossLaunchPlan plan_floss(const Shape& shape, int k, const TaskParams& task, size_t max_shared);
// Every instance that can run this shape (the register instance, the general kernel at 64 to 256
// threads and the heuristic's, each placement that fits), the heuristic's first.
std::vector<FlossLaunchPlan> floss_candidates(const Shape& shape, int k, const TaskParams& task,
                                              size_t max_shared);
std::string floss_shape_key(const Shape& shape, int k, const TaskParams& task);

// 1 - beta^s for s = 0 .. steps (host std::pow, as host/cpu/adam.h).
std::vector<double> adam_bias_corrections(double beta, long steps);

// Adam's bias corrections of a chunk's updates (f.beta1, f.beta2, steps 0 .. f.iters) on the
// device, for as long as this lives: the constructor points f.bias_correction1 and 2 at them.
class FlossBiasCorrections {
 public:
  explicit FlossBiasCorrections(FlossChunk& f);

 private:
  DeviceBuffer<double> bc1_, bc2_;
};

// Doubles of global scratch one network needs: the n + 1 frames and n triangles of the forward
// chain, the slopes, and the backward pass's H x k and k x k work arrays and dL/dW_h.
size_t floss_scratch_doubles(int H, int k, long steps);

// Flossing iteration `iteration` of every network of the chunk: the driven trajectory of batch
// `iteration` of (floss_trials, seed), the chain of QRs, the loss on the leading exponents no
// step annihilated, the QR adjoint back through the chain with h_t held constant, and one Adam
// step on W_h. Asynchronous.
void launch_floss_iteration(const FlossChunk& chunk, const FlossLaunchPlan& plan, long iteration,
                            cudaStream_t stream);

}  // namespace rnnsweep::cuda
