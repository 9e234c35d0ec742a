// What the two fused training kernels share: kernels/train_registers.cu (FMA pipes) and
// kernels/train_mma.cu (tensor cores, precision = "tf32x3"). CPU twins: host/cpu/model.cpp
// (task_loss: the loss, accuracy and dL/dy of a step) and host/cpu/adam.h.
//
// Both run one network per block with every instance's task shape known at compile time, keep
// each step's loss terms in a ledger in shared memory, and compute the step's tail (outputs,
// loss terms, dL/dy) in every warp after the step's one barrier, so that nothing waits for a
// single tail warp.
#pragma once

#include <cstdint>

#include "kernels/block_ops.cuh"
#include "kernels/train_step.cuh"

namespace rnnsweep::cuda::fused {

// Inputs and outputs a fused instance handles (every built-in task: romo 1 and 2, 2af and dms 3 and 3).
constexpr int kMaxIO = 3;

// The task's shape, at compile time: the regression (romo: 1 input, 2 outputs) or a choice task
// (2af, dms: 3 inputs, 3 outputs, classification). Exact trip counts for the loops over inputs
// and outputs and no code for the other kind of loss: both cost registers.
struct Regression {
  static constexpr int I = 1, O = 2;
  static constexpr bool kClassification = false;
};
struct Choice {
  static constexpr int I = 3, O = 3;
  static constexpr bool kClassification = true;
};

// The loss terms of the iteration, per batch column, accumulated step by step by warp 0's lane
// of that column (each lane touches only its own entries: no synchronisation). In shared memory
// rather than registers, which the step products need.
struct LossLedger {
  double* loss;      // Bt
  double* resp;      // O x Bt: romo's response-period sums of y
  int* correct;      // Bt: romo's correct channel
  int* decisions;    // Bt
  int* right;        // Bt
  float* db_out;     // O x Bt
  float* bias_out;   // O: b_out (read by every warp)
};

// Floats the ledger takes (at an 8-byte aligned offset).
RNNSWEEP_HD constexpr size_t ledger_floats(int Bt, int O) {
  return 2 * size_t(Bt) * (1 + O) + 3 * size_t(Bt) + size_t(O) * Bt + O;
}

RNNSWEEP_DEVICE LossLedger ledger_at(float* base, int Bt, int O) {
  double* d = reinterpret_cast<double*>(base);
  int* n = reinterpret_cast<int*>(d + size_t(Bt) * (1 + O));
  float* f = reinterpret_cast<float*>(n + 3 * size_t(Bt));
  return LossLedger{d, d + Bt, n, n + Bt, n + 2 * Bt, f, f + size_t(O) * Bt};
}

// Warp 0 clears the ledger and thread o < O reads b_out (before the block's first barrier).
template <class Task, int Bt>
RNNSWEEP_DEVICE void ledger_start(const LossLedger& ledger, const float* params, const ParamLayout& layout,
                                  bool bias, int tid) {
  constexpr int O = Task::O;
  if (tid < O) ledger.bias_out[tid] = bias ? params[layout.b_out + tid] : 0.0f;
  if (tid < 32)
    for (int b = tid; b < Bt; b += 32) {
      ledger.loss[b] = 0.0;
      ledger.correct[b] = -1;
      ledger.decisions[b] = ledger.right[b] = 0;
      RNNSWEEP_UNROLL
      for (int o = 0; o < O; ++o) {
        ledger.resp[o * Bt + b] = 0.0;
        ledger.db_out[o * Bt + b] = 0.0f;
      }
    }
}

// The loss terms of step t at batch column b from its outputs y (host/cpu/model.cpp, task_loss):
// dL/dy_t into gv, and, where `keep`, the terms added to the ledger (the loss, romo's response
// sums and correct channel, the decisions of 2af and dms, db_out). Exponentials and logarithms
// are float (expf, logf: the loss agrees with the CPU's double to ~1e-7, far inside what the
// tests allow); the ledger's sums are double.
// The trial data a column's loss terms need at step t: romo's targets and mask, or the label.
template <class Task>
struct ColumnTargets {
  float target[kMaxIO], mask[kMaxIO];
  int label;
  RNNSWEEP_DEVICE void load(const TrialView& trials, int t, int b) {
    const size_t col = size_t(t) * trials.Bt + b;
    if constexpr (!Task::kClassification) {
      RNNSWEEP_UNROLL
      for (int o = 0; o < kMaxIO; ++o) {
        target[o] = o < Task::O ? trials.target[col * Task::O + o] : 0.0f;
        mask[o] = o < Task::O ? trials.mask[col * Task::O + o] : 0.0f;
      }
    } else {
      label = trials.label[col];
    }
  }
};

template <class Task>
RNNSWEEP_DEVICE void column_tail(int b, int Bt, const float (&y)[kMaxIO], const LossLedger& ledger,
                                 const ColumnTargets<Task>& data, float inv_mask_sum, float inv_steps, bool keep,
                                 float (&gv)[kMaxIO]) {
  constexpr int O = Task::O;
  RNNSWEEP_UNROLL
  for (int o = 0; o < kMaxIO; ++o) gv[o] = 0.0f;
  if constexpr (!Task::kClassification) {
    bool response = false;
    RNNSWEEP_UNROLL
    for (int o = 0; o < kMaxIO; ++o) {
      if (o >= O) continue;
      const float mask = data.mask[o], target = data.target[o];
      const float err = y[o] - target;
      gv[o] = mask * err * inv_mask_sum;
      if (keep) {
        ledger.loss[b] += 0.5 * double(mask) * double(err) * double(err);
        if (target > 0) ledger.correct[b] = o, response = true;
      }
    }
    if (keep && response) {
      RNNSWEEP_UNROLL
      for (int o = 0; o < kMaxIO; ++o)
        if (o < O) ledger.resp[o * Bt + b] += double(y[o]);
    }
  } else {
    const int label = data.label;
    float mx = y[0];
    int argmax = 0;
    RNNSWEEP_UNROLL
    for (int o = 1; o < kMaxIO; ++o)
      if (o < O && y[o] > mx) mx = y[o], argmax = o;
    float z = 0.0f, ex[kMaxIO];
    RNNSWEEP_UNROLL
    for (int o = 0; o < kMaxIO; ++o) {
      ex[o] = o < O ? expf(y[o] - mx) : 0.0f;
      z += ex[o];
    }
    const float inv_z = 1.0f / z;
    float y_label = y[0];
    RNNSWEEP_UNROLL
    for (int o = 0; o < kMaxIO; ++o) {
      if (o == label) y_label = y[o];
      gv[o] = o < O ? (ex[o] * inv_z - (o == label ? 1.0f : 0.0f)) * inv_steps : 0.0f;
    }
    if (keep) {
      ledger.loss[b] += -double(y_label - mx - logf(z));
      if (label != 0) {
        ledger.decisions[b] += 1;
        ledger.right[b] += (argmax == label);
      }
    }
  }
  if (keep) {
    RNNSWEEP_UNROLL
    for (int o = 0; o < kMaxIO; ++o)
      if (o < O) ledger.db_out[o * Bt + b] += gv[o];  // db_out, column by column
  }
}

// The trial data of step t's tail for the lane's batch columns (lane, lane + 32, ...): loaded
// before the step's barrier, so that the loads' latency passes during the wait (no load moves
// across a barrier by itself).
template <class Task, int Bt>
struct StepTargets {
  static constexpr int kLaneColumns = (Bt + 31) / 32;
  ColumnTargets<Task> column[kLaneColumns];
  RNNSWEEP_DEVICE void load(const TrialView& trials, int t, int lane) {
    RNNSWEEP_UNROLL
    for (int r = 0; r < kLaneColumns; ++r)
      if (lane + 32 * r < Bt) column[r].load(trials, t, lane + 32 * r);
  }
};

// The tail of step t, in every warp: y_t from the kParts partial sums ypart[(p O + o) Bt + b],
// the loss terms (warp 0 adds them to the ledger), and dL/dy_t into the warp's own copy
// gwarp[o Bt + b] (and, for BPTT, warp 0's into gsteps[(t O + o) Bt + b]).
template <class Task, int Bt, int kParts, bool kBptt>
RNNSWEEP_DEVICE void step_tail(int t, int lane, int warp, const float* ypart, const LossLedger& ledger,
                               const StepTargets<Task, Bt>& data, float inv_mask_sum, float inv_steps, float* gwarp,
                               float* gsteps) {
  constexpr int O = Task::O;
  constexpr int kLaneColumns = StepTargets<Task, Bt>::kLaneColumns;
  RNNSWEEP_UNROLL
  for (int r = 0; r < kLaneColumns; ++r) {
    const int b = lane + 32 * r;
    if (b >= Bt) continue;
    float y[kMaxIO];
    RNNSWEEP_UNROLL
    for (int o = 0; o < kMaxIO; ++o) {
      float sum = 0.0f;
      if (o < O)
        for (int p = 0; p < kParts; ++p) sum += ypart[(size_t(p) * O + o) * Bt + b];
      y[o] = sum + (o < O ? ledger.bias_out[o] : 0.0f);
    }
    float gv[kMaxIO];
    column_tail<Task>(b, Bt, y, ledger, data.column[r], inv_mask_sum, inv_steps, warp == 0, gv);
    RNNSWEEP_UNROLL
    for (int o = 0; o < kMaxIO; ++o) {
      if (o >= O) continue;
      gwarp[o * Bt + b] = gv[o];
      if (kBptt && warp == 0) gsteps[(size_t(t) * O + o) * Bt + b] = gv[o];
    }
  }
}

// Warp 0: the iteration's loss and accuracy from the ledger, into the chunk's logs; a
// non-finite loss freezes the network (diverged_at) and verdict[0] says whether it did (1: go
// on). The caller's barrier then lets every thread read the verdict.
template <class Task>
RNNSWEEP_DEVICE void iteration_loss(const TrainChunk& c, int n, std::uint32_t iteration, int log_slot,
                                    const LossLedger& ledger, double mask_sum, int T, int Bt, int lane, int* verdict) {
  constexpr int O = Task::O;
  double loss_part = 0, loss = 0, accuracy = 0;
  int decisions = 0, right = 0;
  for (int b = lane; b < Bt; b += 32) {
    loss_part += ledger.loss[b];
    if constexpr (!Task::kClassification) {
      int best = 0;
      double best_value = ledger.resp[b];
      RNNSWEEP_UNROLL
      for (int o = 1; o < O; ++o)
        if (ledger.resp[o * Bt + b] > best_value) best = o, best_value = ledger.resp[o * Bt + b];
      right += (best == ledger.correct[b]);
    } else {
      decisions += ledger.decisions[b];
      right += ledger.right[b];
    }
  }
  if constexpr (!Task::kClassification) {
    loss = warp_sum(loss_part) / mask_sum;
    accuracy = double(warp_sum(right)) / Bt;
  } else {
    loss = warp_sum(loss_part) / (double(T) * Bt);
    decisions = warp_sum(decisions);
    right = warp_sum(right);
    accuracy = decisions > 0 ? double(right) / decisions : 0.0;
  }
  if (lane == 0) {
    c.loss_log[size_t(n) * c.log_window + log_slot] = loss;
    c.accuracy_log[size_t(n) * c.log_window + log_slot] = accuracy;
    verdict[0] = is_finite(loss) ? 1 : 0;
    if (!is_finite(loss)) c.diverged_at[n] = int(iteration);
  }
}

// PyTorch's Adam (or SGD) on one network's parameters (host/cpu/adam.h): update(e, gradient).
struct OptimizerStep {
  const TrainChunk& c;
  float* params;
  float* m;
  float* v;
  float* grad_out;
  float b1, b2, eps, step_size, sqrt_bc2, lr;

