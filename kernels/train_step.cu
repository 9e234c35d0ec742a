// One fused training iteration per network. CPU twins: host/cpu/model.cpp (forward, loss),
// host/cpu/bptt.cpp, host/cpu/eprop.cpp (e-prop and RFLO), host/cpu/adam.h.
//
// Ownership: one thread block owns one network for the whole iteration, so a launch over K
// blocks trains the whole chunk with no launch per time step (the cost the framework peers
// pay T times per iteration). Inside the block:
// - Every thread owns fixed entries of the H x Bt state (entry idx = i + b H, strided by the
//   block size): h, f(h), the e-prop traces, the learning signal and the BPTT deltas live in
//   shared memory and only their owner writes them.
// - W_h lives in shared memory with a padded leading dimension H + 1, so that reading a row
//   (forward, W_h f) and reading a column (BPTT, W_h^T delta) are both free of bank conflicts.
// - The gradient accumulators (one block of P floats, the parameter layout) live in shared
//   memory; each entry is owned by one thread, so no atomics.
// - e-prop and RFLO are fused into the forward loop (traces e, q and the learning signal L_t
//   update in place, dW accumulates step by step): no stored history, no second pass.
// - BPTT streams f(h_t) and dL/dy_t of every step to global memory and reads them back in
//   reverse.
// - The optimizer step ends the launch; losses stay in device logs until the host asks.
// When W_h or the accumulators do not fit in shared memory (large H), the launcher points
// them at global memory instead (slower, same results). This is the general kernel, for every
// shape; for the study's sizes launch_train_step runs kernels/train_registers.cu instead.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/block_ops.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/tasks.cuh"
#include "kernels/train_layered.cuh"
#include "kernels/train_mma.cuh"
#include "kernels/train_registers.cuh"
#include "kernels/train_step.cuh"

