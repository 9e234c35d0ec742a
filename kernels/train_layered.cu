// The layered training path on cuBLAS (kernels/train_layered.cuh). CPU twins:
// host/cpu/model.cpp (forward, loss), host/cpu/bptt.cpp, host/cpu/eprop.cpp, host/cpu/adam.h.
//
// Every array is column-major, as cuBLAS's: a network's H x Bt state at step t is the t-th
// H x Bt block of an H x (T Bt) matrix (unit i, batch column b at i + b H), so that all T
// steps side by side are one matrix for the gradient GEMMs. One block per network in the
// kernels, one strided-batched GEMM over the whole chunk for each product. Networks of
// every rule run together: a rule's own arrays are zero for the others (an e-prop signal of
// zero for a BPTT network, a delta of zero for an e-prop one), so the shared GEMMs add nothing
// to them. Frozen networks and resumed ones not yet due are skipped by the kernels; the GEMMs
// still run over their (unused) arrays.
#include <stdexcept>
#include <string>

#include "kernels/cuda_utils.cuh"
#include "kernels/train_layered.cuh"

#if RNNSWEEP_EMULATED || defined(RNNSWEEP_WITH_CUBLAS)
#define RNNSWEEP_LAYERED 1
#else
#define RNNSWEEP_LAYERED 0  // built without cuBLAS: the entry points at the end say so
#endif

#if RNNSWEEP_LAYERED
#include "kernels/blas.cuh"
#include "kernels/block_ops.cuh"
#include "kernels/train_fused.cuh"

