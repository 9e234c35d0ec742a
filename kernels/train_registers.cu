// The training step with W_h and dW_h in registers (kernels/train_registers.cuh). CPU twins:
// host/cpu/model.cpp (forward, loss), host/cpu/bptt.cpp, host/cpu/eprop.cpp, host/cpu/adam.h.
//
// One thread block trains one network for one iteration, as kernels/train_step.cu does; what
// differs is who owns what, chosen so that the step products run at the FMA pipe's rate:
// - The block has H x Q threads (one row a thread); thread (i, q) = (tid / Q, tid % Q) holds, in registers for the
//   whole iteration, row i of W_h at the columns j = q, q + Q, q + 2Q, ... (J = H / Q of them)
//   and the same entries of dW_h. The Q threads of a row are consecutive lanes of one warp.
// - A step product (W_h f, W_h^T delta) is, per thread and row, J x 2 Q FMAs per group of 2 Q
//   batch columns against rows of f in shared memory read as float4: every float4 feeds 4 FMAs
//   (one row a thread), and the Q rows a warp reads at once sit in distinct banks (rows padded
//   to Bt + 4 floats). The Q partial sums of a row are then combined by a reduce-scatter over
//   the row's lanes (log2 Q shuffle rounds; the first without selects at H <= 64, f's rows being
//   stored with their halves swapped where their lanes keep the upper half, Geometry::f_at),
//   after which thread (i, q) owns the state of row i at 2 of the group's columns: h, f(h), the e-prop trace and the BPTT delta of those entries live in
//   its registers, and it publishes f (and e, delta) to shared memory for the next product.
// - The rank-Bt updates of dW_h (e-prop: L e^T, BPTT: delta f^T) are the same pattern: the
//   thread reads its row of L or delta (written by its own warp) and rows of e or f.
// - The outputs y = w f: each warp sums its own rows (lane = batch column), the warps' partial
//   sums meet in shared memory, and after the step's one barrier every warp computes the loss
//   terms and dL/dy of the step itself (the same numbers in every warp), so nothing waits for
//   a single tail warp. Exponentials and logarithms are float (expf, logf: the loss agrees with
//   the CPU's double to ~1e-7, far inside what the tests allow); the loss sums are double.
// - One __syncthreads per time step, forward and backward (two for two rows a thread, below): the
//   arrays read across warps (f, e, delta, the staged f of BPTT's backward, the output partials,
//   q) are double buffered by step parity, so a write never meets a read of the step before; the
//   rest is warp-local (__syncwarp).
// - Two rows a thread (Geometry's R = 2, e-prop and RFLO where the instance table says): thread
//   (p, q) holds rows 2p and 2p + 1, so that every float4 of f or e feeds 8 FMAs, not 4 (the
//   bound of one row); the block has H Q / 2 threads. W_h's slices are then read from shared
//   memory (registers hold both rows of dW_h), and with a second barrier a step (kOneTrace) the
//   trace e, the output partials and q have one buffer each, and a lane pair shares one set of
//   partial-sum slots, so that 4 blocks fit a multiprocessor (bench/MODEL.md).
// - BPTT keeps dL/dy of every step in shared memory and f(h) of every step in the global
//   history (each thread writes and reads back its own entries, prefetched a step ahead).
// The other gradients (W_x, w, biases) are summed per thread over its own batch columns (two rows:
// over a pair of lanes', one row each) and every step, and combined across the row's lanes once,
// at the end; then Adam as everywhere.
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/block_ops.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/train_fused.cuh"
#include "kernels/train_registers.cuh"