  // bias_correction1 and 2: the launch's, unless the chunk was resumed and the network has its
  // own Adam step (its corrections were computed on the host with std::pow, as the CPU does, so
  // that resumed runs match exactly).
  RNNSWEEP_DEVICE OptimizerStep(const TrainChunk& chunk, int n, std::uint32_t iteration, double bias_correction1,
                                double bias_correction2)
      : c(chunk),
        params(chunk.params + size_t(n) * chunk.P),
        m(chunk.adam_m + size_t(n) * chunk.P),
        v(chunk.adam_v + size_t(n) * chunk.P),
        grad_out(chunk.grad_out ? chunk.grad_out + size_t(n) * chunk.P : nullptr) {
    if (chunk.first_iteration) {
      const long long adam_step = chunk.adam_steps_before[n] + (iteration - std::uint32_t(chunk.first_iteration[n])) + 1;
      bias_correction1 = chunk.bias_correction1[adam_step];
      bias_correction2 = chunk.bias_correction2[adam_step];
    }
    b1 = float(chunk.beta1), b2 = float(chunk.beta2), eps = float(chunk.eps);
    step_size = float(chunk.lr[n] / bias_correction1), sqrt_bc2 = float(sqrt(bias_correction2));
    lr = float(chunk.lr[n]);
  }