namespace rnnsweep::cuda {
namespace {

using fused::kMaxIO;
using fused::LossLedger;

constexpr int kThreads = 256;

// Offsets in floats of a network's layered scratch.
struct LayeredLayout {
  size_t h;       // H x Bt: the state h_t
  size_t z;       // H x Bt: the step's GEMM product (W_h f_t, or W_h^T delta_{t+2})
  size_t signal;  // H x (T + 1) Bt: e-prop's L_t (blocks 0 .. T - 1), or BPTT's delta_{t+1} (block t;
                  // block T is delta_{T+1} = 0)
  size_t trace;   // H x T Bt: e-prop's e_{t+1}
  size_t qtrace;  // I x T Bt: e-prop's q_{t+1}
  size_t ledger;  // fused::LossLedger of the iteration
  size_t misc;    // 4 floats: the mask's sum (a double), the verdict (an int)
  size_t total;
};

RNNSWEEP_HD LayeredLayout layered_layout(const Shape& s, int Bt, int T) {
  LayeredLayout L{};
  SharedCarver<float> carve;  // 16-byte aligned arrays
  const size_t HB = size_t(s.H) * Bt, TB = size_t(T) * Bt;
  L.h = carve.take(HB);
  L.z = carve.take(HB);
  L.signal = carve.take(size_t(s.H) * (TB + Bt));
  L.trace = carve.take(size_t(s.H) * TB);
  L.qtrace = carve.take(size_t(s.I) * TB);
  L.ledger = carve.take(fused::ledger_floats(Bt, s.O));
  L.misc = carve.take(4);
  L.total = carve.size();
  return L;
}

// Whether network n sits this iteration out: frozen, or resumed further on.
RNNSWEEP_DEVICE bool skips(const TrainChunk& c, int n, std::uint32_t iteration) {
  return c.diverged_at[n] >= 0 || (c.first_iteration && iteration < std::uint32_t(c.first_iteration[n]));
}

RNNSWEEP_DEVICE TrialView trials_of(const TrainChunk& c, int n) {
  const int T = c.T, Bt = c.Bt, I = c.shape.I, O = c.shape.O;
  const size_t x_size = size_t(T) * Bt * I, out_size = size_t(T) * Bt * O;
  const bool classification = c.task.classification();
  return TrialView{T,
                   Bt,
                   I,
                   O,
                   c.trial_x + n * x_size,
                   classification ? nullptr : c.trial_target + n * out_size,
                   classification ? nullptr : c.trial_mask + n * out_size,
                   classification ? c.trial_label + size_t(n) * T * Bt : nullptr};
}

// Zero state, f(h_0), delta_{T+1}, the gradient and the ledger; the mask's sum (romo's loss is
// normalised by it).
RNNSWEEP_KERNEL void layered_begin(TrainChunk c, std::uint32_t iteration) {
  const int n = blockIdx.x, tid = threadIdx.x;
  if (skips(c, n, iteration)) return;
  RNNSWEEP_DYNAMIC_SHARED(double, reduce);
  const Shape s = c.shape;
  const int H = s.H, Bt = c.Bt, T = c.T, O = s.O;
  const LayeredLayout L = layered_layout(s, Bt, T);
  float* mine = c.layered + size_t(n) * L.total;
  float* f0 = c.history + size_t(n) * (T + 1) * H * Bt;
  float* d_last = mine + L.signal + size_t(T) * Bt * H;
  for (int e = tid; e < H * Bt; e += kThreads) mine[L.h + e] = f0[e] = d_last[e] = 0.0f;
  float* grad = c.grad_global + size_t(n) * c.P;
  for (int e = tid; e < c.P; e += kThreads) grad[e] = 0.0f;
  const LossLedger ledger = fused::ledger_at(mine + L.ledger, Bt, O);
  const ParamLayout layout(s);
  const float* params = c.params + size_t(n) * c.P;
  for (int o = tid; o < O; o += kThreads) ledger.bias_out[o] = s.bias ? params[layout.b_out + o] : 0.0f;
  for (int b = tid; b < Bt; b += kThreads) {
    ledger.loss[b] = 0.0;
    ledger.correct[b] = -1;
    ledger.decisions[b] = ledger.right[b] = 0;
    for (int o = 0; o < O; ++o) {
      ledger.resp[o * Bt + b] = 0.0;
      ledger.db_out[o * Bt + b] = 0.0f;
    }
  }
  double partial = 0;
  if (!c.task.classification()) {
    const TrialView trials = trials_of(c, n);
    for (size_t k = tid; k < size_t(T) * Bt * O; k += kThreads) partial += trials.mask[k];
  }
  const double mask_sum = block_sum(partial, reduce);
  if (tid == 0) *reinterpret_cast<double*>(mine + L.misc) = c.task.classification() ? 1.0 : mask_sum;
}

// Step t after the GEMM z = W_h f(h_t): h_{t+1}, f(h_{t+1}) into the history, then per batch
// column y_t, the loss terms and dL/dy_t (host/cpu/model.cpp).
template <class Task>
RNNSWEEP_KERNEL void layered_step(TrainChunk c, std::uint32_t iteration, int t) {
  const int n = blockIdx.x, tid = threadIdx.x;
  if (skips(c, n, iteration)) return;
  constexpr int I = Task::I, O = Task::O;
  const Shape s = c.shape;
  const int H = s.H, Bt = c.Bt, T = c.T;
  const LayeredLayout L = layered_layout(s, Bt, T);
  const ParamLayout layout(s);
  float* mine = c.layered + size_t(n) * L.total;
  const float* params = c.params + size_t(n) * c.P;
  const TrialView trials = trials_of(c, n);
  const float* x_t = trials.x + size_t(t) * Bt * I;
  float* f_next = c.history + (size_t(n) * (T + 1) + t + 1) * H * Bt;
  const float a = c.a;
  for (int e = tid; e < H * Bt; e += kThreads) {
    const int i = e % H, b = e / H;
    float drive = s.bias ? params[layout.b + i] : 0.0f;
    RNNSWEEP_UNROLL
    for (int k = 0; k < I; ++k) drive += params[layout.W_x + i + k * H] * x_t[b * I + k];
    const float h = a * mine[L.h + e] + (1 - a) * (mine[L.z + e] + drive);
    mine[L.h + e] = h;
    f_next[e] = h > 0 ? h : 0.0f;
  }
  __syncthreads();  // f(h_{t+1}) complete
  const LossLedger ledger = fused::ledger_at(mine + L.ledger, Bt, O);
  const double mask_sum = *reinterpret_cast<const double*>(mine + L.misc);
  const float inv_mask_sum = float(1.0 / mask_sum), inv_steps = float(1.0 / (double(T) * Bt));
  float* g_t = c.output_grad + (size_t(n) * T + t) * O * Bt;
  for (int b = tid; b < Bt; b += kThreads) {
    fused::ColumnTargets<Task> data;  // loaded first: the sum over H below hides their latency
    data.load(trials, t, b);
    float y[kMaxIO];
    RNNSWEEP_UNROLL
    for (int o = 0; o < kMaxIO; ++o) y[o] = o < O ? ledger.bias_out[o] : 0.0f;
    for (int i = 0; i < H; ++i) {
      const float f = f_next[i + b * H];
      RNNSWEEP_UNROLL
      for (int o = 0; o < O; ++o) y[o] += params[layout.w + o + i * O] * f;
    }
    float gv[kMaxIO];
    fused::column_tail<Task>(b, Bt, y, ledger, data, inv_mask_sum, inv_steps, true, gv);
    RNNSWEEP_UNROLL
    for (int o = 0; o < O; ++o) g_t[o * Bt + b] = gv[o];
  }
}

// The iteration's loss and accuracy into the logs; a non-finite loss freezes the network.
template <class Task>
RNNSWEEP_KERNEL void layered_verdict(TrainChunk c, std::uint32_t iteration, int log_slot) {
  const int n = blockIdx.x;
  if (skips(c, n, iteration)) return;
  const LayeredLayout L = layered_layout(c.shape, c.Bt, c.T);
  float* mine = c.layered + size_t(n) * L.total;
  const LossLedger ledger = fused::ledger_at(mine + L.ledger, c.Bt, Task::O);
  const double mask_sum = *reinterpret_cast<const double*>(mine + L.misc);
  fused::iteration_loss<Task>(c, n, iteration, log_slot, ledger, mask_sum, c.T, c.Bt, int(threadIdx.x),
                              reinterpret_cast<int*>(mine + L.misc + 2));
}

// e-prop's input trace q_{t+1} = a q_t + (1 - a) x_t, one thread per (input, batch column).
RNNSWEEP_KERNEL void layered_qtrace(TrainChunk c, std::uint32_t iteration) {
  const int n = blockIdx.x, tid = threadIdx.x;
  if (skips(c, n, iteration)) return;
  const int I = c.shape.I, Bt = c.Bt, T = c.T;
  const LayeredLayout L = layered_layout(c.shape, Bt, T);
  float* q = c.layered + size_t(n) * L.total + L.qtrace;
  const TrialView trials = trials_of(c, n);
  const float a = c.a;
  for (int e = tid; e < I * Bt; e += kThreads) {
    const int k = e % I, b = e / I;
    float value = 0.0f;
    for (int t = 0; t < T; ++t) {
      value = a * value + (1 - a) * trials.x[(size_t(t) * Bt + b) * I + k];
      q[k + (size_t(t) * Bt + b) * I] = value;
    }
  }
}

// After the forward pass, one thread per unit i: dw (exact, every rule), db_out; e-prop and
// RFLO: the traces e_{t+1}, the signal L_t = f'(h_{t+1}) (feedback dL/dy_t), dW_x = sum L q^T
// and db = sum c_t L_t (host/cpu/eprop.cpp). BPTT networks get a zero signal and trace.
template <class Task>
RNNSWEEP_KERNEL void layered_eprop(TrainChunk c, std::uint32_t iteration) {
  const int n = blockIdx.x, tid = threadIdx.x;
  if (skips(c, n, iteration)) return;
  constexpr int I = Task::I, O = Task::O;
  const Shape s = c.shape;
  const int H = s.H, Bt = c.Bt, T = c.T;
  const size_t HB = size_t(H) * Bt;
  const LayeredLayout L = layered_layout(s, Bt, T);
  const ParamLayout layout(s);
  float* mine = c.layered + size_t(n) * L.total;
  const float* params = c.params + size_t(n) * c.P;
  float* grad = c.grad_global + size_t(n) * c.P;
  const float* F = c.history + size_t(n) * (T + 1) * HB;
  const float* G = c.output_grad + size_t(n) * T * O * Bt;
  const float* q = mine + L.qtrace;
  const Rule rule = static_cast<Rule>(c.rule[n]);
  const bool eprop = rule != Rule::bptt;
  const float a = c.a;
  for (int i = tid; i < H; i += kThreads) {
    float fb[kMaxIO] = {0, 0, 0};
    RNNSWEEP_UNROLL
    for (int o = 0; o < O; ++o)
      fb[o] = rule == Rule::rflo ? c.feedback[size_t(n) * H * O + i + o * H] : params[layout.w + o + i * O];
    float gw[kMaxIO] = {0, 0, 0}, gWx[kMaxIO] = {0, 0, 0}, gb = 0.0f, bias_trace = 0.0f;
    for (int t = 0; t < T; ++t) {
      bias_trace = a * bias_trace + (1 - a);
      for (int b = 0; b < Bt; ++b) {
        const size_t col = size_t(t) * Bt + b;
        const float f_t = F[i + col * H], f_next = F[i + (col + Bt) * H];
        float g[kMaxIO], drive = 0.0f;
        RNNSWEEP_UNROLL
        for (int o = 0; o < O; ++o) {
          g[o] = G[(size_t(t) * O + o) * Bt + b];
          gw[o] += g[o] * f_next;
          drive += fb[o] * g[o];
        }
        float* e = mine + L.trace + i + col * H;
        float* l = mine + L.signal + i + col * H;
        if (eprop) {
          *e = (t > 0 ? a * e[-HB] : 0.0f) + (1 - a) * f_t;
          *l = f_next > 0 ? drive : 0.0f;
          gb += bias_trace * *l;
          RNNSWEEP_UNROLL
          for (int k = 0; k < I; ++k) gWx[k] += *l * q[k + col * I];
        } else {
          *e = *l = 0.0f;
        }
      }
    }
    RNNSWEEP_UNROLL
    for (int o = 0; o < O; ++o) grad[layout.w + o + i * O] = gw[o];
    if (eprop) {
      RNNSWEEP_UNROLL
      for (int k = 0; k < I; ++k) grad[layout.W_x + i + k * H] = gWx[k];
      if (s.bias) grad[layout.b + i] = gb;
    }
  }
  if (s.bias)
    for (int o = tid; o < O; o += kThreads) {
      float sum = 0.0f;
      for (int t = 0; t < T; ++t)
        for (int b = 0; b < Bt; ++b) sum += G[(size_t(t) * O + o) * Bt + b];
      grad[layout.b_out + o] = sum;
    }
}

// BPTT's step t after the GEMM z = W_h^T delta_{t+2}, one thread per unit:
// delta_{t+1} = f'(h_{t+1}) (w^T dL/dy_t + (1 - a) z) + a delta_{t+2} (host/cpu/bptt.cpp), and
// the sums of dW_x and db. Networks of the other rules get a zero delta.
template <class Task>
RNNSWEEP_KERNEL void layered_backward(TrainChunk c, std::uint32_t iteration, int t) {
  const int n = blockIdx.x, tid = threadIdx.x;
  if (skips(c, n, iteration)) return;
  constexpr int I = Task::I, O = Task::O;
  const Shape s = c.shape;
  const int H = s.H, Bt = c.Bt, T = c.T;
  const size_t HB = size_t(H) * Bt;
  const LayeredLayout L = layered_layout(s, Bt, T);
  const ParamLayout layout(s);
  float* mine = c.layered + size_t(n) * L.total;
  float* d_new = mine + L.signal + size_t(t) * HB;  // delta_{t+1}
  const float* d_old = d_new + HB;                  // delta_{t+2}
  if (static_cast<Rule>(c.rule[n]) != Rule::bptt) {
    for (size_t e = tid; e < HB; e += kThreads) d_new[e] = 0.0f;
    return;
  }
  const float* params = c.params + size_t(n) * c.P;
  float* grad = c.grad_global + size_t(n) * c.P;
  const float* f_next = c.history + (size_t(n) * (T + 1) + t + 1) * HB;
  const float* g_t = c.output_grad + (size_t(n) * T + t) * O * Bt;
  const float* x_t = trials_of(c, n).x + size_t(t) * Bt * I;
  const float a = c.a;
  for (int i = tid; i < H; i += kThreads) {
    float w_i[kMaxIO] = {0, 0, 0};
    RNNSWEEP_UNROLL
    for (int o = 0; o < O; ++o) w_i[o] = params[layout.w + o + i * O];
    float gWx[kMaxIO] = {0, 0, 0}, gb = 0.0f;
    for (int b = 0; b < Bt; ++b) {
      float direct = 0.0f;
      RNNSWEEP_UNROLL
      for (int o = 0; o < O; ++o) direct += w_i[o] * g_t[o * Bt + b];
      const size_t e = i + size_t(b) * H;
      const float d = (f_next[e] > 0 ? direct + (1 - a) * mine[L.z + e] : 0.0f) + a * d_old[e];
      d_new[e] = d;
      gb += d;
      RNNSWEEP_UNROLL
      for (int k = 0; k < I; ++k) gWx[k] += d * x_t[b * I + k];
    }
    RNNSWEEP_UNROLL
    for (int k = 0; k < I; ++k) grad[layout.W_x + i + k * H] += (1 - a) * gWx[k];
    if (s.bias) grad[layout.b + i] += (1 - a) * gb;
  }
}

// PyTorch's Adam (host/cpu/adam.h) on every parameter of every network that trained.
RNNSWEEP_KERNEL void layered_update(TrainChunk c, std::uint32_t iteration, double bias_correction1,
                                    double bias_correction2) {
  const int n = blockIdx.y;
  if (skips(c, n, iteration)) return;  // (a network that diverged in this iteration is frozen now)
  const int e = blockIdx.x * kThreads + threadIdx.x;
  if (e >= c.P) return;
  const fused::OptimizerStep opt(c, n, iteration, bias_correction1, bias_correction2);
  opt.update(e, c.grad_global[size_t(n) * c.P + e]);
}

// One cuBLAS handle per host thread (a handle must not be used by two threads at once).
cublasHandle_t blas_handle() {
  struct Handle {
    cublasHandle_t h = nullptr;
    Handle() { BLAS_CHECK(cublasCreate(&h)); }
    ~Handle() { cublasDestroy(h); }
  };
  thread_local Handle handle;
  return handle.h;
}

// C_n = alpha op(A_n) op(B_n) + beta C_n for every network n of the chunk.
void gemm(const TrainChunk& c, bool trans_a, bool trans_b, int m, int ncols, int k, float alpha, const float* A,
          int lda, size_t stride_a, const float* B, int ldb, size_t stride_b, float beta, float* C, int ldc,
          size_t stride_c) {
  BLAS_CHECK(cublasSgemmStridedBatched(blas_handle(), trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                       trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, ncols, k, &alpha, A, lda,
                                       (long long)stride_a, B, ldb, (long long)stride_b, &beta, C, ldc,
                                       (long long)stride_c, c.K));
}

template <class Task>
void launch(const TrainChunk& c, std::uint32_t iteration, int log_slot, double bc1, double bc2, cudaStream_t stream) {
  const Shape s = c.shape;
  const int H = s.H, Bt = c.Bt, T = c.T, K = c.K;
  const size_t HB = size_t(H) * Bt, TB = size_t(T) * Bt, P = size_t(c.P), F_stride = size_t(T + 1) * HB;
  const LayeredLayout L = layered_layout(s, Bt, T);
  const ParamLayout layout(s);
  BLAS_CHECK(cublasSetStream(blas_handle(), stream));
  const float* W = c.params + layout.W_h;  // network n's W_h at W + n P, column-major H x H
  float* Z = c.layered + L.z;
  float* D = c.layered + L.signal;
  const float a = c.a;
  // named, so that the launch macro sees one argument (and race reports name the kernel)
  const auto layered_step_t = &layered_step<Task>;
  const auto layered_verdict_t = &layered_verdict<Task>;
  const auto layered_eprop_t = &layered_eprop<Task>;
  const auto layered_backward_t = &layered_backward<Task>;

  RNNSWEEP_LAUNCH(layered_begin, K, kThreads, 64 * sizeof(double), stream)(c, iteration);
  CUDA_CHECK(cudaGetLastError());
  for (int t = 0; t < T; ++t) {
    // z = W_h f(h_t)
    gemm(c, false, false, H, Bt, H, 1.0f, W, H, P, c.history + t * HB, H, F_stride, 0.0f, Z, H, L.total);
    RNNSWEEP_LAUNCH(layered_step_t, K, kThreads, 0, stream)(c, iteration, t);
    CUDA_CHECK(cudaGetLastError());
  }
  RNNSWEEP_LAUNCH(layered_verdict_t, K, 32, 0, stream)(c, iteration, log_slot);
  RNNSWEEP_LAUNCH(layered_qtrace, K, kThreads, 0, stream)(c, iteration);
  RNNSWEEP_LAUNCH(layered_eprop_t, K, kThreads, 0, stream)(c, iteration);
  CUDA_CHECK(cudaGetLastError());
  // dW_h = sum over the T Bt columns of L e^T (zero for BPTT networks)
  float* dW = c.grad_global + layout.W_h;
  gemm(c, false, true, H, H, int(TB), 1.0f, D, H, L.total, c.layered + L.trace, H, L.total, 0.0f, dW, H, P);
  if (c.any_bptt) {
    for (int t = T - 1; t >= 0; --t) {
      // z = W_h^T delta_{t+2}
      gemm(c, true, false, H, Bt, H, 1.0f, W, H, P, D + (t + 1) * HB, H, L.total, 0.0f, Z, H, L.total);
      RNNSWEEP_LAUNCH(layered_backward_t, K, kThreads, 0, stream)(c, iteration, t);
      CUDA_CHECK(cudaGetLastError());
    }
    // dW_h += (1 - a) sum over the columns of delta_{t+1} f(h_t)^T (zero for the other rules)
    gemm(c, false, true, H, H, int(TB), 1 - a, D, H, L.total, c.history, H, F_stride, 1.0f, dW, H, P);
  }
  const dim3 grid((c.P + kThreads - 1) / kThreads, K);
  RNNSWEEP_LAUNCH(layered_update, grid, kThreads, 0, stream)(c, iteration, bc1, bc2);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

bool layered_available() { return true; }

size_t layered_floats(const Shape& shape, int Bt, int T) { return layered_layout(shape, Bt, T).total; }

void launch_train_layered(const TrainChunk& chunk, std::uint32_t iteration, int log_slot, double bias_correction1,
                          double bias_correction2, cudaStream_t stream) {
  if (!chunk.layered || !chunk.history || !chunk.output_grad || !chunk.grad_global)
    throw std::invalid_argument("launch_train_layered: the chunk has no layered scratch (TrainScratch layered = true)");
  if (chunk.shape.I > kMaxIO || chunk.shape.O > kMaxIO)
    throw std::invalid_argument("launch_train_layered: at most 3 inputs and outputs");
  if (chunk.task.classification())
    launch<fused::Choice>(chunk, iteration, log_slot, bias_correction1, bias_correction2, stream);
  else
    launch<fused::Regression>(chunk, iteration, log_slot, bias_correction1, bias_correction2, stream);
}

}  // namespace rnnsweep::cuda

#else  // no cuBLAS in this build

namespace rnnsweep::cuda {

bool layered_available() { return false; }

size_t layered_floats(const Shape&, int, int) { return 0; }

void launch_train_layered(const TrainChunk&, std::uint32_t, int, double, double, cudaStream_t) {
  throw std::invalid_argument("launch_train_layered: this build has no cuBLAS (the layered path is left out)");
}

}  // namespace rnnsweep::cuda

#endif
