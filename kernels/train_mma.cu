// The training step on tensor cores, precision = "tf32x3" (kernels/train_mma.cuh). CPU twins:
// host/cpu/model.cpp (forward, loss), host/cpu/bptt.cpp, host/cpu/eprop.cpp, host/cpu/adam.h. Its
// FP32 twin is kernels/train_registers.cu, whose plan this follows: one network per block, one
// barrier per time step, the step's tail in every warp (kernels/train_fused.cuh).
//
// What differs is who owns what, chosen by the mma.sync m16n8k8 fragments:
// - Warp (mw, nw) owns rows 16 mw .. 16 mw + 15 and batch columns 16 nw .. 16 nw + 15 of the
//   state; lane (g, c) = (lane / 4, lane % 4) owns rows 16 mw + g and + 8 at columns
//   16 nw + 8 nt + 2 c and + 1 (nt = 0, 1): the accumulator (D) entries of the forward product
//   W_h f over the warp's two 8-column tiles. h, the e-prop learning signal and BPTT's delta of
//   those 8 entries live in the lane's registers.
// - The forward product's A operand is W_h itself, its fragments of the warp's rows held in
//   registers for the whole iteration as FP32 (H / 2 floats a lane) and split each step; BPTT's
//   backward product holds W_h^T's the same way. The k index of a product may be permuted as
//   long as A and B agree: slot c of a k-tile is column 8 kt + 2 c, slot c + 4 column 8 kt + 2 c
//   + 1, so that a lane's two B values are adjacent in memory (one 64-bit shared load) and, with
//   rows padded to 8 mod 32 floats, the warp's loads are free of bank conflicts.
// - The rank-Bt updates of dW_h (e-prop: L e^T, BPTT: delta f^T) sum over the warp's own batch
//   columns only: with the same slot order their A operand is exactly the lane's own entries
//   of L or delta (no shared memory, no wait for other warps), and B is e or f read as 64-bit
//   loads. Each warp sums a partial dW_h of its 16 rows and every column (H / 2 floats a lane);
//   the Bt / 16 warps of a row block combine theirs once, at the end, in a fixed order.
// - 3xTF32: a = a_hi + a_lo with both parts TF32 (round to nearest), and
//   a b ~ a_lo b_hi + a_hi b_lo + a_hi b_hi (the small terms first; a_lo b_lo, about 2^-22 of
//   a b, is dropped). Products of TF32 values are exact, sums are FP32: the result is as
//   accurate as FP32 FMA chains, in another order. docs/precision.md has the measured accuracy.
// The arrays read across warps are double buffered by step parity, as in train_registers.cu:
// f(h) and delta as [batch][unit] (the B operands of the products), e and the staged f(h_t) of
// BPTT's backward as [unit][batch] (the B operands of the rank updates).
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/block_ops.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/train_fused.cuh"
#include "kernels/train_mma.cuh"