namespace rnnsweep::cuda {
namespace {

// Batch columns a thread sums at once in the step products (kernels/block_ops.cuh,
// owned_products): 8 covers H = 64, batch 32 at 256 threads in one pass.
constexpr int kGroup = 8;

// Offsets (in floats) of the arrays in a block's dynamic shared memory. Computed by the same
// function on the host (to size the launch) and in the kernel (to find the arrays).
struct TrainShared {
  size_t reduce;                      // 32 doubles for block_sum (first, so it is 8-byte aligned)
  size_t W_h;                         // H x (H + 1) when W_h_shared
  size_t W_x, w, b, b_out, feedback;  // H x I, O x H, H, O, H x O
  size_t h, f;                        // H x Bt: the state h_t and f(h_t)
  size_t buf_a, buf_b, buf_c;         // H x Bt: e-prop trace and signal; BPTT delta, next delta, f(h_t)
  size_t q;                           // I x Bt: e-prop input trace; BPTT x_t
  size_t y, g;                        // O x Bt: outputs and dL/dy of the current step
  size_t resp;                        // O x Bt doubles: romo's response-period sums of y
  size_t correct;                     // Bt: romo's correct channel (as float)
  size_t grad;                        // P when grad_shared
  size_t total;
};

RNNSWEEP_HD inline TrainShared train_shared_layout(const Shape& s, int Bt, bool W_h_shared,
                                                   bool grad_shared) {
  TrainShared L{};
  SharedCarver<float> carve;  // 16-byte aligned arrays
  const size_t HB = size_t(s.H) * Bt;
  L.reduce = carve.take(64);
  L.W_h = carve.take(W_h_shared ? size_t(s.H) * (s.H + 1) : 0);
  L.W_x = carve.take(size_t(s.H) * s.I);
  L.w = carve.take(size_t(s.O) * s.H);
  L.b = carve.take(s.H);
  L.b_out = carve.take(s.O);
  L.feedback = carve.take(size_t(s.H) * s.O);
  L.h = carve.take(HB);
  L.f = carve.take(HB);
  L.buf_a = carve.take(HB);
  L.buf_b = carve.take(HB);
  L.buf_c = carve.take(HB);
  L.q = carve.take(size_t(s.I) * Bt);
  L.y = carve.take(size_t(s.O) * Bt);
  L.g = carve.take(size_t(s.O) * Bt);
  L.resp = carve.take(2 * size_t(s.O) * Bt);  // doubles, as the CPU sums them
  L.correct = carve.take(Bt);
  L.grad = carve.take(grad_shared ? size_t(ParamLayout(s).size) : 0);
  L.total = carve.size();
  return L;
}

RNNSWEEP_KERNEL void train_step_kernel(TrainChunk c, bool W_h_shared, bool grad_shared,
                                       std::uint32_t iteration, int log_slot, double bias_correction1,
                                       double bias_correction2) {
  const int n = blockIdx.x;
  if (c.diverged_at[n] >= 0) return;  // frozen (the whole block leaves together)
  if (c.first_iteration) {
    // A resumed network: trains from its own iteration on, with its own Adam step's bias
    // corrections (otherwise the launch's own are used).
    if (iteration < std::uint32_t(c.first_iteration[n])) return;  // resumed further on: not yet
    const long long adam_step =
        c.adam_steps_before[n] + (iteration - std::uint32_t(c.first_iteration[n])) + 1;
    bias_correction1 = c.bias_correction1[adam_step];
    bias_correction2 = c.bias_correction2[adam_step];
  }

  RNNSWEEP_DYNAMIC_SHARED(float, shared);
  const Shape s = c.shape;
  const int H = s.H, I = s.I, O = s.O, T = c.T, Bt = c.Bt, P = c.P;
  const int HB = H * Bt, tid = threadIdx.x, threads = blockDim.x;
  const float a = c.a;
  const ParamLayout layout(s);
  const TrainShared L = train_shared_layout(s, Bt, W_h_shared, grad_shared);
  const Rule rule = static_cast<Rule>(c.rule[n]);
  const bool eprop_like = rule != Rule::bptt;

  float* params = c.params + size_t(n) * P;
  double* reduce = reinterpret_cast<double*>(shared + L.reduce);
  float* W_h = W_h_shared ? shared + L.W_h : params + layout.W_h;
  const int ld_W = W_h_shared ? H + 1 : H;
  float* W_x = shared + L.W_x;
  float* w = shared + L.w;
  float* bias_h = shared + L.b;
  float* bias_out = shared + L.b_out;
  float* feedback = shared + L.feedback;
  float* h = shared + L.h;
  float* f = shared + L.f;
  float* grad = grad_shared ? shared + L.grad : c.grad_global + size_t(n) * P;
  float* y = shared + L.y;
  float* g = shared + L.g;

  // Trials of this iteration from the network's data stream, one trial per thread.
  const size_t x_size = size_t(T) * Bt * I, out_size = size_t(T) * Bt * O;
  const TrialView trials{T,
                         Bt,
                         I,
                         O,
                         c.trial_x + n * x_size,
                         c.task.classification() ? nullptr : c.trial_target + n * out_size,
                         c.task.classification() ? nullptr : c.trial_mask + n * out_size,
                         c.task.classification() ? c.trial_label + size_t(n) * T * Bt : nullptr};
  const Philox stream(c.purpose, c.data_seed[n]);
  for (int b = tid; b < Bt; b += threads) generate_trial(c.task, stream, iteration, b, trials);

  // Parameters into shared memory; state, traces and accumulators to zero.
  for (int e = tid; e < H * H; e += threads) {
    if (W_h_shared) W_h[(e % H) + (e / H) * ld_W] = params[layout.W_h + e];
  }
  for (int e = tid; e < H * I; e += threads) W_x[e] = params[layout.W_x + e];
  for (int e = tid; e < O * H; e += threads) w[e] = params[layout.w + e];
  for (int e = tid; e < H; e += threads) bias_h[e] = s.bias ? params[layout.b + e] : 0.0f;
  for (int e = tid; e < O; e += threads) bias_out[e] = s.bias ? params[layout.b_out + e] : 0.0f;
  // The learning signal's feedback, H x O: w^T for e-prop (the true readout), B for RFLO.
  for (int e = tid; e < H * O; e += threads) {
    const int i = e % H, o = e / H;
    feedback[e] = rule == Rule::rflo ? c.feedback[size_t(n) * H * O + e] : params[layout.w + o + i * O];
  }
  for (int e = tid; e < HB; e += threads) h[e] = f[e] = shared[L.buf_a + e] = 0.0f;
  for (int e = tid; e < I * Bt; e += threads) shared[L.q + e] = 0.0f;
  double* resp = reinterpret_cast<double*>(shared + L.resp);
  for (int e = tid; e < O * Bt; e += threads) resp[e] = 0.0;
  for (int b = tid; b < Bt; b += threads) shared[L.correct + b] = -1.0f;
  for (int e = tid; e < P; e += threads) grad[e] = 0.0f;
  float* history = rule == Rule::bptt ? c.history + size_t(n) * (T + 1) * HB : nullptr;
  float* output_grad = rule == Rule::bptt ? c.output_grad + size_t(n) * T * O * Bt : nullptr;
  if (history)
    for (int e = tid; e < HB; e += threads) history[e] = 0.0f;  // f(h_0) = 0
  __syncthreads();                                              // trials and shared arrays complete

  // romo's loss is normalised by the mask's sum over the whole batch, needed from step 0 on.
  double mask_sum = 1.0;
  if (!c.task.classification()) {
    double partial = 0;
    for (size_t k = tid; k < out_size; k += threads) partial += trials.mask[k];
    mask_sum = block_sum(partial, reduce);
  }
  const double steps_total = double(T) * Bt;
  double loss_partial = 0, decisions_partial = 0, right_partial = 0;
  float bias_trace = 0;  // e-prop's trace of the bias input (1), the same for every unit and trial

  float* e_trace = shared + L.buf_a;
  float* signal = shared + L.buf_b;
  float* q_trace = shared + L.q;
  for (int t = 0; t < T; ++t) {
    const float* x_t = trials.x + size_t(t) * Bt * I;
    // h_{t+1} = a h_t + (1 - a)(W_h f(h_t) + W_x x_t + b); each thread its own entries.
    owned_products<kGroup>(
        H, Bt, f, [&](int i, int j) { return W_h[i + j * ld_W]; },
        [&](int e, int i, int b, float recurrent) {
          float drive = bias_h[i];
          for (int k = 0; k < I; ++k) drive += W_x[i + k * H] * x_t[b * I + k];
          h[e] = a * h[e] + (1 - a) * (recurrent + drive);
        });
    __syncthreads();  // everyone is done reading f(h_t)
    for (int e = tid; e < HB; e += threads) {
      if (eprop_like) e_trace[e] = a * e_trace[e] + (1 - a) * f[e];  // e_{t+1}, from f(h_t)
      f[e] = h[e] > 0 ? h[e] : 0.0f;
      if (history) history[size_t(t + 1) * HB + e] = f[e];
    }
    if (eprop_like) {
      for (int e = tid; e < I * Bt; e += threads) q_trace[e] = a * q_trace[e] + (1 - a) * x_t[e];
      bias_trace = a * bias_trace + (1 - a);
    }
    __syncthreads();
    // y_t = w f(h_{t+1}) + b_out
    for (int e = tid; e < O * Bt; e += threads) {
      const int o = e % O, b = e / O;
      float out = 0;
      for (int j = 0; j < H; ++j) out += w[o + j * O] * f[j + b * H];
      y[e] = out + bias_out[o];
    }
    __syncthreads();
    // Loss of step t and dL/dy_t, one trial per thread (host/cpu/model.cpp, task_loss).
    for (int b = tid; b < Bt; b += threads) {
      const size_t col = size_t(t) * Bt + b;
      if (!c.task.classification()) {
        bool response = false;
        for (int o = 0; o < O; ++o) {
          const size_t k = col * O + o;
          const double err = double(y[o + b * O]) - trials.target[k];
          loss_partial += 0.5 * trials.mask[k] * err * err;
          g[o + b * O] = float(trials.mask[k] * err / mask_sum);
          if (trials.target[k] > 0) {
            shared[L.correct + b] = float(o);
            response = true;
          }
        }
        if (response)
          for (int o = 0; o < O; ++o) resp[o + b * O] += double(y[o + b * O]);
      } else {
        const int label = trials.label[col];
        double mx = y[b * O];
        int argmax = 0;
        for (int o = 1; o < O; ++o)
          if (double(y[o + b * O]) > mx) mx = y[o + b * O], argmax = o;
        double z = 0;
        for (int o = 0; o < O; ++o) z += exp(double(y[o + b * O]) - mx);
        loss_partial += -(double(y[label + b * O]) - mx - log(z));
        for (int o = 0; o < O; ++o)
          g[o + b * O] = float((exp(double(y[o + b * O]) - mx) / z - (o == label ? 1.0 : 0.0)) / steps_total);
        if (label != 0) {
          decisions_partial += 1;
          right_partial += (argmax == label);
        }
      }
      if (output_grad)
        for (int o = 0; o < O; ++o) output_grad[size_t(t) * O * Bt + o + b * O] = g[o + b * O];
    }
    __syncthreads();
    if (eprop_like) {
      // L_t = f'(h_{t+1}) * (feedback dL/dy_t)
      for (int e = tid; e < HB; e += threads) {
        const int i = e % H, b = e / H;
        float drive = 0;
        for (int o = 0; o < O; ++o) drive += feedback[i + o * H] * g[o + b * O];
        signal[e] = h[e] > 0 ? drive : 0.0f;
      }
      __syncthreads();
      // dW_h += L_t e_{t+1}^T, dW_x += L_t q_{t+1}^T, db += c_{t+1} L_t 1
      owned_outer_products<kGroup>(H, Bt, signal, e_trace,
                                   [&](int e, float sum) { grad[layout.W_h + e] += sum; });
      for (int e = tid; e < H * I; e += threads) {
        const int i = e % H, k = e / H;
        float sum = 0;
        for (int b = 0; b < Bt; ++b) sum += signal[i + b * H] * q_trace[k + b * I];
        grad[layout.W_x + e] += sum;
      }
      if (s.bias)
        for (int i = tid; i < H; i += threads) {
          float sum = 0;
          for (int b = 0; b < Bt; ++b) sum += signal[i + b * H];
          grad[layout.b + i] += bias_trace * sum;
        }
    }
    // dw += dL/dy_t f(h_{t+1})^T (exact for every rule), db_out += dL/dy_t 1
    for (int e = tid; e < O * H; e += threads) {
      const int o = e % O, j = e / O;
      float sum = 0;
      for (int b = 0; b < Bt; ++b) sum += g[o + b * O] * f[j + b * H];
      grad[layout.w + e] += sum;
    }
    if (s.bias)
      for (int o = tid; o < O; o += threads) {
        float sum = 0;
        for (int b = 0; b < Bt; ++b) sum += g[o + b * O];
        grad[layout.b_out + o] += sum;
      }
    // The next step writes h (owner only), then f, traces, y, g and the signal only after
    // barriers, so the accumulation above needs no barrier of its own.
  }

  // Loss and accuracy of the iteration.
  double loss, accuracy;
  if (!c.task.classification()) {
    loss = block_sum(loss_partial, reduce) / mask_sum;
    // A trial is right when its response-period mean is larger on the correct channel.
    double right = 0;
    for (int b = tid; b < Bt; b += threads) {
      int best = 0;
      for (int o = 1; o < O; ++o)
        if (resp[o + b * O] > resp[best + b * O]) best = o;
      right += (best == int(shared[L.correct + b]));
    }
    accuracy = block_sum(right, reduce) / Bt;
  } else {
    loss = block_sum(loss_partial, reduce) / steps_total;
    const double decisions = block_sum(decisions_partial, reduce);
    const double right = block_sum(right_partial, reduce);
    accuracy = decisions > 0 ? right / decisions : 0.0;
  }
  if (tid == 0) {
    c.loss_log[size_t(n) * c.log_window + log_slot] = loss;
    c.accuracy_log[size_t(n) * c.log_window + log_slot] = accuracy;
  }
  if (!is_finite(loss)) {
    // Frozen from here, as on the CPU: no update from a NaN/Inf loss.
    if (tid == 0) c.diverged_at[n] = int(iteration);
    return;
  }

  if (rule == Rule::bptt) {
    // delta_{t+1} = f'(h_{t+1}) (w^T dL/dy_t + (1 - a) W_h^T delta_{t+2}) + a delta_{t+2},
    // from t = T - 1 down, with delta_{T+1} = 0 (host/cpu/bptt.cpp).
    float* delta = shared + L.buf_a;
    float* delta_next = shared + L.buf_b;
    float* f_prev = shared + L.buf_c;
    float* x_prev = shared + L.q;
    for (int e = tid; e < HB; e += threads) delta[e] = 0.0f;
    for (int t = T - 1; t >= 0; --t) {
      __syncthreads();  // the previous step's readers of delta, f_prev and x_prev are done
      const float* g_t = output_grad + size_t(t) * O * Bt;
      owned_products<kGroup>(
          H, Bt, delta, [&](int i, int j) { return W_h[j + i * ld_W]; },  // W_h^T
          [&](int e, int i, int b, float through_W) {
            float direct = 0;
            for (int o = 0; o < O; ++o) direct += w[o + i * O] * g_t[o + b * O];
            const bool active = history[size_t(t + 1) * HB + e] > 0;
            delta_next[e] = (active ? direct + (1 - a) * through_W : 0.0f) + a * delta[e];
            f_prev[e] = history[size_t(t) * HB + e];
          });
      for (int e = tid; e < I * Bt; e += threads) x_prev[e] = trials.x[size_t(t) * Bt * I + e];
      __syncthreads();
      float* done = delta;  // every thread swaps the same way
      delta = delta_next;
      delta_next = done;
      // dW_h += (1 - a) delta_{t+1} f(h_t)^T, dW_x += (1 - a) delta_{t+1} x_t^T, db += (1 - a) delta 1
      owned_outer_products<kGroup>(H, Bt, delta, f_prev,
                                   [&](int e, float sum) { grad[layout.W_h + e] += (1 - a) * sum; });
      for (int e = tid; e < H * I; e += threads) {
        const int i = e % H, k = e / H;
        float sum = 0;
        for (int b = 0; b < Bt; ++b) sum += delta[i + b * H] * x_prev[k + b * I];
        grad[layout.W_x + e] += (1 - a) * sum;
      }
      if (s.bias)
        for (int i = tid; i < H; i += threads) {
          float sum = 0;
          for (int b = 0; b < Bt; ++b) sum += delta[i + b * H];
          grad[layout.b + i] += (1 - a) * sum;
        }
    }
  }
  __syncthreads();  // every accumulator is complete

  // The optimizer step on the network's block (PyTorch's Adam, as host/cpu/adam.h).
  float* m = c.adam_m + size_t(n) * P;
  float* v = c.adam_v + size_t(n) * P;
  const float b1 = float(c.beta1), b2 = float(c.beta2), eps = float(c.eps);
  const float step_size = float(c.lr[n] / bias_correction1), sqrt_bc2 = float(sqrt(bias_correction2));
  for (int e = tid; e < P; e += threads) {
    const float gr = grad[e];
    if (c.grad_out) c.grad_out[size_t(n) * P + e] = gr;
    if (c.optimizer == Optimizer::adam) {
      m[e] = b1 * m[e] + (1 - b1) * gr;
      v[e] = b2 * v[e] + (1 - b2) * gr * gr;
      params[e] -= step_size * m[e] / (sqrtf(v[e]) / sqrt_bc2 + eps);
    } else {
      params[e] -= float(c.lr[n]) * gr;
    }
  }
}

}  // namespace

namespace {
// The fused instances' task families: (1 input, 2 outputs) regression, (3, 3) classification.
bool fused_family(const Shape& shape, std::optional<bool> classification) {
  return !classification || *classification == (shape.I == 3 && shape.O == 3);
}
// The layered path's per-column arrays hold at most 3 inputs and outputs (kernels/train_layered.cu).
bool layered_takes(const Shape& shape) { return layered_available() && shape.I <= 3 && shape.O <= 3; }
}  // namespace

TrainLaunchPlan plan_train_step(const Shape& shape, int Bt, int T, size_t max_shared, Precision precision,
                                std::optional<bool> classification) {
  const bool fused = fused_family(shape, classification);
  if (precision == Precision::tf32x3 && fused && mma_instance_exists(shape, Bt)) {
    TrainLaunchPlan plan;
    plan.mma = true;
    plan.threads = mma_threads(shape, Bt);
    plan.shared_bytes = std::max(mma_shared_bytes(shape, Bt, T, true), mma_shared_bytes(shape, Bt, T, false));
    if (plan.shared_bytes <= max_shared) return plan;
  }
  if (fused && registers_instance_exists(shape, Bt)) {
    TrainLaunchPlan plan;
    plan.registers = true;
    plan.threads = registers_threads(shape, Bt, false);
    plan.bptt_threads = registers_threads(shape, Bt, true);
    plan.shared_bytes = std::max(registers_shared_bytes(shape, Bt, T, true), registers_shared_bytes(shape, Bt, T, false));
    if (plan.shared_bytes <= max_shared) return plan;
  }
  try {
    return plan_train_general(shape, Bt, max_shared);
  } catch (const std::invalid_argument& e) {  // too large for one block's shared memory
    if (!layered_available())
      throw std::invalid_argument(std::string(e.what()) + " (this build has no cuBLAS for larger sizes)");
    if (!layered_takes(shape))
      throw std::invalid_argument(std::string(e.what()) + " (the layered path for larger sizes takes at most 3 inputs and 3 outputs; this task has " +
                                  std::to_string(shape.I) + " and " + std::to_string(shape.O) + ")");
    TrainLaunchPlan plan;
    plan.layered = true;
    plan.threads = 0;
    return plan;
  }
}

TrainLaunchPlan plan_train_general(const Shape& shape, int Bt, size_t max_shared) {
  TrainLaunchPlan plan;
  const int entries = shape.H * Bt;
  plan.threads = std::min(256, std::max(32, (entries + 31) / 32 * 32));
  // Fastest first: both large arrays in shared memory, then W_h out, then both out.
  const bool options[3][2] = {{true, true}, {false, true}, {false, false}};
  for (const auto& o : options) {
    const size_t bytes = train_shared_layout(shape, Bt, o[0], o[1]).total * sizeof(float);
    if (bytes <= max_shared) {
      plan.W_h_shared = o[0];
      plan.grad_shared = o[1];
      plan.shared_bytes = bytes;
      return plan;
    }
  }
  throw std::invalid_argument(
      "the cuda backend supports hidden <= " +
      std::to_string(max_hidden_for(Bt, shape.I, shape.O, max_shared)) + " at batch " + std::to_string(Bt) +
      " on this GPU (hidden = " + std::to_string(shape.H) + " needs " +
      std::to_string(train_shared_layout(shape, Bt, false, false).total * 4 / 1024) +
      " KiB of shared memory per network, the GPU gives " + std::to_string(max_shared / 1024) +
      " KiB); use a smaller hidden or batch, or --backend cpu");
}

TrainScratch::TrainScratch(const TaskParams& task, const Shape& shape, int K, int Bt, bool any_bptt,
                           bool grad_global_needed, int log_window, bool layered_path)
    : task_(task), shape_(shape), K_(K), Bt_(Bt), log_window_(log_window), any_bptt_(any_bptt) {
  const size_t k = size_t(K), T = size_t(task.T()), steps = T * Bt, P = size_t(ParamLayout(shape).size);
  const bool classification = task.classification();
  adam_m = DeviceBuffer<float>(k * P);
  adam_v = DeviceBuffer<float>(k * P);
  trial_x = DeviceBuffer<float>(k * steps * shape.I);
  trial_target = DeviceBuffer<float>(classification ? 0 : k * steps * shape.O);
  trial_mask = DeviceBuffer<float>(classification ? 0 : k * steps * shape.O);
  trial_label = DeviceBuffer<int>(classification ? k * steps : 0);
  history = DeviceBuffer<float>(any_bptt || layered_path ? k * (T + 1) * shape.H * Bt : 0);
  output_grad = DeviceBuffer<float>(any_bptt || layered_path ? k * steps * shape.O : 0);
  grad_global = DeviceBuffer<float>(grad_global_needed || layered_path ? k * P : 0);
  layered = DeviceBuffer<float>(layered_path ? k * layered_floats(shape, Bt, task.T()) : 0);
  loss_log = DeviceBuffer<double>(k * log_window);
  accuracy_log = DeviceBuffer<double>(k * log_window);
  diverged_at = DeviceBuffer<int>(k);
  restart();
}

void TrainScratch::restart() {
  adam_m.zero();
  adam_v.zero();
  const std::vector<int> not_diverged(K_, -1);
  diverged_at.upload(not_diverged.data(), K_);
}

TrainChunk TrainScratch::chunk(float* params, const float* feedback, const int* rule, const double* lr,
                               const std::uint32_t* data_seed) const {
  TrainChunk c;
  c.K = K_;
  c.shape = shape_;
  c.task = task_;
  c.T = task_.T();
  c.Bt = Bt_;
  c.P = ParamLayout(shape_).size;
  c.a = float(task_.leak());
  c.params = params;
  c.adam_m = adam_m.get();
  c.adam_v = adam_v.get();
  c.feedback = feedback;
  c.rule = rule;
  c.lr = lr;
  c.data_seed = data_seed;
  c.trial_x = trial_x.get();
  c.trial_target = trial_target.get();
  c.trial_mask = trial_mask.get();
  c.trial_label = trial_label.get();
  c.history = history.get();
  c.output_grad = output_grad.get();
  c.grad_global = grad_global.get();
  c.layered = layered.get();
  c.any_bptt = any_bptt_;
  c.loss_log = loss_log.get();
  c.accuracy_log = accuracy_log.get();
  c.log_window = log_window_;
  c.diverged_at = diverged_at.get();
  return c;
}

std::string TrainLaunchPlan::name() const {
  if (registers)
    return "registers threads=" + std::to_string(threads) +
           (bptt_threads != threads ? " bptt-threads=" + std::to_string(bptt_threads) : std::string());
  if (layered) return "layered-cublas";
  if (mma) return "mma-tf32x3 threads=" + std::to_string(threads);
  return "general threads=" + std::to_string(threads) + " W_h=" + (W_h_shared ? "shared" : "global") +
         " grad=" + (grad_shared ? "shared" : "global");
}

std::vector<TrainLaunchPlan> train_candidates(const Shape& shape, int Bt, int T, size_t max_shared,
                                              Precision precision, std::optional<bool> classification) {
  const TrainLaunchPlan heuristic = plan_train_step(shape, Bt, T, max_shared, precision, classification);
  std::vector<TrainLaunchPlan> out = {heuristic};
  if (heuristic.mma || heuristic.layered) return out;  // nothing to choose between
  if (shape.H >= kLayeredCandidateHidden && layered_takes(shape)) {  // where the general kernel reads W_h from L2
    TrainLaunchPlan layered;
    layered.layered = true;
    layered.threads = 0;
    out.push_back(layered);
  }
  const TrainLaunchPlan general = plan_train_general(shape, Bt, max_shared);
  if (general.name() != heuristic.name()) out.push_back(general);
  const bool placements[3][2] = {{true, true}, {false, true}, {false, false}};
  for (int threads : {128, 256, 512})
    for (const auto& p : placements) {
      TrainLaunchPlan plan;
      plan.threads = threads;
      plan.W_h_shared = p[0];
      plan.grad_shared = p[1];
      plan.shared_bytes = train_shared_layout(shape, Bt, p[0], p[1]).total * sizeof(float);
      if (plan.shared_bytes > max_shared || plan.name() == heuristic.name() || plan.name() == general.name())
        continue;
      out.push_back(plan);
    }
  return out;
}

std::string train_shape_key(const Shape& shape, int Bt) {
  return "H=" + std::to_string(shape.H) + " Bt=" + std::to_string(Bt) + " I=" + std::to_string(shape.I) +
         " O=" + std::to_string(shape.O) + " bias=" + (shape.bias ? "1" : "0");
}

int max_hidden_for(int Bt, int I, int O, size_t max_shared) {
  int lo = 0, hi = 1;
  auto fits = [&](int H) {
    return train_shared_layout(Shape{H, I, O, true}, Bt, false, false).total * sizeof(float) <= max_shared;
  };
  while (fits(hi) && hi < (1 << 20)) hi *= 2;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

// One block per network; each thread sums its strided share, then block_sum. The order of the
// sums differs from the CPU's ascending one (agreeing to double rounding).
RNNSWEEP_KERNEL void gradient_cosines_kernel(int P, int length, const float* a, const float* b, double* out) {
  RNNSWEEP_DYNAMIC_SHARED(double, scratch);
  const int n = blockIdx.x, tid = threadIdx.x;
  const float* u = a + size_t(n) * P;
  const float* v = b + size_t(n) * P;
  double uv = 0, uu = 0, vv = 0;
  for (int e = tid; e < length; e += blockDim.x) {
    uv += double(u[e]) * v[e];
    uu += double(u[e]) * u[e];
    vv += double(v[e]) * v[e];
  }
  uv = block_sum(uv, scratch);
  uu = block_sum(uu, scratch);
  vv = block_sum(vv, scratch);
  if (tid == 0) out[n] = uv / sqrt(uu * vv);
}

void launch_gradient_cosines(int K, int P, int length, const float* a, const float* b, double* out,
                             cudaStream_t stream) {
  if (K < 1 || length < 1 || length > P) throw std::invalid_argument("launch_gradient_cosines: bad sizes");
  RNNSWEEP_LAUNCH(gradient_cosines_kernel, K, 128, 32 * sizeof(double), stream)(P, length, a, b, out);
  CUDA_CHECK(cudaGetLastError());
}

void launch_train_step(const TrainChunk& chunk, const TrainLaunchPlan& plan, std::uint32_t iteration,
                       int log_slot, long adam_step, cudaStream_t stream) {
  if (chunk.K < 1 || chunk.Bt < 1 || chunk.T != chunk.task.T() || chunk.shape.I != chunk.task.inputs() ||
      chunk.shape.O != chunk.task.outputs() || chunk.P != ParamLayout(chunk.shape).size)
    throw std::invalid_argument("launch_train_step: the chunk's shape does not match its task");
  if (log_slot < 0 || log_slot >= chunk.log_window)
    throw std::invalid_argument("launch_train_step: log slot " + std::to_string(log_slot) +
                                " outside the window of " + std::to_string(chunk.log_window));
  if (!plan.grad_shared && !chunk.grad_global)
    throw std::invalid_argument(
        "launch_train_step: the plan keeps gradients in global memory but none was given");
  if (plan.threads % 32 != 0)
    throw std::invalid_argument("launch_train_step: threads must be a multiple of 32");
  const double bc1 = 1.0 - std::pow(chunk.beta1, double(adam_step));
  const double bc2 = 1.0 - std::pow(chunk.beta2, double(adam_step));
  if (plan.registers || plan.mma || plan.layered) {
    // the trials first, every thread of a launch busy with them; then one launch per rule
    // family (a chunk without bptt networks has no history)
    const TrialView first{chunk.T,
                          chunk.Bt,
                          chunk.shape.I,
                          chunk.shape.O,
                          chunk.trial_x,
                          chunk.task.classification() ? nullptr : chunk.trial_target,
                          chunk.task.classification() ? nullptr : chunk.trial_mask,
                          chunk.task.classification() ? chunk.trial_label : nullptr};
    launch_generate_chunk_trials(chunk.task, chunk.purpose, chunk.K, chunk.data_seed, iteration, first,
                                 chunk.diverged_at, stream);
    if (plan.layered) {
      launch_train_layered(chunk, iteration, log_slot, bc1, bc2, stream);
    } else if (plan.mma) {
      if (chunk.history) launch_train_mma(chunk, true, iteration, log_slot, bc1, bc2, stream);
      launch_train_mma(chunk, false, iteration, log_slot, bc1, bc2, stream);
    } else {
      if (chunk.history) launch_train_registers(chunk, true, iteration, log_slot, bc1, bc2, stream);
      launch_train_registers(chunk, false, iteration, log_slot, bc1, bc2, stream);
    }
    return;
  }
  CUDA_CHECK(cudaFuncSetAttribute(train_step_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  int(plan.shared_bytes)));
  RNNSWEEP_LAUNCH(train_step_kernel, chunk.K, plan.threads, plan.shared_bytes, stream)
  (chunk, plan.W_h_shared, plan.grad_shared, iteration, log_slot, bc1, bc2);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace rnnsweep::cuda