  RNNSWEEP_DEVICE void update(int e, float gr) const {
    if (grad_out) grad_out[e] = gr;
    if (c.optimizer == Optimizer::adam) {
      m[e] = b1 * m[e] + (1 - b1) * gr;
      v[e] = b2 * v[e] + (1 - b2) * gr * gr;
      params[e] -= step_size * m[e] / (sqrtf(v[e]) / sqrt_bc2 + eps);
    } else {
      params[e] -= lr * gr;
    }
  }
};

// The inputs of a thread's two consecutive batch columns b0, b0 + 1 (b0 even) at one step: the
// trial buffer holds x_t as [column][input], so they are 2 I consecutive floats from
// x = x_t + b0 I, read as float4 (2 I a multiple of 4: 16-byte aligned) or float2 (8-byte
// aligned) at constant offsets from one pointer, instead of one load (and its 64-bit address)
// per input and column.
template <int I>
RNNSWEEP_DEVICE void load_inputs(const float* x, float (&out)[2][kMaxIO]) {
  constexpr int kFloats = 2 * I;
  float v[kFloats];
  if constexpr (kFloats % 4 == 0) {
    RNNSWEEP_UNROLL
    for (int k = 0; k < kFloats; k += 4) {
      const float4 q = *reinterpret_cast<const float4*>(x + k);
      v[k] = q.x, v[k + 1] = q.y, v[k + 2] = q.z, v[k + 3] = q.w;
    }
  } else {
    RNNSWEEP_UNROLL
    for (int k = 0; k < kFloats; k += 2) {
      const float2 q = *reinterpret_cast<const float2*>(x + k);
      v[k] = q.x, v[k + 1] = q.y;
    }
  }
  RNNSWEEP_UNROLL
  for (int c = 0; c < 2; ++c) {
    RNNSWEEP_UNROLL
    for (int k = 0; k < kMaxIO; ++k) out[c][k] = k < I ? v[c * I + k] : 0.0f;
  }
}

// e-prop's input trace of one step, q_{t+1} = a q_t + (1 - a) x_t (q as [input][column], x_t as
// [column][input]), spread over the block's kThreads threads, an entry each (not one warp's extra
// work before the step's barrier, which every reader waits behind). q_next may be q_cur (one
// buffer updated in place: each entry is read and written by one thread).
template <int I, int Bt, int kThreads>
RNNSWEEP_DEVICE void advance_input_trace(const float* q_cur, float* q_next, const float* x_t, float a, int tid) {
  RNNSWEEP_UNROLL
  for (int e0 = 0; e0 < I * Bt; e0 += kThreads) {
    const int e = e0 + tid, k = e / Bt, b = e % Bt;
    if (e < I * Bt) q_next[e] = a * q_cur[e] + (1 - a) * x_t[b * I + k];
  }
}

}  // namespace rnnsweep::cuda::fused