namespace rnnsweep::cuda {
namespace {

using fused::Choice;
using fused::kMaxIO;
using fused::load_inputs;
using fused::LossLedger;
using fused::Regression;

template <int kH, int kBt, int kQ, int kR = 1>
struct Geometry {
  static constexpr int H = kH, Bt = kBt, Q = kQ, R = kR;
  // R rows of W_h per thread: every float4 of f (or of e, delta) read from shared memory then
  // feeds 4 R fused multiply-adds, against the loads' issue slots (the bound of R = 1).
  static constexpr int kThreads = H * Q / R;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kJ = H / Q;                     // columns of W_h a thread holds, per row
  // W_h's slice in registers when it is small enough to sit beside dW_h's; above that (H = 128:
  // 32 + 32 registers would spill) the slice is read from shared memory as float4, like W_h^T's
  // in BPTT's backward pass, and only dW_h stays in registers.
  // Two rows a thread: both slices in shared memory too (in registers, even one row's 16 beside
  // dW_h's 2 x 16, the accumulators and the states spill).
  static constexpr int kWRegisterRows = kJ <= 16 && R == 1 ? 1 : 0;
  static constexpr bool kWInRegisters = kWRegisterRows == R;
  // Two rows a thread (e-prop): the trace e in one buffer, not two by step parity, and a second
  // barrier per step. Each step's e_{t+1} is written after the step's first barrier, when every
  // warp is done with e_t (the rank update of the step before), and read by the rank update after
  // the second; this buffer is what lets 4 blocks of H Q / 2 threads share a multiprocessor.
  static constexpr bool kOneTrace = R == 2;
  // With that second barrier, the arrays written before a step's first barrier and read only
  // between its two (the warps' partial outputs, the input trace q) need no second buffer either:
  // the next step writes them after the second. Buffers by step parity, 2, or 1:
  static constexpr int kStepBuffers = kOneTrace ? 1 : 2;  // (BPTT, one barrier a step: R = 1 only)
  // The step tail's targets loaded before the step's barrier (their latency hidden by the wait),
  // where the registers allow: at H = 128 they would spill inside the time loop.
  static constexpr bool kPrefetchTargets = kWInRegisters;
  // Batch columns summed at once: two per lane of a row after the reduce-scatter, so that the
  // accumulators of a group (2 Q R registers) leave room for W_h's and dW_h's slices.
  static constexpr int kGroup = 2 * Q;
  static constexpr int kGroups = Bt / kGroup;
  static constexpr int kOwnPerGroup = kGroup / Q;      // columns of a group whose state a thread owns, per row
  static constexpr int kOwn = kGroups * kOwnPerGroup;  // ... in all, per row
  static constexpr int kRowsPerWarp = 32 / Q * R;
  static constexpr int kStride = Bt + 4;               // row stride of H x Bt arrays in shared memory
  static constexpr int kLaneColumns = (Bt + 31) / 32;  // batch columns a lane handles in the tail
  // Blocks per multiprocessor to ask the compiler for: 16 warps at most 128 registers each.
  static constexpr int kMinBlocks = kThreads >= 512 ? 1 : 512 / kThreads;
  // f's rows in shared memory: a row whose lanes (j mod Q) are the upper ones of the
  // reduce-scatter's first round holds each group's two halves swapped, so that those lanes'
  // forward product sums them into the slots that round keeps (ReduceScatter's kHalvesSwapped,
  // no selects) while every lane reads the same addresses as without the swap (no bank
  // conflicts). Not at H = 128, whose time loop has no register to spare for it (it spills).
  // Offset of f's (row, column) in its buffer:
  static constexpr bool kSwapHalves = H <= 64;
  static constexpr RNNSWEEP_HD int f_at(int row, int column) {
    return row * kStride + (kSwapHalves && ((row % Q) & (Q / 2)) != 0 ? column ^ (kGroup / 2) : column);
  }
  static_assert(32 % Q == 0 && Q >= 2 && Q <= 16, "a row's lanes lie in one warp");
  static_assert(H % (Q * R) == 0 && kThreads % 32 == 0 && kThreads <= 1024, "whole warps");
  static_assert(R == 1 || R == 2, "one or two rows a thread");
  static_assert(kJ % 4 == 0, "W_h slices in float4");
  static_assert(Bt % kGroup == 0 && kGroup % 4 == 0 && kOwnPerGroup == 2, "groups of float4, own columns in pairs");
};

// Offsets in floats of the block's dynamic shared memory.
struct RegistersShared {
  size_t buf[5];    // H x stride each: f (two parities), e (two) or delta (two) and staged f (three)
  size_t w;         // O x H: the readout, for the warps' output sums
  size_t ypart;     // 2 x warps x O x Bt: the warps' partial outputs, by step parity (one, kOneTrace)
  size_t gwarp;     // warps x O x Bt: each warp's own copy of dL/dy_t
  size_t gsteps;    // T x O x Bt: dL/dy of every step (bptt)
  size_t qtrace;    // 2 x I x Bt: e-prop's input trace, by step parity (one, kOneTrace)
  size_t reduce;    // 64 floats: block_sum's scratch (32 doubles) and a flag
  size_t ledger;    // warp 0's per-column sums over the steps (LossLedger), kept out of registers
  size_t rows;      // H x 8: each row's input weights (3), feedback (3) and bias, read where used
  size_t partials;  // (I + O + 1) x threads: each thread's sums of dW_x (I), dw (O), db over its
                    // columns (R = 2: over its and its pair lane's columns, of one of its rows)
  size_t misc;      // 4 ints: the verdict on the loss, the network's index
  size_t wt;        // each thread's slice of W_h (forward, the rows not in registers) and of W_h^T
                    // (bptt's backward), J x threads per row as float4 ((r J + jj) / 4, tid)
  size_t total;
};

template <class G>
RNNSWEEP_HD RegistersShared registers_layout(int T, int I, int O, bool bptt) {
  RegistersShared L{};
  SharedCarver<float> carve;  // 16-byte aligned arrays
  L.reduce = carve.take(64);  // first: 8-byte aligned doubles
  // buf0, buf1: f (or delta) by parity; buf2, buf3: e by parity (one, kOneTrace) or BPTT's
  // staged f; buf4: BPTT's third staging buffer
  const bool used[5] = {true, true, true, bptt || !G::kOneTrace, bptt};
  for (int k = 0; k < 5; ++k) L.buf[k] = carve.take(used[k] ? size_t(G::H) * G::kStride : 0);
  L.w = carve.take(size_t(O) * G::H);
  L.ypart = carve.take(G::kStepBuffers * size_t(G::kWarps) * O * G::Bt);
  L.gwarp = carve.take(size_t(G::kWarps) * O * G::Bt);
  L.qtrace = carve.take(bptt ? 0 : G::kStepBuffers * size_t(I) * G::Bt);
  L.ledger = carve.take(fused::ledger_floats(G::Bt, O));
  L.rows = carve.take(8 * size_t(G::H));
  L.partials = carve.take(size_t(I + O + 1) * G::kThreads);
  L.misc = carve.take(4);
  L.wt = carve.take(size_t(G::kJ) * (bptt ? G::R : G::R - G::kWRegisterRows) * G::kThreads);
  // last, the one region whose size is known only at run time: every offset before it is a
  // compile-time constant of the instance (no registers for addresses)
  L.gsteps = carve.take(bptt ? size_t(T) * O * G::Bt : 0);
  L.total = carve.size();
  return L;
}

// Reduce-scatter of the N sums in v over the Q lanes of a row (lane bit s, s = Q/2 .. 1): after
// it, v[0 .. N / Q) of lane q hold the row's totals of columns q N / Q .. (q + 1) N / Q.
// kHalvesSwapped: the first round's lanes with bit S set (the upper ones, which keep the upper
// half) hold the two halves of v swapped (row_product summed them so), so that every lane keeps
// v[0, N / 2) and sends v[N / 2, N): that round needs no selects (2 FSEL per shuffle otherwise).
template <int S, int N, int M, bool kHalvesSwapped = false>
struct ReduceScatter {
  static RNNSWEEP_DEVICE void run(float (&v)[M], int q) {
    const bool upper = (q & S) != 0;
    RNNSWEEP_UNROLL
    for (int k = 0; k < N / 2; ++k) {
      const float send = kHalvesSwapped ? v[k + N / 2] : upper ? v[k] : v[k + N / 2];
      const float keep = kHalvesSwapped ? v[k] : upper ? v[k + N / 2] : v[k];
      v[k] = keep + __shfl_xor_sync(0xffffffffu, send, S);
    }
    ReduceScatter<S / 2, N / 2, M>::run(v, q);
  }
};
template <int N, int M, bool kHalvesSwapped>
struct ReduceScatter<0, N, M, kHalvesSwapped> {
  static RNNSWEEP_DEVICE void run(float (&)[M], int) {}
};

// The thread's slices of its R rows of a matrix (W_h, or W_h^T in BPTT's backward pass), four
// columns at a time: rows r < kRegisterRows held in registers for the whole step (W_h in the
// forward pass), the others read from shared memory as they are needed, a float4 at
// quads[((r - kRegisterRows) J / 4 + jq) threads] (each thread its own; BPTT's backward pass,
// whose registers hold dW_h and the deltas, reads all of W_h^T's so).
template <int kRegisterRows, int J, int kThreads>
struct RowSlices {
  static constexpr int kRows = kRegisterRows > 0 ? kRegisterRows : 1, kColumns = kRegisterRows > 0 ? J : 4;
  const float (&w)[kRows][kColumns];  // [1][4], never read, where no row is in registers
  const float4* quads;
  RNNSWEEP_DEVICE float4 quad(int r, int jq) const {
    if (r < kRegisterRows) return make_float4(w[r][4 * jq], w[r][4 * jq + 1], w[r][4 * jq + 2], w[r][4 * jq + 3]);
    return quads[((r - kRegisterRows) * (J / 4) + jq) * kThreads];
  }
};

// acc[r][0..group) = sum over the thread's columns jj of slice(r, jj) * rows[(jj Q + q) stride + 0..group),
// for its R rows: each float4 of `rows` feeds 4 R fused multiply-adds. (f's rows come with their
// halves swapped for the upper lanes, Geometry::f_at; W_h^T delta's do not.)
template <class G, class Slice>
RNNSWEEP_DEVICE void row_product(const Slice& slice, const float* rows, int q, float (&acc)[G::R][G::kGroup]) {
  constexpr int kQuads = G::kGroup / 4;
  static_assert(kQuads % 2 == 0 && (G::kGroup & (G::kGroup - 1)) == 0, "the halves of a group in whole float4s");
  RNNSWEEP_UNROLL
  for (int r = 0; r < G::R; ++r) {
    RNNSWEEP_UNROLL
    for (int k = 0; k < G::kGroup; ++k) acc[r][k] = 0.0f;
  }
  RNNSWEEP_UNROLL
  for (int jq = 0; jq < G::kJ / 4; ++jq) {
    float cs[G::R][4];
    RNNSWEEP_UNROLL
    for (int r = 0; r < G::R; ++r) {
      const float4 cq = slice.quad(r, jq);
      cs[r][0] = cq.x, cs[r][1] = cq.y, cs[r][2] = cq.z, cs[r][3] = cq.w;
    }
    RNNSWEEP_UNROLL
    for (int u = 0; u < 4; ++u) {
      const float4* row = reinterpret_cast<const float4*>(rows + ((4 * jq + u) * G::Q + q) * G::kStride);
      RNNSWEEP_UNROLL
      for (int v = 0; v < kQuads; ++v) {
        const float4 x = row[v];
        RNNSWEEP_UNROLL
        for (int r = 0; r < G::R; ++r) {
          const float c = cs[r][u];
          acc[r][4 * v + 0] += c * x.x;
          acc[r][4 * v + 1] += c * x.y;
          acc[r][4 * v + 2] += c * x.z;
          acc[r][4 * v + 3] += c * x.w;
        }
      }
    }
  }
}

// acc[r][jj] += sum over the group's columns of left[r stride + 0..group) * rows[(jj Q + q) stride + 0..group)
// (left: the thread's R consecutive rows), read four columns at a time (a float4 each, so that
// only 4 R of `left` are live).
template <class G>
RNNSWEEP_DEVICE void rank_update(const float* left, const float* rows, int q, float (&acc)[G::R][G::kJ]) {
  RNNSWEEP_UNROLL
  for (int v = 0; v < G::kGroup / 4; ++v) {
    float4 l[G::R];
    RNNSWEEP_UNROLL
    for (int r = 0; r < G::R; ++r) l[r] = reinterpret_cast<const float4*>(left + r * G::kStride)[v];
    RNNSWEEP_UNROLL
    for (int jj = 0; jj < G::kJ; ++jj) {
      const float4 x = reinterpret_cast<const float4*>(rows + (jj * G::Q + q) * G::kStride)[v];
      RNNSWEEP_UNROLL
      for (int r = 0; r < G::R; ++r) {
        float sum = acc[r][jj];  // one accumulation chain: four fused multiply-adds
        sum += l[r].x * x.x;
        sum += l[r].y * x.y;
        sum += l[r].z * x.z;
        sum += l[r].w * x.w;
        acc[r][jj] = sum;
      }
    }
  }
}

// Stores / loads the thread's own entries (kOwnPerGroup consecutive floats) of group g.
template <class G>
RNNSWEEP_DEVICE void store_own(float* dst, const float* own) {
  if constexpr (G::kOwnPerGroup == 2) {
    *reinterpret_cast<float2*>(dst) = make_float2(own[0], own[1]);
  } else {
    RNNSWEEP_UNROLL
    for (int v = 0; v < G::kOwnPerGroup; v += 4)
      *reinterpret_cast<float4*>(dst + v) = make_float4(own[v], own[v + 1], own[v + 2], own[v + 3]);
  }
}
template <class G>
RNNSWEEP_DEVICE void load_own(const float* src, float* own) {
  if constexpr (G::kOwnPerGroup == 2) {
    const float2 x = *reinterpret_cast<const float2*>(src);
    own[0] = x.x, own[1] = x.y;
  } else {
    RNNSWEEP_UNROLL
    for (int v = 0; v < G::kOwnPerGroup; v += 4) {
      const float4 x = *reinterpret_cast<const float4*>(src + v);
      own[v] = x.x, own[v + 1] = x.y, own[v + 2] = x.z, own[v + 3] = x.w;
    }
  }
}

template <class G, bool kBptt, class Task>
RNNSWEEP_KERNEL void __launch_bounds__(G::kThreads, G::kMinBlocks)
    train_registers_kernel(TrainChunk c, std::uint32_t iteration, int log_slot, double bias_correction1,
                           double bias_correction2) {
  constexpr int H = G::H, Bt = G::Bt, Q = G::Q, R = G::R, J = G::kJ, S = G::kStride, kOwn = G::kOwn,
                kOwnPerGroup = G::kOwnPerGroup, kGroup = G::kGroup, kGroups = G::kGroups, kWarps = G::kWarps;
  const int n = blockIdx.x;
  if (c.diverged_at[n] >= 0) return;  // frozen (the whole block leaves together)
  const Rule rule = static_cast<Rule>(c.rule[n]);
  if ((rule == Rule::bptt) != kBptt) return;  // the other family's launch trains it
  if (c.first_iteration && iteration < std::uint32_t(c.first_iteration[n])) return;  // resumed further on

  static_assert(!(kBptt && G::kOneTrace), "BPTT has one barrier a step: its arrays need both parities");
  RNNSWEEP_DYNAMIC_SHARED(float, shared);
  const Shape s = c.shape;
  constexpr int I = Task::I, O = Task::O;
  const int T = c.T, P = ParamLayout(Shape{H, I, O, s.bias}).size;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int q = tid % Q;
  const int i0 = tid / Q * R;  // the thread's rows: i0 .. i0 + R - 1
  const float a = c.a;
  // the instance's shape (H, I, O at compile time): the offsets are constants, not registers
  const ParamLayout layout(Shape{H, I, O, s.bias});
  const RegistersShared L = registers_layout<G>(T, I, O, kBptt);
  int* misc = reinterpret_cast<int*>(shared + L.misc);
  if (tid == 0) misc[1] = n;  // read back (volatile) where the pointers derived from it are needed
                              // again after the loops, so that they need no registers during them
  float* params = c.params + size_t(n) * P;
  double* reduce = reinterpret_cast<double*>(shared + L.reduce);
  float* w_sh = shared + L.w;
  constexpr bool classification = Task::kClassification;

  // This iteration's trials, generated by the launch before (launch_generate_chunk_trials).
  const size_t x_size = size_t(T) * Bt * I, out_size = size_t(T) * Bt * O;
  const TrialView trials{T,
                         Bt,
                         I,
                         O,
                         c.trial_x + n * x_size,
                         classification ? nullptr : c.trial_target + n * out_size,
                         classification ? nullptr : c.trial_mask + n * out_size,
                         classification ? c.trial_label + size_t(n) * T * Bt : nullptr};

  // Registers (rows r < kWRegisterRows) or shared memory (the others): the row slices of W_h.
  constexpr int kRegRows = G::kWRegisterRows;
  float Wr[RowSlices<kRegRows, J, 1>::kRows][RowSlices<kRegRows, J, 1>::kColumns];
  float4* const w_slice = reinterpret_cast<float4*>(shared + L.wt) + tid;
  RNNSWEEP_UNROLL
  for (int r = 0; r < R; ++r) {
    const int i = i0 + r;
    if (r < kRegRows) {
      RNNSWEEP_UNROLL
      for (int jj = 0; jj < (kRegRows > 0 ? J : 0); ++jj) Wr[r][jj] = params[layout.W_h + i + (jj * Q + q) * H];
    } else {  // each thread its own quads: no barrier needed before it reads them
      RNNSWEEP_UNROLL
      for (int jq = 0; jq < J / 4; ++jq)
        w_slice[((r - kRegRows) * (J / 4) + jq) * G::kThreads] = make_float4(params[layout.W_h + i + ((4 * jq + 0) * Q + q) * H],
                                                                params[layout.W_h + i + ((4 * jq + 1) * Q + q) * H],
                                                                params[layout.W_h + i + ((4 * jq + 2) * Q + q) * H],
                                                                params[layout.W_h + i + ((4 * jq + 3) * Q + q) * H]);
    }
  }
  // The row's input weights [0, I), feedback [3, 3 + O) and bias [6] in shared memory, read
  // (as two float4) where each step needs them: registers are for the step products. The input
  // weights and the bias come scaled by (1 - a), so that the step's update of h is two fused
  // multiply-adds, a h + ((1 - a) W_h f + drive), not an add, a multiply and one (the CPU's
  // a h + (1 - a)(W_h f + W_x x + b) up to rounding). rows_in + 8 r: row i0 + r's
  float* const rows_in = shared + L.rows + i0 * 8;
  if (q == 0) {
    RNNSWEEP_UNROLL
    for (int r = 0; r < R; ++r) {
      const int i = i0 + r;
      float* row_in = rows_in + 8 * r;
      RNNSWEEP_UNROLL
      for (int k = 0; k < kMaxIO; ++k) {
        row_in[k] = k < I ? (1 - a) * params[layout.W_x + i + k * H] : 0.0f;
        // the learning signal's feedback: w^T for e-prop (the true readout), B for RFLO
        row_in[3 + k] =
            k < O ? (rule == Rule::rflo ? c.feedback[size_t(n) * H * O + i + k * H] : params[layout.w + k + i * O]) : 0.0f;
      }
      row_in[6] = s.bias ? (1 - a) * params[layout.b + i] : 0.0f;
      row_in[7] = 0.0f;
    }
  }
  const LossLedger ledger = fused::ledger_at(shared + L.ledger, Bt, O);
  fused::ledger_start<Task, Bt>(ledger, params, layout, s.bias, tid);
  for (int e = tid; e < O * H; e += G::kThreads) w_sh[e] = params[layout.w + e];
  // f_0 = 0 (parity 0), e_0 = 0 (parity 0), q_0 = 0 (parity 0)
  // the H x stride buffers, by name: an array indexed by step parity would live in local memory
  float* const buf0 = shared + L.buf[0];
  float* const buf1 = shared + L.buf[1];
  float* const buf2 = shared + L.buf[2];
  float* const buf3 = shared + L.buf[3];
  float* const buf4 = shared + L.buf[4];  // bptt only
  for (int e = tid; e < H * S; e += G::kThreads) buf0[e] = buf2[e] = 0.0f;
  if (!kBptt)
    for (int e = tid; e < I * Bt; e += G::kThreads) shared[L.qtrace + e] = 0.0f;
  __syncthreads();  // w and the initial state complete

  // romo's loss is normalised by the mask's sum over the whole batch, needed from step 0 on.
  float inv_mask_sum = 1.0f;
  double mask_sum = 1.0;
  if (!classification) {
    double partial = 0;
    for (size_t k = tid; k < out_size; k += G::kThreads) partial += trials.mask[k];
    mask_sum = block_sum(partial, reduce);
    inv_mask_sum = float(1.0 / mask_sum);
  }
  const float inv_steps = float(1.0 / (double(T) * Bt));

  // The thread's own state: rows i0 + r at its columns g kGroup + q kOwnPerGroup + c (c < kOwnPerGroup),
  // entry k = g kOwnPerGroup + c.
  // h lives in registers; f(h) and the e-prop trace of the step before are read back from
  // shared memory (the thread's own entries), which costs two loads and saves 2 kOwn registers.
  float h_own[R][kOwn];
  RNNSWEEP_UNROLL
  for (int r = 0; r < R; ++r) {
    RNNSWEEP_UNROLL
    for (int k = 0; k < kOwn; ++k) h_own[r][k] = 0.0f;
  }
  // dW_h's slice: e-prop sums it in the forward loop; BPTT zeroes it only before its backward
  // loop, so that it occupies no registers during the forward one (H = 128 would spill).
  float dW[R][J];
  auto zero_dW = [&] {
    RNNSWEEP_UNROLL
    for (int r = 0; r < R; ++r) {
      RNNSWEEP_UNROLL
      for (int jj = 0; jj < J; ++jj) dW[r][jj] = 0.0f;
    }
  };
  if (!kBptt) zero_dW();
  // The thread's sums of dW_x [0, I), dw [I, I + O) and db [I + O] over the steps so far, slot k
  // at partials[k threads + tid] (consecutive lanes, consecutive banks); each step adds its own in
  // one go. In shared memory: registers are for the step products. One row a thread: its row's
  // sums over its own columns. Two rows: the sums of row i0 + (q & 1) over its own columns and its
  // pair lane's (q ^ 1), which swap their other row's for one shuffle a slot, so that the slots
  // take half the memory (with kStepBuffers, what lets 2af's and dms's blocks fit 4 to a
  // multiprocessor at H = 64, batch 32) and the step adds to half as many. Combined across the row's lanes at the end.
  constexpr int kSlots = I + O + 1;
  float* partials = shared + L.partials + tid;
  RNNSWEEP_UNROLL
  for (int k = 0; k < kSlots; ++k) partials[k * G::kThreads] = 0.0f;
  // step[r]: this step's sums of row i0 + r, in the slots' order
  auto add_partials = [&](const float (&step)[R][kSlots]) {
    RNNSWEEP_UNROLL
    for (int k = 0; k < kSlots; ++k) {
      float mine = step[0][k];
      if constexpr (R == 2) {
        const bool odd = (q & 1) != 0;  // keeps row i0 + 1's, sends row i0's
        mine = (odd ? step[1][k] : step[0][k]) + __shfl_xor_sync(0xffffffffu, odd ? step[0][k] : step[1][k], 1);
      }
      partials[k * G::kThreads] += mine;
    }
  };
  auto slots_of = [](float (&slots)[kSlots], const float (&gWx)[kMaxIO], const float (&gw)[kMaxIO], float gb) {
    RNNSWEEP_UNROLL
    for (int k = 0; k < kMaxIO; ++k) {
      if (k < I) slots[k] = gWx[k];
      if (k < O) slots[I + k] = gw[k];
    }
    slots[I + O] = gb;
  };
  float bias_trace = 0.0f;  // e-prop's trace of the bias input, the same for every unit and trial
  float* history = kBptt ? c.history + size_t(n) * (T + 1) * H * Bt : nullptr;
  if (kBptt) {  // f(h_0) = 0: the thread's own entries of the history's first step
    RNNSWEEP_UNROLL
    for (int r = 0; r < R; ++r) {
      RNNSWEEP_UNROLL
      for (int g = 0; g < kGroups; ++g)
        store_own<G>(history + size_t(i0 + r) * Bt + g * kGroup + q * kOwnPerGroup, h_own[r]);
    }
  }
  float* gsteps = shared + L.gsteps;
  float* gwarp = shared + L.gwarp + size_t(warp) * O * Bt;

  // Where the thread's own entries of f sit against e's (Geometry::f_at): the same for every group
  // and for both rows of a pair (2p and 2p + 1 agree in bit Q / 2 >= 2).
  static_assert(R == 1 || Q >= 4, "a row pair's f swap is one");
  const int f_shift = G::f_at(i0, q * kOwnPerGroup) - (i0 * S + q * kOwnPerGroup);
  for (int t = 0; t < T; ++t) {
    const bool odd = t % 2 != 0;
    float* const f_cur = odd ? buf1 : buf0;  // f(h_t); after the barrier, e-prop's L_t
    float* f_next = odd ? buf0 : buf1;
    const float* e_cur = odd && !G::kOneTrace ? buf3 : buf2;
    float* e_next = odd || G::kOneTrace ? buf2 : buf3;
    const float* x_t = trials.x + size_t(t) * Bt * I;
    const float* x_own = x_t + q * kOwnPerGroup * I;  // the thread's columns' inputs, + g kGroup I
    // h_{t+1} = a h_t + (1 - a)(W_h f(h_t) + W_x x_t + b), the thread's own entries.
    RNNSWEEP_UNROLL
    for (int g = 0; g < kGroups; ++g) {
      float acc[R][kGroup];
      row_product<G>(RowSlices<kRegRows, J, G::kThreads>{Wr, w_slice}, f_cur + g * kGroup, q, acc);
      float x_pair[kOwnPerGroup][kMaxIO];
      load_inputs<I>(x_own + g * kGroup * I, x_pair);
      RNNSWEEP_UNROLL
      for (int r = 0; r < R; ++r) {
        const int i = i0 + r;
        ReduceScatter<Q / 2, kGroup, kGroup, G::kSwapHalves>::run(acc[r], q);
        const int own_at = i * S + g * kGroup + q * kOwnPerGroup;  // e's
        const int f_own_at = own_at + f_shift;
        float f_prev[kOwnPerGroup], e_prev[kOwnPerGroup], f_new[kOwnPerGroup], e_new[kOwnPerGroup];
        constexpr bool kTraceHere = !kBptt && !G::kOneTrace;  // else after the barrier
        if (kTraceHere) {
          load_own<G>(f_cur + f_own_at, f_prev);
          load_own<G>(e_cur + own_at, e_prev);
        }
        RNNSWEEP_UNROLL
        for (int c2 = 0; c2 < kOwnPerGroup; ++c2) {
          const int k = g * kOwnPerGroup + c2;
          const float4 r0 = reinterpret_cast<const float4*>(rows_in + 8 * r)[0],
                       r1 = reinterpret_cast<const float4*>(rows_in + 8 * r)[1];
          const float Wx[3] = {r0.x, r0.y, r0.z};
          float drive = r1.z;  // (1 - a) (W_x x + b)
          RNNSWEEP_UNROLL
          for (int kk = 0; kk < kMaxIO; ++kk)
            if (kk < I) drive += Wx[kk] * x_pair[c2][kk];
          h_own[r][k] = a * h_own[r][k] + ((1 - a) * acc[r][c2] + drive);
          if (kTraceHere) e_new[c2] = a * e_prev[c2] + f_prev[c2];  // e_{t+1} / (1 - a), from f(h_t)
          f_new[c2] = h_own[r][k] > 0 ? h_own[r][k] : 0.0f;
        }
        store_own<G>(f_next + f_own_at, f_new);
        if (kTraceHere) store_own<G>(e_next + own_at, e_new);
        if (kBptt) store_own<G>(history + (size_t(t + 1) * H + i) * Bt + g * kGroup + q * kOwnPerGroup, f_new);
      }
    }
    if (!kBptt) {
      bias_trace = a * bias_trace + (1 - a);
      // q_{t+1}, read after the barrier (in place: kOneTrace)
      fused::advance_input_trace<I, Bt, G::kThreads>(shared + L.qtrace + size_t(t % G::kStepBuffers) * I * Bt,
                                                     shared + L.qtrace + size_t((t + 1) % G::kStepBuffers) * I * Bt,
                                                     x_t, a, tid);
    }
    __syncwarp();  // the warp's own rows of f_{t+1} are complete
    // this warp's share of y_t = w f(h_{t+1}): its own rows, lane = batch column
    float* ypart = shared + L.ypart + size_t(t % G::kStepBuffers) * kWarps * O * Bt;
    RNNSWEEP_UNROLL
    for (int r = 0; r < G::kLaneColumns; ++r) {
      const int b = lane + 32 * r;
      if (b < Bt) {
        float part[kMaxIO] = {0, 0, 0};
        RNNSWEEP_UNROLL
        for (int rr = 0; rr < G::kRowsPerWarp; ++rr) {
          const int row = warp * G::kRowsPerWarp + rr;
          // f_at(row, b); where a warp holds whole multiples of Q rows, its swap is known from rr
          constexpr bool kKnown = G::kRowsPerWarp % Q == 0;
          const float fv = kKnown ? f_next[row * S + (G::kSwapHalves && ((rr % Q) & (Q / 2)) ? b ^ (kGroup / 2) : b)]
                                  : f_next[G::f_at(row, b)];
          RNNSWEEP_UNROLL
          for (int o = 0; o < kMaxIO; ++o)
            if (o < O) part[o] += w_sh[o + row * O] * fv;
        }
        RNNSWEEP_UNROLL
        for (int o = 0; o < kMaxIO; ++o)
          if (o < O) ypart[(size_t(warp) * O + o) * Bt + b] = part[o];
      }
    }
    fused::StepTargets<Task, Bt> targets;  // the tail's trial data, loaded during the barrier's wait
    if constexpr (G::kPrefetchTargets) targets.load(trials, t, lane);
    __syncthreads();  // the step's barrier (kOneTrace: its first): f_{t+1}, e_{t+1} (not kOneTrace), q_{t+1}, the partial outputs
    if constexpr (!G::kPrefetchTargets) targets.load(trials, t, lane);
    if (!kBptt && G::kOneTrace) {  // e_{t+1} = a e_t + (1 - a) f(h_t), the thread's own entries (kept / (1 - a))
      RNNSWEEP_UNROLL
      for (int r = 0; r < R; ++r) {
        RNNSWEEP_UNROLL
        for (int g = 0; g < kGroups; ++g) {
          const int own_at = (i0 + r) * S + g * kGroup + q * kOwnPerGroup;
          float f_prev[kOwnPerGroup], e_own[kOwnPerGroup];
          load_own<G>(f_cur + own_at + f_shift, f_prev);
          load_own<G>(e_next + own_at, e_own);
          RNNSWEEP_UNROLL
          for (int c2 = 0; c2 < kOwnPerGroup; ++c2) e_own[c2] = a * e_own[c2] + f_prev[c2];  // (scaled, below)
          store_own<G>(e_next + own_at, e_own);
        }
      }
    }

    // Loss of step t and dL/dy_t, in every warp; warp 0 keeps the sums.
    fused::step_tail<Task, Bt, kWarps, kBptt>(t, lane, warp, ypart, ledger, targets, inv_mask_sum, inv_steps, gwarp,
                                              gsteps);
    __syncwarp();  // the warp's copy of dL/dy_t is complete
    // dw += dL/dy_t f(h_{t+1})^T (exact for every rule); e-prop: the learning signal L_t.
    // L_t in f(h_t)'s buffer, whose rows every warp read before the barrier and which the next
    // step overwrites (f(h_{t+2})): each warp writes and reads only its own rows of it (after
    // the trace above has read the thread's own f(h_t)).
    float* signal = f_cur;
    const float* q_next = shared + L.qtrace + size_t((t + 1) % G::kStepBuffers) * I * Bt;
    // Column pair by column pair: a group's own columns b0, b0 + 1 of dL/dy_t and q_{t+1} are
    // read once, as float2, for both rows of a thread.
    float fb[R][kMaxIO];  // the rows' feedback
    RNNSWEEP_UNROLL
    for (int r = 0; r < R; ++r) {
      const float4 r0 = reinterpret_cast<const float4*>(rows_in + 8 * r)[0],
                   r1 = reinterpret_cast<const float4*>(rows_in + 8 * r)[1];
      fb[r][0] = r0.w, fb[r][1] = r1.x, fb[r][2] = r1.y;
    }
    float step_sums[R][kSlots];  // this step's, in the slots' order (dW_x, dw, db)
    RNNSWEEP_UNROLL
    for (int r = 0; r < R; ++r) {
      RNNSWEEP_UNROLL
      for (int k = 0; k < kSlots; ++k) step_sums[r][k] = 0.0f;
    }
    RNNSWEEP_UNROLL
    for (int g = 0; g < kGroups; ++g) {
      const int b0 = g * kGroup + q * kOwnPerGroup;
      float gv[kMaxIO][kOwnPerGroup], qv[kMaxIO][kOwnPerGroup];
      RNNSWEEP_UNROLL
      for (int o = 0; o < kMaxIO; ++o)
        if (o < O) load_own<G>(gwarp + o * Bt + b0, gv[o]);
      RNNSWEEP_UNROLL
      for (int kk = 0; kk < kMaxIO; ++kk)
        if (!kBptt && kk < I) load_own<G>(q_next + kk * Bt + b0, qv[kk]);
      RNNSWEEP_UNROLL
      for (int r = 0; r < R; ++r) {
        float signal_own[kOwnPerGroup];
        RNNSWEEP_UNROLL
        for (int c2 = 0; c2 < kOwnPerGroup; ++c2) {
          const float h = h_own[r][g * kOwnPerGroup + c2];
          float drive = 0.0f;
          RNNSWEEP_UNROLL
          for (int o = 0; o < kMaxIO; ++o) {
            if (o >= O) continue;
            step_sums[r][I + o] += gv[o][c2] * (h > 0 ? h : 0.0f);  // dw: dL/dy_t f(h_{t+1})
            drive += fb[r][o] * gv[o][c2];
          }
          signal_own[c2] = h > 0 ? drive : 0.0f;  // e-prop's L_t = f'(h_{t+1}) (feedback dL/dy_t)
          if (!kBptt) {
            step_sums[r][I + O] += bias_trace * signal_own[c2];
            RNNSWEEP_UNROLL
            for (int kk = 0; kk < kMaxIO; ++kk)
              if (kk < I) step_sums[r][kk] += signal_own[c2] * qv[kk][c2];
          }
        }
        if (!kBptt) store_own<G>(signal + (i0 + r) * S + b0, signal_own);
      }
    }
    add_partials(step_sums);
    if (!kBptt) {
      if constexpr (G::kOneTrace)
        __syncthreads();  // the step's second barrier: every row of e_{t+1} (and the warp's of L_t)
      else
        __syncwarp();  // the warp's rows of L_t are complete
      // dW_h += L_t e_{t+1}^T: rows i0 .. of L against the rows of e_{t+1} this thread holds
      RNNSWEEP_UNROLL
      for (int g = 0; g < kGroups; ++g) rank_update<G>(signal + i0 * S + g * kGroup, e_next + g * kGroup, q, dW);
      __syncwarp();  // the row's lanes are done with L_t before the next step writes f(h_{t+2}) there
    }
  }

  // Loss and accuracy of the iteration, from warp 0's lanes.
  const int nn = *static_cast<volatile int*>(misc + 1);  // == n, without a register through the loop
  if (warp == 0) fused::iteration_loss<Task>(c, nn, iteration, log_slot, ledger, mask_sum, T, Bt, lane, misc);
  __syncthreads();  // the verdict on the loss
  if (misc[0] == 0) return;  // frozen, as on the CPU
  float* const params_end = c.params + size_t(nn) * P;

  // The (1 - a) factors applied once to the sums: BPTT's, and e-prop's of dW_h, whose trace the
  // steps keep as e / (1 - a) (a e + f(h) is one fused multiply-add, a e + (1 - a) f(h) two
  // operations; the CPU's e up to rounding).
  const float scale_Wh = 1 - a;
  float scale_W = 1.0f;  // W_x's and the bias's
  if (kBptt) {
    scale_W = 1 - a;
    // delta_{t+1} = f'(h_{t+1}) (w^T dL/dy_t + (1 - a) W_h^T delta_{t+2}) + a delta_{t+2}, from
    // t = T - 1 down, delta_{T+1} = 0 (host/cpu/bptt.cpp). W_h^T's slice replaces W_h's.
    // W_h^T's slice, W_h(j, i) for the thread's j, in shared memory (registers hold dW_h and the
    // deltas; the slice streams in four at a time, each thread its own: no barrier needed)
    float4* wt = reinterpret_cast<float4*>(shared + L.wt) + tid;
    RNNSWEEP_UNROLL
    for (int r = 0; r < R; ++r) {
      const int i = i0 + r;
      RNNSWEEP_UNROLL
      for (int jq = 0; jq < J / 4; ++jq)
        wt[(r * (J / 4) + jq) * G::kThreads] = make_float4(params_end[layout.W_h + ((4 * jq + 0) * Q + q) + i * H],
                                                           params_end[layout.W_h + ((4 * jq + 1) * Q + q) + i * H],
                                                           params_end[layout.W_h + ((4 * jq + 2) * Q + q) + i * H],
                                                           params_end[layout.W_h + ((4 * jq + 3) * Q + q) + i * H]);
    }
    // f(h_t) of every step is staged from the history into shared memory by asynchronous copies
    // (each thread its own entries), a step ahead, into three buffers by t mod 3: the copy for
    // step t - 1 is in flight during step t while step t's buffer is read after its barrier,
    // and step t + 1's was last read before it. f'(h_{t+1}) comes from the staged f(h_{t+1}).
    zero_dW();
    float d_own[R][kOwn];
    RNNSWEEP_UNROLL
    for (int r = 0; r < R; ++r) {
      RNNSWEEP_UNROLL
      for (int k = 0; k < kOwn; ++k) d_own[r][k] = 0.0f;
    }
    auto stage = [&](int s) -> float* { return s % 3 == 0 ? buf2 : s % 3 == 1 ? buf3 : buf4; };
    auto stage_async = [&](int s) {  // f(h_s) -> stage(s), the thread's own entries
      RNNSWEEP_UNROLL
      for (int r = 0; r < R; ++r) {
        RNNSWEEP_UNROLL
        for (int g = 0; g < kGroups; ++g)
          __pipeline_memcpy_async(stage(s) + (i0 + r) * S + g * kGroup + q * kOwnPerGroup,
                                  history + (size_t(s) * H + i0 + r) * Bt + g * kGroup + q * kOwnPerGroup,
                                  sizeof(float) * kOwnPerGroup);
      }
      __pipeline_commit();
    };
    const float no_registers[1][4] = {};  // W_h^T's slice is all in shared memory
    float* d_last = (T + 1) % 2 ? buf1 : buf0;  // delta_{T+1} = 0
    for (int e = tid; e < H * S; e += G::kThreads) d_last[e] = 0.0f;
    stage_async(T);
    stage_async(T - 1);
    __pipeline_wait_prior(0);
    __syncthreads();  // delta_{T+1} is zero everywhere, f(h_T) and f(h_{T-1}) are staged
    for (int t = T - 1; t >= 0; --t) {
      const bool odd = t % 2 != 0;
      const float* d_cur = odd ? buf1 : buf0;  // delta_{t+2}
      float* d_new = odd ? buf0 : buf1;        // delta_{t+1}
      const float* f_next = stage(t + 1);      // f(h_{t+1}): the thread's own entries for f'
      const float* f_t = stage(t);             // f(h_t), for the rank update after the barrier
      if (t > 0) stage_async(t - 1);
      const float* g_t = gsteps + size_t(t) * O * Bt;
      const float* x_own = trials.x + size_t(t) * Bt * I + q * kOwnPerGroup * I;  // + g kGroup I
      // this step's sums, per row (no dw here)
      float gWx[R][kMaxIO] = {}, gb[R] = {};
      const float gw[kMaxIO] = {0, 0, 0};
      RNNSWEEP_UNROLL
      for (int g = 0; g < kGroups; ++g) {
        float acc[R][kGroup];
        row_product<G>(RowSlices<0, J, G::kThreads>{no_registers, wt}, d_cur + g * kGroup, q, acc);
        float x_pair[kOwnPerGroup][kMaxIO], g_pair[kMaxIO][kOwnPerGroup];  // x_t, dL/dy_t of the own columns
        load_inputs<I>(x_own + g * kGroup * I, x_pair);
        RNNSWEEP_UNROLL
        for (int o = 0; o < kMaxIO; ++o)
          if (o < O) load_own<G>(g_t + o * Bt + g * kGroup + q * kOwnPerGroup, g_pair[o]);
        RNNSWEEP_UNROLL
        for (int r = 0; r < R; ++r) {
          const int i = i0 + r;
          ReduceScatter<Q / 2, kGroup, kGroup>::run(acc[r], q);  // delta: no swapped halves
          float f_own[kOwnPerGroup];
          load_own<G>(f_next + i * S + g * kGroup + q * kOwnPerGroup, f_own);
          RNNSWEEP_UNROLL
          for (int c2 = 0; c2 < kOwnPerGroup; ++c2) {
            const int k = g * kOwnPerGroup + c2;
            float direct = 0.0f;
            RNNSWEEP_UNROLL
            for (int o = 0; o < kMaxIO; ++o)
              if (o < O) direct += w_sh[o + i * O] * g_pair[o][c2];
            const bool active = f_own[c2] > 0;
            d_own[r][k] = (active ? direct + (1 - a) * acc[r][c2] : 0.0f) + a * d_own[r][k];
            gb[r] += d_own[r][k];
            RNNSWEEP_UNROLL
            for (int kk = 0; kk < kMaxIO; ++kk)
              if (kk < I) gWx[r][kk] += d_own[r][k] * x_pair[c2][kk];
          }
          store_own<G>(d_new + i * S + g * kGroup + q * kOwnPerGroup, d_own[r] + g * kOwnPerGroup);
        }
      }
      float step_sums[R][kSlots];
      RNNSWEEP_UNROLL
      for (int r = 0; r < R; ++r) slots_of(step_sums[r], gWx[r], gw, gb[r]);
      add_partials(step_sums);
      __pipeline_wait_prior(t > 0 ? 1 : 0);  // f(h_t)'s copy has landed; f(h_{t-1})'s may fly on
      __syncthreads();  // the step's one barrier: delta_{t+1} and f(h_t) staged
      // dW_h += delta_{t+1} f(h_t)^T (the (1 - a) at the end)
      RNNSWEEP_UNROLL
      for (int g = 0; g < kGroups; ++g) rank_update<G>(d_new + i0 * S + g * kGroup, f_t + g * kGroup, q, dW);
    }
  }

  // Combine the per-thread sums across the row's lanes, then PyTorch's Adam (host/cpu/adam.h).
  // the network's index again, read back rather than kept through the backward loop
  const fused::OptimizerStep opt(c, *static_cast<volatile int*>(misc + 1), iteration, bias_correction1,
                                 bias_correction2);
  auto update = [&opt](int e, float gr) { opt.update(e, gr); };
  RNNSWEEP_UNROLL
  for (int r = 0; r < R; ++r) {
    RNNSWEEP_UNROLL
    for (int jj = 0; jj < J; ++jj) update(layout.W_h + i0 + r + (jj * Q + q) * H, dW[r][jj] * scale_Wh);
  }
  {  // lanes q < R: the totals of row i0 + q (the slots of row i0 + (q & 1) summed over the lanes
     // that hold them, q ^ 2, q ^ 4, ... for two rows)
    float total[kSlots];
    RNNSWEEP_UNROLL
    for (int k = 0; k < kSlots; ++k) {
      total[k] = partials[k * G::kThreads];
      RNNSWEEP_UNROLL
      for (int s = Q / 2; s >= R; s /= 2) total[k] += __shfl_xor_sync(0xffffffffu, total[k], s);
    }
    const int i = i0 + q;
    if (q < R) {
      RNNSWEEP_UNROLL
      for (int k = 0; k < kMaxIO; ++k) {
        if (k < I) update(layout.W_x + i + k * H, total[k] * scale_W);
        if (k < O) update(layout.w + k + i * O, total[I + k]);
      }
      if (c.shape.bias) update(layout.b + i, total[I + O] * scale_W);
    }
  }
  if (warp == 0) {
    RNNSWEEP_UNROLL
    for (int k = 0; k < O; ++k) {
      float part = 0.0f;
      for (int b = lane; b < Bt; b += 32) part += ledger.db_out[k * Bt + b];
      const float total = warp_sum(part);
      if (c.shape.bias && lane == 0) update(layout.b_out + k, total);
    }
  }
}

// ---- the instances ----
// Every (H, Bt) with a register instance, its lanes per row Q and the rows R a thread of e-prop
// and RFLO takes (on every task): enough lanes that a thread owns at most 8 batch columns
// (registers), few enough that its slice of W_h is >= 8 columns; two rows a thread where the
// block of H Q / 2 threads still leaves 16 warps per multiprocessor (kernel_report.py: at H = 64,
// batch 64 two rows spill; at H = 128 one row's 512 threads already take every register).
// BPTT takes one row everywhere: its dL/dy of every step and staged history do not leave room
// for twice the blocks.
#define RNNSWEEP_REGISTER_INSTANCES(X) \
  X(32, 16, 4, 2)                      \
  X(32, 32, 4, 2)                      \
  X(32, 64, 8, 2)                      \
  X(64, 16, 4, 2)                      \
  X(64, 32, 4, 2)                      \
  X(64, 64, 8, 1)                      \
  X(128, 16, 4, 1)                     \
  X(128, 32, 4, 1)

template <class G, bool kBptt, class Task>
void launch_kernel(const TrainChunk& chunk, std::uint32_t iteration, int log_slot, double bc1, double bc2,
                   cudaStream_t stream) {
  const size_t bytes = registers_layout<G>(chunk.T, Task::I, Task::O, kBptt).total * sizeof(float);
  // named, so that the launch macro sees one argument (and race reports name the family)
  if constexpr (kBptt) {
    const auto train_registers_bptt = &train_registers_kernel<G, true, Task>;
    CUDA_CHECK(cudaFuncSetAttribute(train_registers_bptt, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    RNNSWEEP_LAUNCH(train_registers_bptt, chunk.K, G::kThreads, bytes, stream)(chunk, iteration, log_slot, bc1, bc2);
  } else {
    const auto train_registers_eprop = &train_registers_kernel<G, false, Task>;
    CUDA_CHECK(cudaFuncSetAttribute(train_registers_eprop, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    RNNSWEEP_LAUNCH(train_registers_eprop, chunk.K, G::kThreads, bytes, stream)(chunk, iteration, log_slot, bc1, bc2);
  }
  CUDA_CHECK(cudaGetLastError());
}

// One line of the table: f(G, bptt, Task) with the geometry and task type of a rule family.
template <int H, int Bt, int Q, int R>
struct Instance {
  template <class F>
  static void visit(bool bptt, bool choice, F&& f) {
    if (bptt && choice) f(Geometry<H, Bt, Q, 1>{}, std::true_type{}, Choice{});
    if (bptt && !choice) f(Geometry<H, Bt, Q, 1>{}, std::true_type{}, Regression{});
    if (!bptt && choice) f(Geometry<H, Bt, Q, R>{}, std::false_type{}, Choice{});
    if (!bptt && !choice) f(Geometry<H, Bt, Q, R>{}, std::false_type{}, Regression{});
  }
};

// Calls f(G, bptt, Task) for the instance of (H, Bt) and the family; false where none exists.
template <class F>
bool visit_instance(int H, int Bt, bool bptt, bool choice, F&& f) {
#define RNNSWEEP_VISIT(h, bt, q, r)                  \
  if (H == h && Bt == bt) {                          \
    Instance<h, bt, q, r>::visit(bptt, choice, f);   \
    return true;                                     \
  }
  RNNSWEEP_REGISTER_INSTANCES(RNNSWEEP_VISIT)
#undef RNNSWEEP_VISIT
  return false;
}

bool is_choice(const Shape& shape) { return shape.I == Choice::I && shape.O == Choice::O; }

std::string no_instance(const char* where, const Shape& shape, int Bt) {
  return std::string(where) + ": no register instance for H = " + std::to_string(shape.H) + ", batch " +
         std::to_string(Bt);
}

}  // namespace

bool registers_instance_exists(const Shape& shape, int Bt) {
  const bool regression = shape.I == Regression::I && shape.O == Regression::O;
  if (!regression && !is_choice(shape)) return false;
  return visit_instance(shape.H, Bt, false, false, [](auto, auto, auto) {});
}

int registers_threads(const Shape& shape, int Bt, bool bptt) {
  int threads = 0;
  if (!visit_instance(shape.H, Bt, bptt, is_choice(shape), [&](auto g, auto, auto) { threads = decltype(g)::kThreads; }))
    throw std::invalid_argument(no_instance("registers_threads", shape, Bt));
  return threads;
}

size_t registers_shared_bytes(const Shape& shape, int Bt, int T, bool bptt) {
  size_t bytes = 0;
  if (!visit_instance(shape.H, Bt, bptt, is_choice(shape), [&](auto g, auto, auto) {
        bytes = registers_layout<decltype(g)>(T, shape.I, shape.O, bptt).total * sizeof(float);
      }))
    throw std::invalid_argument(no_instance("registers_shared_bytes", shape, Bt));
  return bytes;
}

void launch_train_registers(const TrainChunk& chunk, bool bptt, std::uint32_t iteration, int log_slot,
                            double bias_correction1, double bias_correction2, cudaStream_t stream) {
  if (!registers_instance_exists(chunk.shape, chunk.Bt))
    throw std::invalid_argument(no_instance("launch_train_registers", chunk.shape, chunk.Bt));
  if (bptt && !chunk.history) throw std::invalid_argument("launch_train_registers: bptt needs the history");
  const bool choice = chunk.task.classification();
  if (choice != is_choice(chunk.shape))
    throw std::invalid_argument("launch_train_registers: no register instance for this task's inputs and outputs");
  visit_instance(chunk.shape.H, chunk.Bt, bptt, choice, [&](auto g, auto family, auto task) {
    launch_kernel<decltype(g), decltype(family)::value, decltype(task)>(chunk, iteration, log_slot, bias_correction1,
                                                                        bias_correction2, stream);
  });
}

}  // namespace rnnsweep::cuda