namespace rnnsweep::cuda {
namespace {

using fused::Choice;
using fused::kMaxIO;
using fused::LossLedger;
using fused::Regression;

template <int kH, int kBt>
struct MmaGeometry {
  static constexpr int H = kH, Bt = kBt;
  static constexpr int kRowBlocks = H / 16;  // warp (mw, nw): rows 16 mw .., columns 16 nw ..
  static constexpr int kColBlocks = Bt / 16;
  static constexpr int kWarps = kRowBlocks * kColBlocks;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kKTiles = H / 8;   // k-tiles of the products over units; n-tiles of dW_h
  static constexpr int kStride = Bt + 8;  // [unit][batch] arrays: e, the staged f
  static constexpr int kStrideT = H + 8;  // [batch][unit] arrays: f, delta
  // W_h's (and W_h^T's) fragments in registers as FP32 where they fit beside dW_h's (H = 32);
  // at H = 64 they would spill, so they sit in shared memory (the warps of a row block read the
  // same ones): e-prop's already split into TF32 hi and lo (two 128-bit loads per k-tile), BPTT's
  // as FP32 (one load, split at use), which halves them so that two blocks fit a multiprocessor.
  static constexpr bool kWInRegisters = H <= 32;
  static constexpr int WordsPerFragment(bool bptt) { return bptt ? 4 : 8; }
  // The step tail's targets loaded before the step's barrier (their latency hidden by the wait),
  // where the registers allow: with W_h's fragments in registers (H = 32) they would spill.
  static constexpr bool kPrefetchTargets = !kWInRegisters;
  // Blocks per multiprocessor to ask the compiler for: 16 warps at most 128 registers each.
  static constexpr int kMinBlocks = kThreads >= 512 ? 1 : 512 / kThreads;
  static_assert(H % 16 == 0 && Bt % 16 == 0 && kThreads <= 1024, "whole tiles");
};

// Offsets in floats of the block's dynamic shared memory.
struct MmaShared {
  size_t ft[2];    // Bt x strideT each: f(h) by step parity; delta in BPTT's backward pass
  size_t uj[3];    // H x stride each: e (two parities) or BPTT's staged f (three); after the
                   // loops, the H x H sums of dW_h across a row block's warps
  size_t w;        // O x H: the readout
  size_t ypart;    // 2 x row blocks x O x Bt: the row blocks' partial outputs, by step parity
  size_t gwarp;    // warps x O x Bt: each warp's own copy of dL/dy_t
  size_t qtrace;   // 2 x I x Bt: e-prop's input trace, by step parity
  size_t reduce;   // 64 floats: block_sum's scratch
  size_t ledger;   // the loss terms (fused::LossLedger)
  size_t rows;     // H x 8: each row's input weights (3), feedback (3) and bias
  size_t partials; // 14 x threads: each lane's sums of dW_x, dw, db of its two rows
  size_t wfrag;    // H = 64: W_h's (W_h^T's) fragments, [row block][k-tile][hi, lo][lane] as uint4
                   // (e-prop), [row block][k-tile][lane] as float4 (bptt)
  size_t misc;     // 4 ints: the verdict on the loss, the network's index
  size_t gsteps;   // T x O x Bt: dL/dy of every step (bptt)
  size_t total;
};

template <class G>
RNNSWEEP_HD MmaShared mma_layout(int T, int I, int O, bool bptt) {
  MmaShared L{};
  SharedCarver<float> carve;  // 16-byte aligned arrays
  L.reduce = carve.take(64);  // first: 8-byte aligned doubles
  for (int k = 0; k < 2; ++k) L.ft[k] = carve.take(size_t(G::Bt) * G::kStrideT);
  // uj[0..3) contiguous: the dW_h sums, when a row block has several warps, reuse them
  const size_t uj = size_t(G::H) * G::kStride, uj_count = bptt ? 3 : 2;
  const size_t uj_floats = G::kColBlocks > 1 && size_t(G::H) * G::H > uj_count * uj ? size_t(G::H) * G::H : uj_count * uj;
  const size_t uj_start = carve.take(uj_floats);
  for (int k = 0; k < 3; ++k) L.uj[k] = uj_start + k * uj;
  L.w = carve.take(size_t(O) * G::H);
  L.ypart = carve.take(2 * size_t(G::kRowBlocks) * O * G::Bt);
  L.gwarp = carve.take(size_t(G::kWarps) * O * G::Bt);
  L.qtrace = carve.take(bptt ? 0 : 2 * size_t(I) * G::Bt);
  L.ledger = carve.take(fused::ledger_floats(G::Bt, O));
  L.rows = carve.take(8 * size_t(G::H));
  L.partials = carve.take(14 * size_t(G::kThreads));
  L.wfrag = carve.take(G::kWInRegisters ? 0 : size_t(G::kRowBlocks) * G::kKTiles * 32 * G::WordsPerFragment(bptt));
  L.misc = carve.take(4);
  L.gsteps = carve.take(bptt ? size_t(T) * O * G::Bt : 0);  // last: its size is known only at run time
  L.total = carve.size();
  return L;
}

// x = hi + lo, both TF32 (hi rounded to nearest, lo the rounded remainder).
RNNSWEEP_DEVICE void split_tf32(float x, std::uint32_t& hi, std::uint32_t& lo) {
  hi = to_tf32(x);
  lo = to_tf32(x - tf32_value(hi));
}

// d += A B in 3xTF32: the small terms first.
RNNSWEEP_DEVICE void mma_3xtf32(float (&d)[4], const std::uint32_t (&a_hi)[4], const std::uint32_t (&a_lo)[4],
                                float b0, float b1) {
  std::uint32_t b_hi[2], b_lo[2];
  split_tf32(b0, b_hi[0], b_lo[0]);
  split_tf32(b1, b_hi[1], b_lo[1]);
  mma_tf32(d, a_lo, b_hi);
  mma_tf32(d, a_hi, b_lo);
  mma_tf32(d, a_hi, b_hi);
}

// A's fragments of k-tile kt, split into TF32 hi and lo: from FP32 registers, split here ...
template <int KT>
struct RegisterFrags {
  const float (&A)[KT][4];
  RNNSWEEP_DEVICE void operator()(int kt, std::uint32_t (&hi)[4], std::uint32_t (&lo)[4]) const {
    RNNSWEEP_UNROLL
    for (int e = 0; e < 4; ++e) split_tf32(A[kt][e], hi[e], lo[e]);
  }
};
// ... or from shared memory as FP32, split here: frags[kt 32] is the lane's float4 of k-tile kt ...
struct SharedFp32Frags {
  const float4* frags;
  RNNSWEEP_DEVICE void operator()(int kt, std::uint32_t (&hi)[4], std::uint32_t (&lo)[4]) const {
    const float4 v = frags[kt * 32];
    split_tf32(v.x, hi[0], lo[0]);
    split_tf32(v.y, hi[1], lo[1]);
    split_tf32(v.z, hi[2], lo[2]);
    split_tf32(v.w, hi[3], lo[3]);
  }
};
// ... or from shared memory, split once: frags[(kt 2 + part) 32] is the lane's uint4 of k-tile kt.
struct SharedFrags {
  const uint4* frags;
  RNNSWEEP_DEVICE void operator()(int kt, std::uint32_t (&hi)[4], std::uint32_t (&lo)[4]) const {
    const uint4 h = frags[(2 * kt) * 32], l = frags[(2 * kt + 1) * 32];
    hi[0] = h.x, hi[1] = h.y, hi[2] = h.z, hi[3] = h.w;
    lo[0] = l.x, lo[1] = l.y, lo[2] = l.z, lo[3] = l.w;
  }
};

// acc[nt] = A B over all k-tiles: A's fragments from `frags`, B = rows[(16 nw + 8 nt + g) strideT
// + 8 kt + 2 c .. + 1] (the [batch][unit] layout).
template <class G, class Frags>
RNNSWEEP_DEVICE void step_product(const Frags& frags, const float* rows, int nw, int g, int c, float (&acc)[2][4]) {
  RNNSWEEP_UNROLL
  for (int nt = 0; nt < 2; ++nt)
    RNNSWEEP_UNROLL
    for (int e = 0; e < 4; ++e) acc[nt][e] = 0.0f;
  RNNSWEEP_UNROLL
  for (int kt = 0; kt < G::kKTiles; ++kt) {
    std::uint32_t a_hi[4], a_lo[4];
    frags(kt, a_hi, a_lo);
    RNNSWEEP_UNROLL
    for (int nt = 0; nt < 2; ++nt) {
      const float2 x = *reinterpret_cast<const float2*>(rows + (16 * nw + 8 * nt + g) * G::kStrideT + 8 * kt + 2 * c);
      mma_3xtf32(acc[nt], a_hi, a_lo, x.x, x.y);
    }
  }
}

// dW[nj] += sum over the warp's 16 batch columns of left(row, b) right(8 nj + n, b): left is the
// lane's own 8 entries (the D layout of the forward product, which with the slot order above is
// the A layout of a k-tile per nt), right = cols[(8 nj + g) stride + 16 nw + 8 nt + 2 c .. + 1].
template <class G>
RNNSWEEP_DEVICE void rank_update(const float (&left)[8], const float* cols, int nw, int g, int c,
                                 float (&dW)[G::kKTiles][4]) {
  RNNSWEEP_UNROLL
  for (int nt = 0; nt < 2; ++nt) {
    // A(g, slot c) = (row 0, column 2c), A(g + 8, c) = (row 1, 2c), A(g, c + 4) = (row 0, 2c + 1), ...
    const float a[4] = {left[4 * nt + 0], left[4 * nt + 2], left[4 * nt + 1], left[4 * nt + 3]};
    std::uint32_t a_hi[4], a_lo[4];
    RNNSWEEP_UNROLL
    for (int e = 0; e < 4; ++e) split_tf32(a[e], a_hi[e], a_lo[e]);
    RNNSWEEP_UNROLL
    for (int nj = 0; nj < G::kKTiles; ++nj) {
      const float2 x = *reinterpret_cast<const float2*>(cols + (8 * nj + g) * G::kStride + 16 * nw + 8 * nt + 2 * c);
      mma_3xtf32(dW[nj], a_hi, a_lo, x.x, x.y);
    }
  }
}

template <class G, bool kBptt, class Task>
RNNSWEEP_KERNEL void __launch_bounds__(G::kThreads, G::kMinBlocks)
    train_mma_kernel(TrainChunk c, std::uint32_t iteration, int log_slot, double bias_correction1,
                     double bias_correction2) {
  constexpr int H = G::H, Bt = G::Bt, S = G::kStride, ST = G::kStrideT, KT = G::kKTiles;
  constexpr int I = Task::I, O = Task::O;
  constexpr bool classification = Task::kClassification;
  const int n = blockIdx.x;
  if (c.diverged_at[n] >= 0) return;  // frozen (the whole block leaves together)
  const Rule rule = static_cast<Rule>(c.rule[n]);
  if ((rule == Rule::bptt) != kBptt) return;  // the other family's launch trains it
  if (c.first_iteration && iteration < std::uint32_t(c.first_iteration[n])) return;  // resumed further on

  RNNSWEEP_DYNAMIC_SHARED(float, shared);
  const int T = c.T;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int mw = warp % G::kRowBlocks, nw = warp / G::kRowBlocks, g = lane / 4, cc = lane % 4;
  const int row[2] = {16 * mw + g, 16 * mw + g + 8};
  // own entry k (0 .. 8): n-tile k / 4, row[(k / 2) % 2], column 16 nw + 8 (k / 4) + 2 cc + k % 2
  auto own_col = [&](int k) { return 16 * nw + 8 * (k / 4) + 2 * cc + k % 2; };
  auto own_row = [&](int k) { return row[(k / 2) % 2]; };
  const float a = c.a;
  const ParamLayout layout(Shape{H, I, O, c.shape.bias});
  const MmaShared L = mma_layout<G>(T, I, O, kBptt);
  int* misc = reinterpret_cast<int*>(shared + L.misc);
  if (tid == 0) misc[1] = n;
  const float* params = c.params + size_t(n) * c.P;
  double* reduce = reinterpret_cast<double*>(shared + L.reduce);
  float* w_sh = shared + L.w;

  const size_t x_size = size_t(T) * Bt * I, out_size = size_t(T) * Bt * O;
  const TrialView trials{T,
                         Bt,
                         I,
                         O,
                         c.trial_x + n * x_size,
                         classification ? nullptr : c.trial_target + n * out_size,
                         classification ? nullptr : c.trial_mask + n * out_size,
                         classification ? c.trial_label + size_t(n) * T * Bt : nullptr};

  // W_h's fragments of the warp's rows: A(g, slot c) of k-tile kt, in registers (FP32) or in
  // shared memory (split; written by the row block's first warp, read after the first barrier).
  float Wa[G::kWInRegisters ? KT : 1][4];
  float* const wfrag_base = shared + L.wfrag + size_t(mw) * KT * 32 * G::WordsPerFragment(kBptt) + 4 * lane;
  uint4* const wfrag = reinterpret_cast<uint4*>(wfrag_base);      // e-prop: split
  float4* const wfrag32 = reinterpret_cast<float4*>(wfrag_base);  // bptt: FP32
  // W(r, j) for r = row[0], row[1] and j = 8 kt + 2 c, + 1 (transposed: W(j, r)), into the fragments
  auto load_fragments = [&](const float* p, bool transposed) {
    auto W = [&](int r, int j) { return transposed ? p[layout.W_h + j + r * H] : p[layout.W_h + r + j * H]; };
    RNNSWEEP_UNROLL
    for (int kt = 0; kt < KT; ++kt) {
      const int j = 8 * kt + 2 * cc;
      const float v[4] = {W(row[0], j), W(row[1], j), W(row[0], j + 1), W(row[1], j + 1)};
      if constexpr (G::kWInRegisters) {
        RNNSWEEP_UNROLL
        for (int e = 0; e < 4; ++e) Wa[kt][e] = v[e];
      } else if (nw == 0 && kBptt) {
        wfrag32[kt * 32] = make_float4(v[0], v[1], v[2], v[3]);
      } else if (nw == 0) {
        std::uint32_t hi[4], lo[4];
        RNNSWEEP_UNROLL
        for (int e = 0; e < 4; ++e) split_tf32(v[e], hi[e], lo[e]);
        wfrag[(2 * kt) * 32] = make_uint4(hi[0], hi[1], hi[2], hi[3]);
        wfrag[(2 * kt + 1) * 32] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
      }
    }
  };
  load_fragments(params, false);
  auto product = [&](const float* rows, float (&acc)[2][4]) {
    if constexpr (G::kWInRegisters)
      step_product<G>(RegisterFrags<KT>{Wa}, rows, nw, g, cc, acc);
    else if constexpr (kBptt)
      step_product<G>(SharedFp32Frags{wfrag32}, rows, nw, g, cc, acc);
    else
      step_product<G>(SharedFrags{wfrag}, rows, nw, g, cc, acc);
  };
  // Each row's input weights [0, I), feedback [3, 3 + O) and bias [6], read where used.
  float* rows_sh = shared + L.rows;
  for (int r = tid; r < H; r += G::kThreads) {
    float* ri = rows_sh + r * 8;
    RNNSWEEP_UNROLL
    for (int k = 0; k < kMaxIO; ++k) {
      ri[k] = k < I ? params[layout.W_x + r + k * H] : 0.0f;
      ri[3 + k] = k < O ? (rule == Rule::rflo ? c.feedback[size_t(n) * H * O + r + k * H] : params[layout.w + k + r * O])
                        : 0.0f;
    }
    ri[6] = c.shape.bias ? params[layout.b + r] : 0.0f;
    ri[7] = 0.0f;
  }
  const LossLedger ledger = fused::ledger_at(shared + L.ledger, Bt, O);
  fused::ledger_start<Task, Bt>(ledger, params, layout, c.shape.bias, tid);
  for (int e = tid; e < O * H; e += G::kThreads) w_sh[e] = params[layout.w + e];
  float* const ft0 = shared + L.ft[0];
  float* const ft1 = shared + L.ft[1];
  float* const uj0 = shared + L.uj[0];
  float* const uj1 = shared + L.uj[1];
  float* const uj2 = shared + L.uj[2];  // bptt only
  for (int e = tid; e < Bt * ST; e += G::kThreads) ft0[e] = 0.0f;  // f_0 = 0
  for (int e = tid; e < H * S; e += G::kThreads) uj0[e] = 0.0f;    // e_0 = 0
  if (!kBptt)
    for (int e = tid; e < I * Bt; e += G::kThreads) shared[L.qtrace + e] = 0.0f;
  float* partials = shared + L.partials + tid;  // slot k at partials[k threads]: 7 per own row
  RNNSWEEP_UNROLL
  for (int k = 0; k < 14; ++k) partials[k * G::kThreads] = 0.0f;
  __syncthreads();  // w, the rows and the initial state complete

  float inv_mask_sum = 1.0f;
  double mask_sum = 1.0;
  if (!classification) {
    double partial = 0;
    for (size_t k = tid; k < out_size; k += G::kThreads) partial += trials.mask[k];
    mask_sum = block_sum(partial, reduce);
    inv_mask_sum = float(1.0 / mask_sum);
  }
  const float inv_steps = float(1.0 / (double(T) * Bt));

  float h_own[8];
  RNNSWEEP_UNROLL
  for (int k = 0; k < 8; ++k) h_own[k] = 0.0f;
  float dW[KT][4];  // the warp's partial dW_h: (row[e / 2], 8 nj + 2 cc + e % 2)
  if (!kBptt) {
    RNNSWEEP_UNROLL
    for (int nj = 0; nj < KT; ++nj)
      RNNSWEEP_UNROLL
      for (int e = 0; e < 4; ++e) dW[nj][e] = 0.0f;
  }
  // this step's sums of dW_x [0, 3), dw [3, 6), db [6] of own row h, added to the partials
  auto add_partials = [&](const float (&sums)[2][7]) {
    RNNSWEEP_UNROLL
    for (int h = 0; h < 2; ++h)
      RNNSWEEP_UNROLL
      for (int k = 0; k < 7; ++k)
        if ((k < 3 && k < I) || (k >= 3 && k < 6 && k - 3 < O) || k == 6) partials[(7 * h + k) * G::kThreads] += sums[h][k];
  };
  float bias_trace = 0.0f;
  float* history = kBptt ? c.history + size_t(n) * (T + 1) * H * Bt : nullptr;
  if (kBptt) {  // f(h_0) = 0: the lane's own entries of the history's first step
    RNNSWEEP_UNROLL
    for (int k = 0; k < 8; k += 2)
      *reinterpret_cast<float2*>(history + size_t(own_row(k)) * Bt + own_col(k)) = make_float2(0.0f, 0.0f);
  }
  float* gsteps = shared + L.gsteps;
  float* gwarp = shared + L.gwarp + size_t(warp) * O * Bt;

  for (int t = 0; t < T; ++t) {
    const bool odd = t % 2 != 0;
    const float* f_cur = odd ? ft1 : ft0;
    float* f_next = odd ? ft0 : ft1;
    const float* e_cur = odd ? uj1 : uj0;
    float* e_next = odd ? uj0 : uj1;
    const float* x_t = trials.x + size_t(t) * Bt * I;
    // h_{t+1} = a h_t + (1 - a)(W_h f(h_t) + W_x x_t + b), the lane's own entries.
    float acc[2][4];
    product(f_cur, acc);
    RNNSWEEP_UNROLL
    for (int k = 0; k < 8; k += 2) {
      const int r = own_row(k), b = own_col(k);
      const float4 r0 = reinterpret_cast<const float4*>(rows_sh + r * 8)[0];
      const float4 r1 = reinterpret_cast<const float4*>(rows_sh + r * 8)[1];
      const float Wx[3] = {r0.x, r0.y, r0.z};
      float2 e_prev = make_float2(0.0f, 0.0f);
      if (!kBptt) e_prev = *reinterpret_cast<const float2*>(e_cur + r * S + b);
      float x_pair[2][kMaxIO];  // x_t of columns b, b + 1
      fused::load_inputs<I>(x_t + b * I, x_pair);
      float f_new[2], e_new[2];
      RNNSWEEP_UNROLL
      for (int u = 0; u < 2; ++u) {
        float drive = r1.z;  // the bias
        RNNSWEEP_UNROLL
        for (int kk = 0; kk < kMaxIO; ++kk)
          if (kk < I) drive += Wx[kk] * x_pair[u][kk];
        const float f_prev = h_own[k + u] > 0 ? h_own[k + u] : 0.0f;  // f(h_t)
        h_own[k + u] = a * h_own[k + u] + (1 - a) * (acc[k / 4][k % 4 + u] + drive);
        e_new[u] = a * (u == 0 ? e_prev.x : e_prev.y) + (1 - a) * f_prev;  // e_{t+1}, from f(h_t)
        f_new[u] = h_own[k + u] > 0 ? h_own[k + u] : 0.0f;
        f_next[(b + u) * ST + r] = f_new[u];
      }
      if (!kBptt) *reinterpret_cast<float2*>(e_next + r * S + b) = make_float2(e_new[0], e_new[1]);
      if (kBptt)
        *reinterpret_cast<float2*>(history + (size_t(t + 1) * H + r) * Bt + b) = make_float2(f_new[0], f_new[1]);
    }
    if (!kBptt) {
      bias_trace = a * bias_trace + (1 - a);
      // q_{t+1}, read after the barrier
      fused::advance_input_trace<I, Bt, G::kThreads>(shared + L.qtrace + size_t(t % 2) * I * Bt,
                                                     shared + L.qtrace + size_t((t + 1) % 2) * I * Bt, x_t, a, tid);
    }
    __syncwarp();  // the warp's own entries of f_{t+1} are complete
    // this warp's share of y_t = w f(h_{t+1}): column 16 nw + lane % 16, 8 of its 16 rows
    float* ypart = shared + L.ypart + size_t(t % 2) * G::kRowBlocks * O * Bt;
    {
      const int b = 16 * nw + lane % 16, r0 = 16 * mw + 8 * (lane / 16);
      const float4 fa = *reinterpret_cast<const float4*>(f_next + b * ST + r0);
      const float4 fb = *reinterpret_cast<const float4*>(f_next + b * ST + r0 + 4);
      const float fv[8] = {fa.x, fa.y, fa.z, fa.w, fb.x, fb.y, fb.z, fb.w};
      float part[kMaxIO] = {0, 0, 0};
      RNNSWEEP_UNROLL
      for (int rr = 0; rr < 8; ++rr)
        RNNSWEEP_UNROLL
        for (int o = 0; o < kMaxIO; ++o)
          if (o < O) part[o] += w_sh[o + (r0 + rr) * O] * fv[rr];
      RNNSWEEP_UNROLL
      for (int o = 0; o < kMaxIO; ++o)
        if (o < O) {
          part[o] += __shfl_xor_sync(0xffffffffu, part[o], 16);
          if (lane < 16) ypart[(size_t(mw) * O + o) * Bt + b] = part[o];
        }
    }
    fused::StepTargets<Task, Bt> targets;  // the tail's trial data, loaded during the barrier's wait
    if constexpr (G::kPrefetchTargets) targets.load(trials, t, lane);
    __syncthreads();  // the step's one barrier: f_{t+1}, e_{t+1}, q_{t+1} and the partial outputs
    if constexpr (!G::kPrefetchTargets) targets.load(trials, t, lane);

    fused::step_tail<Task, Bt, G::kRowBlocks, kBptt>(t, lane, warp, ypart, ledger, targets, inv_mask_sum, inv_steps,
                                                     gwarp, gsteps);
    __syncwarp();  // the warp's copy of dL/dy_t is complete
    // dw += dL/dy_t f(h_{t+1})^T (exact for every rule); e-prop: the learning signal L_t.
    const float* q_next = shared + L.qtrace + size_t((t + 1) % 2) * I * Bt;
    float sums[2][7] = {};
    float signal[8];
    RNNSWEEP_UNROLL
    for (int k = 0; k < 8; ++k) {
      const int h = (k / 2) % 2, r = own_row(k), b = own_col(k);
      const float4 r0 = reinterpret_cast<const float4*>(rows_sh + r * 8)[0];
      const float4 r1 = reinterpret_cast<const float4*>(rows_sh + r * 8)[1];
      const float fb[3] = {r0.w, r1.x, r1.y};
      float drive = 0.0f;
      RNNSWEEP_UNROLL
      for (int o = 0; o < kMaxIO; ++o) {
        if (o >= O) continue;
        const float gv = gwarp[o * Bt + b];
        sums[h][3 + o] += gv * (h_own[k] > 0 ? h_own[k] : 0.0f);  // f(h_{t+1})
        drive += fb[o] * gv;
      }
      signal[k] = h_own[k] > 0 ? drive : 0.0f;  // L_t = f'(h_{t+1}) (feedback dL/dy_t)
      if (!kBptt) {
        sums[h][6] += bias_trace * signal[k];
        RNNSWEEP_UNROLL
        for (int kk = 0; kk < kMaxIO; ++kk)
          if (kk < I) sums[h][kk] += signal[k] * q_next[kk * Bt + b];
      }
    }
    add_partials(sums);
    // dW_h += L_t e_{t+1}^T over the warp's columns: L from registers, e from every warp (barrier above)
    if (!kBptt) rank_update<G>(signal, e_next, nw, g, cc, dW);
  }

  // Loss and accuracy of the iteration, from warp 0's lanes.
  const int nn = *static_cast<volatile int*>(misc + 1);  // == n, without a register through the loop
  if (warp == 0) fused::iteration_loss<Task>(c, nn, iteration, log_slot, ledger, mask_sum, T, Bt, lane, misc);
  __syncthreads();  // the verdict on the loss
  if (misc[0] == 0) return;  // frozen, as on the CPU

  float scale_W = 1.0f;  // BPTT's (1 - a) factors, applied once to its sums
  if (kBptt) {
    scale_W = 1 - a;
    // delta_{t+1} = f'(h_{t+1}) (w^T dL/dy_t + (1 - a) W_h^T delta_{t+2}) + a delta_{t+2}, from
    // t = T - 1 down, delta_{T+1} = 0 (host/cpu/bptt.cpp). W_h^T's fragments replace W_h's:
    // A(g, slot c) of k-tile kt is W_h^T(row 0, 8 kt + 2 c) = W_h(8 kt + 2 c, row 0).
    // (in shared memory: every warp's last forward read of W_h's fragments was before the verdict's barrier)
    load_fragments(c.params + size_t(nn) * c.P, true);
    RNNSWEEP_UNROLL
    for (int nj = 0; nj < KT; ++nj)
      RNNSWEEP_UNROLL
      for (int e = 0; e < 4; ++e) dW[nj][e] = 0.0f;
    float d_own[8];
    RNNSWEEP_UNROLL
    for (int k = 0; k < 8; ++k) d_own[k] = 0.0f;
    // f(h_s) staged from the history by asynchronous copies of each lane's own entries, a step
    // ahead, into three buffers by s mod 3 (as in train_registers.cu).
    auto stage = [&](int s) -> float* { return s % 3 == 0 ? uj0 : s % 3 == 1 ? uj1 : uj2; };
    auto stage_async = [&](int s) {
      RNNSWEEP_UNROLL
      for (int k = 0; k < 8; k += 2)
        __pipeline_memcpy_async(stage(s) + own_row(k) * S + own_col(k),
                                history + (size_t(s) * H + own_row(k)) * Bt + own_col(k), 2 * sizeof(float));
      __pipeline_commit();
    };
    float* d_last = (T + 1) % 2 ? ft1 : ft0;  // delta_{T+1} = 0
    for (int e = tid; e < Bt * ST; e += G::kThreads) d_last[e] = 0.0f;
    stage_async(T);
    stage_async(T - 1);
    __pipeline_wait_prior(0);
    __syncthreads();  // delta_{T+1} is zero everywhere, f(h_T) and f(h_{T-1}) are staged
    for (int t = T - 1; t >= 0; --t) {
      const bool odd = t % 2 != 0;
      const float* d_cur = odd ? ft1 : ft0;  // delta_{t+2}
      float* d_new = odd ? ft0 : ft1;        // delta_{t+1}
      const float* f_next = stage(t + 1);    // f(h_{t+1}): the lane's own entries, for f'
      const float* f_t = stage(t);           // f(h_t), for the rank update after the barrier
      if (t > 0) stage_async(t - 1);
      const float* g_t = gsteps + size_t(t) * O * Bt;
      const float* x_t = trials.x + size_t(t) * Bt * I;
      float acc[2][4];
      product(d_cur, acc);
      float sums[2][7] = {};
      RNNSWEEP_UNROLL
      for (int k = 0; k < 8; k += 2) {
        const int h = (k / 2) % 2, r = own_row(k), b = own_col(k);
        const float2 f_own = *reinterpret_cast<const float2*>(f_next + r * S + b);
        float x_pair[2][kMaxIO], g_pair[kMaxIO][2];  // x_t and dL/dy_t of columns b, b + 1
        fused::load_inputs<I>(x_t + b * I, x_pair);
        RNNSWEEP_UNROLL
        for (int o = 0; o < kMaxIO; ++o) {
          const float2 gv = o < O ? *reinterpret_cast<const float2*>(g_t + o * Bt + b) : make_float2(0.0f, 0.0f);
          g_pair[o][0] = gv.x, g_pair[o][1] = gv.y;
        }
        RNNSWEEP_UNROLL
        for (int u = 0; u < 2; ++u) {
          float direct = 0.0f;
          RNNSWEEP_UNROLL
          for (int o = 0; o < kMaxIO; ++o)
            if (o < O) direct += w_sh[o + r * O] * g_pair[o][u];
          const bool active = (u == 0 ? f_own.x : f_own.y) > 0;
          float& d = d_own[k + u];
          d = (active ? direct + (1 - a) * acc[k / 4][k % 4 + u] : 0.0f) + a * d;
          sums[h][6] += d;
          RNNSWEEP_UNROLL
          for (int kk = 0; kk < kMaxIO; ++kk)
            if (kk < I) sums[h][kk] += d * x_pair[u][kk];
          d_new[(b + u) * ST + r] = d;
        }
      }
      add_partials(sums);
      __pipeline_wait_prior(t > 0 ? 1 : 0);  // f(h_t)'s copy has landed; f(h_{t-1})'s may fly on
      __syncthreads();  // the step's one barrier: delta_{t+1} and f(h_t) staged
      // dW_h += delta_{t+1} f(h_t)^T over the warp's columns (the (1 - a) at the end)
      rank_update<G>(d_own, f_t, nw, g, cc, dW);
    }
  }

  // The row blocks' warps sum their partial dW_h in column-block order, through shared memory
  // (the uj buffers, free once every warp is past its last rank update); the last holds the sum.
  if (G::kColBlocks > 1) {
    float* sum = uj0;
    __syncthreads();  // every warp is past its last read of the uj buffers
    RNNSWEEP_UNROLL  // (a straight line: the kernel report's time loops are its only loops with barriers)
    for (int round = 0; round < G::kColBlocks; ++round) {
      if (nw == round) {
        RNNSWEEP_UNROLL
        for (int nj = 0; nj < KT; ++nj)
          RNNSWEEP_UNROLL
          for (int e = 0; e < 4; ++e) {
            float& slot = sum[row[e / 2] * H + 8 * nj + 2 * cc + e % 2];
            dW[nj][e] = round == 0 ? dW[nj][e] : slot + dW[nj][e];
            slot = dW[nj][e];
          }
      }
      __syncthreads();  // this round's sums are complete
    }
  }
  // (The partials, read across warps below, are complete: e-prop's last were added before the
  // verdict's barrier, BPTT's before its last backward step's.)

  // PyTorch's Adam (host/cpu/adam.h): W_h from the last column block's warps; the rows' other
  // parameters from the partials of their 4 G::kColBlocks owners, summed in a fixed order.
  const fused::OptimizerStep opt(c, *static_cast<volatile int*>(misc + 1), iteration, bias_correction1,
                                 bias_correction2);
  {
    // the lane's rows and columns afresh: the compiler would otherwise keep the loading's
    // addresses, which are these, in registers through the loops
    const int tid2 = fresh_thread_index(), lane2 = tid2 % 32, warp2 = tid2 / 32;
    const int nw2 = warp2 / G::kRowBlocks, cc2 = lane2 % 4;
    const int row2[2] = {16 * (warp2 % G::kRowBlocks) + lane2 / 4, 16 * (warp2 % G::kRowBlocks) + lane2 / 4 + 8};
    if (nw2 == G::kColBlocks - 1) {
      RNNSWEEP_UNROLL
      for (int nj = 0; nj < KT; ++nj)
        RNNSWEEP_UNROLL
        for (int e = 0; e < 4; ++e)
          opt.update(layout.W_h + row2[e / 2] + (8 * nj + 2 * cc2 + e % 2) * H, dW[nj][e] * scale_W);
    }
  }
  const float* all_partials = shared + L.partials;
  for (int r = tid; r < H; r += G::kThreads) {
    float total[7] = {};
    for (int cb = 0; cb < G::kColBlocks; ++cb)
      for (int c4 = 0; c4 < 4; ++c4) {
        const int owner = (cb * G::kRowBlocks + r / 16) * 32 + 4 * (r % 8) + c4, h = (r % 16) / 8;
        RNNSWEEP_UNROLL
        for (int k = 0; k < 7; ++k) total[k] += all_partials[(7 * h + k) * G::kThreads + owner];
      }
    RNNSWEEP_UNROLL
    for (int k = 0; k < kMaxIO; ++k) {
      if (k < I) opt.update(layout.W_x + r + k * H, total[k] * scale_W);
      if (k < O) opt.update(layout.w + k + r * O, total[3 + k]);
    }
    if (c.shape.bias) opt.update(layout.b + r, total[6] * scale_W);
  }
  if (warp == 0) {
    RNNSWEEP_UNROLL
    for (int k = 0; k < O; ++k) {
      float part = 0.0f;
      for (int b = lane; b < Bt; b += 32) part += ledger.db_out[k * Bt + b];
      const float total = warp_sum(part);
      if (c.shape.bias && lane == 0) opt.update(layout.b_out + k, total);
    }
  }
}

// ---- the instances ----
#define RNNSWEEP_MMA_INSTANCES(X) \
  X(32, 16)                       \
  X(32, 32)                       \
  X(32, 64)                       \
  X(64, 16)                       \
  X(64, 32)                       \
  X(64, 64)

template <class G, class Task>
void launch_family(const TrainChunk& chunk, bool bptt, std::uint32_t iteration, int log_slot, double bc1,
                   double bc2, cudaStream_t stream) {
  const size_t bytes = mma_layout<G>(chunk.T, Task::I, Task::O, bptt).total * sizeof(float);
  const auto train_mma_bptt = &train_mma_kernel<G, true, Task>;
  const auto train_mma_eprop = &train_mma_kernel<G, false, Task>;
  if (bptt) {
    CUDA_CHECK(cudaFuncSetAttribute(train_mma_bptt, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    RNNSWEEP_LAUNCH(train_mma_bptt, chunk.K, G::kThreads, bytes, stream)(chunk, iteration, log_slot, bc1, bc2);
  } else {
    CUDA_CHECK(cudaFuncSetAttribute(train_mma_eprop, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    RNNSWEEP_LAUNCH(train_mma_eprop, chunk.K, G::kThreads, bytes, stream)(chunk, iteration, log_slot, bc1, bc2);
  }
  CUDA_CHECK(cudaGetLastError());
}

template <class G>
void launch_instance(const TrainChunk& chunk, bool bptt, std::uint32_t iteration, int log_slot, double bc1,
                     double bc2, cudaStream_t stream) {
  const bool choice = chunk.task.classification();
  if (choice != (chunk.shape.I == Choice::I && chunk.shape.O == Choice::O))
    throw std::invalid_argument("launch_train_mma: no tensor-core instance for this task's inputs and outputs");
  if (choice)
    launch_family<G, Choice>(chunk, bptt, iteration, log_slot, bc1, bc2, stream);
  else
    launch_family<G, Regression>(chunk, bptt, iteration, log_slot, bc1, bc2, stream);
}

std::string shape_words(const Shape& shape, int Bt) {
  return "H = " + std::to_string(shape.H) + ", batch " + std::to_string(Bt);
}

}  // namespace

bool mma_instance_exists(const Shape& shape, int Bt) {
  const bool regression = shape.I == Regression::I && shape.O == Regression::O;
  const bool choice = shape.I == Choice::I && shape.O == Choice::O;
  if (!regression && !choice) return false;
#define RNNSWEEP_EXISTS(h, bt) \
  if (shape.H == h && Bt == bt) return true;
  RNNSWEEP_MMA_INSTANCES(RNNSWEEP_EXISTS)
#undef RNNSWEEP_EXISTS
  return false;
}

int mma_threads(const Shape& shape, int Bt) {
#define RNNSWEEP_THREADS(h, bt) \
  if (shape.H == h && Bt == bt) return MmaGeometry<h, bt>::kThreads;
  RNNSWEEP_MMA_INSTANCES(RNNSWEEP_THREADS)
#undef RNNSWEEP_THREADS
  throw std::invalid_argument("mma_threads: no tensor-core instance for " + shape_words(shape, Bt));
}

size_t mma_shared_bytes(const Shape& shape, int Bt, int T, bool bptt) {
#define RNNSWEEP_BYTES(h, bt)   \
  if (shape.H == h && Bt == bt) \
    return mma_layout<MmaGeometry<h, bt>>(T, shape.I, shape.O, bptt).total * sizeof(float);
  RNNSWEEP_MMA_INSTANCES(RNNSWEEP_BYTES)
#undef RNNSWEEP_BYTES
  throw std::invalid_argument("mma_shared_bytes: no tensor-core instance for " + shape_words(shape, Bt));
}

void launch_train_mma(const TrainChunk& chunk, bool bptt, std::uint32_t iteration, int log_slot,
                      double bias_correction1, double bias_correction2, cudaStream_t stream) {
  if (!mma_instance_exists(chunk.shape, chunk.Bt))
    throw std::invalid_argument("launch_train_mma: no tensor-core instance for " + shape_words(chunk.shape, chunk.Bt));
  if (bptt && !chunk.history) throw std::invalid_argument("launch_train_mma: bptt needs the history");
#define RNNSWEEP_LAUNCH_IF(h, bt)                                                                                \
  if (chunk.shape.H == h && chunk.Bt == bt) {                                                                 \
    launch_instance<MmaGeometry<h, bt>>(chunk, bptt, iteration, log_slot, bias_correction1, bias_correction2, \
                                        stream);                                                              \
    return;                                                                                                   \
  }
  RNNSWEEP_MMA_INSTANCES(RNNSWEEP_LAUNCH_IF)
#undef RNNSWEEP_LAUNCH_IF
}

}  // namespace rnnsweep::cuda
