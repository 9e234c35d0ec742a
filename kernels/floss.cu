// One gradient-flossing iteration per network. CPU twins: host/cpu/floss.cpp and
// host/cpu/spectra.cpp (floss_network). This is the general kernel: the study's shapes (hidden 64
// with floss_k 32, hidden = floss_k = 32) go to kernels/floss_registers.cu, which plan_floss
// prefers and launch_floss_iteration dispatches to.
//
// Ownership: one thread block owns one network. Forward: the driven trajectory (h_t detached,
// kernels/lyapunov.cuh) and, from step `warmup` on, the chain M_t = J_t Q_{t-1},
// (Q_t, R_t) = qr(M_t) with every frame, triangle and slope pattern kept in the network's
// global scratch, since the backward pass visits them in reverse. Where shared memory allows
// (FlossLaunchPlan::chain_shared), the chain works in shared memory: M is formed and
// factorised there from the previous frame, also there, and global memory only receives each
// frame and triangle once (forward) and gives each back once (backward, into a second buffer
// while the first still holds Q_{t+1}); the backward work arrays (Q_bar, M_bar, C, R) are in
// shared memory too. The arithmetic is the same in the same order: results are bitwise those
// of the global-memory instance. QR is nested (the first j
// columns of Q_t and R_t depend only on the first j columns before), so the first annihilated
// column, over all steps, simply cuts the chain: the leading k_used columns are exactly what a
// chain of k_used columns computes, and the CPU's rerun with fewer columns is not needed.
// Backward, step t = n .. 1 (host/cpu/floss.cpp writes the formulas out):
//   C = R R_bar^T - Q_bar^T Q (lower triangle),  M_bar = (Q_bar + Q copyltu(C)) R^{-T},
//   W_bar += (1 - a) M_bar (D_t Q_{t-1})^T,  Q_bar = a M_bar + (1 - a) D_t W^T M_bar,
// one thread per entry of each product, the triangular solve one thread per row.
// Then PyTorch's Adam on W_h, as the CPU does, with the bias corrections from the host.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "kernels/block_ops.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/floss.cuh"
#include "kernels/floss_registers.cuh"
#include "kernels/lyapunov.cuh"

namespace rnnsweep::cuda {
namespace {

// The network's scratch, in doubles.
struct FlossScratch {
  size_t frames, triangles, slopes, frame_bar, M_bar, C, W_bar, total;
};

RNNSWEEP_HD inline FlossScratch floss_scratch_layout(int H, int k, long n) {
  FlossScratch L{};
  SharedCarver<double> carve;  // 16-byte aligned arrays
  L.frames = carve.take(size_t(n + 1) * H * k);
  L.triangles = carve.take(size_t(n) * k * k);
  L.slopes = carve.take(size_t(n) * H);
  L.frame_bar = carve.take(size_t(H) * k);
  L.M_bar = carve.take(size_t(H) * k);
  L.C = carve.take(size_t(k) * k);
  L.W_bar = carve.take(size_t(H) * H);
  L.total = carve.size();
  return L;
}

// Shared memory, in doubles: reductions, W_h (if it fits), W_x, b, the state, the trial, and
// with chain_shared the two frame buffers and the backward work arrays.
struct FlossShared {
  size_t reduce, diag, log_sum, W_h, W_x, b, u, scratch, trial, frame_a, frame_b, frame_bar, M_bar, C, R, total;
};

RNNSWEEP_HD inline FlossShared floss_shared_layout(const Shape& s, int k, int T, bool W_h_shared,
                                                   bool chain_shared) {
  FlossShared L{};
  SharedCarver<double> carve;  // 16-byte aligned arrays
  L.reduce = carve.take(32);
  L.diag = carve.take(k);
  L.log_sum = carve.take(k);
  L.W_h = carve.take(W_h_shared ? recurrent_weights_doubles(s.H) : 0);
  L.W_x = carve.take(size_t(s.H) * s.I);
  L.b = carve.take(s.H);
  L.u = carve.take(s.H);
  L.scratch = carve.take(2 * size_t(s.H));
  // x, target, mask (floats) and label (ints) of one trial: T (I + 2 O + 1) 4-byte values
  L.trial = carve.take((size_t(T) * (s.I + 2 * s.O + 1) + 1) / 2);
  const size_t frame = chain_shared ? size_t(s.H) * k : 0, triangle = chain_shared ? size_t(k) * k : 0;
  L.frame_a = carve.take(frame);
  L.frame_b = carve.take(frame);
  L.frame_bar = carve.take(frame);
  L.M_bar = carve.take(frame);
  L.C = carve.take(triangle);
  L.R = carve.take(triangle);
  L.total = carve.size();
  return L;
}

RNNSWEEP_KERNEL void floss_kernel(FlossChunk c, bool W_h_shared, bool chain_shared, long iteration) {
  // Flossing covers only the networks with floss = true: block `slot` flosses network
  // network[slot] of the parameter array; the flossing arrays are indexed by slot.
  const int slot = blockIdx.x, n_net = c.network ? c.network[slot] : slot;
  RNNSWEEP_DYNAMIC_SHARED(double, shared);
  const Shape s = c.shape;
  const int H = s.H, k = c.k, T = c.task.T(), tid = threadIdx.x, threads = blockDim.x;
  const long n = c.steps;
  const ParamLayout layout(s);
  const FlossShared L = floss_shared_layout(s, k, T, W_h_shared, chain_shared);
  const FlossScratch G = floss_scratch_layout(H, k, n);
  float* params = c.params + size_t(n_net) * layout.size;
  double* scratch = c.scratch + size_t(slot) * G.total;
  double* reduce = shared + L.reduce;
  double* diag = shared + L.diag;
  double* log_sum = shared + L.log_sum;

  const RecurrentWeights W =
      load_recurrent_weights(params + layout.W_h, H, W_h_shared ? shared + L.W_h : nullptr);
  double* W_x = shared + L.W_x;
  double* b = shared + L.b;
  for (int e = tid; e < H * s.I; e += threads) W_x[e] = params[layout.W_x + e];
  for (int i = tid; i < H; i += threads) b[i] = s.bias ? params[layout.b + i] : 0.0;
  for (int i = tid; i < k; i += threads) log_sum[i] = 0.0;
  // No barrier yet: the floor reads only the entries of W_h this thread loaded, and the other
  // arrays are first read after block_random_frame's barriers.
  const double a = c.task.leak();
  const double floor = annihilation_floor(W, a, reduce);
  double* frames = scratch + G.frames;
  double* triangles = scratch + G.triangles;
  double* slopes = scratch + G.slopes;
  for (size_t e = tid; e < size_t(n) * k * k; e += threads) triangles[e] = 0.0;  // lower parts stay 0
  // Q: the current frame; other: where the next M is formed (shared: the other buffer; global:
  // the next frame's own place in the chain).
  double* Q_cur = chain_shared ? shared + L.frame_a : frames;
  double* other = chain_shared ? shared + L.frame_b : nullptr;
  block_random_frame(Q_cur, H, k, c.seed[n_net], diag);
  if (chain_shared)  // the backward pass's Q_0 (block_random_frame ends in a barrier)
    for (int e = tid; e < H * k; e += threads) frames[e] = Q_cur[e];

  float* trial = reinterpret_cast<float*>(shared + L.trial);
  DrivenTrajectory traj{c.task,
                        Philox(Purpose::floss_trials, c.seed[n_net]),
                        std::uint32_t(c.first_batch + iteration),
                        H,
                        s.I,
                        s.O,
                        T,
                        a,
                        W,
                        W_x,
                        b,
                        shared + L.u,
                        shared + L.scratch,
                        trial,
                        trial + T * s.I,
                        trial + T * (s.I + s.O),
                        reinterpret_cast<int*>(trial + T * (s.I + 2 * s.O)),
                        reduce};
  traj.start();
  // Forward chain; k_used = the first column that any step annihilated (k if none).
  int k_used = k;
  for (long step = 0; step < c.warmup + n; ++step) {
    if (step >= c.warmup) {
      const long t = step - c.warmup;
      // u and Q are complete: start() and advance() end in a barrier, and so does the QR that
      // wrote Q; M is fresh scratch (shared: the buffer last read by the previous step's product,
      // before that step's QR barriers).
      const double* Q = Q_cur;
      double* M = chain_shared ? other : frames + size_t(t + 1) * H * k;
      for (int i = tid; i < H; i += threads) slopes[size_t(t) * H + i] = traj.u[i] > 0 ? 1.0 : 0.0;
      for (int e = tid; e < H * k; e += threads) {
        const int i = e % H, col = e / H;
        double sum = 0;
        for (int l = 0; l < H; ++l)
          if (traj.u[l] > 0) sum += W(i, l) * Q[l + size_t(col) * H];
        M[e] = a * Q[e] + (1 - a) * sum;
      }
      __syncthreads();
      double* R = triangles + size_t(t) * k * k;
      block_qr_positive(M, H, k, floor, diag, R);
      if (chain_shared) {
        // the frame for the backward pass; M becomes the current frame and Q's buffer the next M
        // (read again only after advance()'s barrier)
        double* next = frames + size_t(t + 1) * H * k;
        for (int e = tid; e < H * k; e += threads) next[e] = M[e];
        other = Q_cur;
      }
      Q_cur = M;
      for (int col = 0; col < k_used; ++col)  // every thread keeps the same k_used
        if (!(diag[col] > floor)) k_used = col;
      if (tid == 0)
        for (int col = 0; col < k; ++col) log_sum[col] += diag[col] > floor ? log(diag[col]) : 0.0;
    }
    traj.advance(step);  // its closing barrier also publishes thread 0's log_sum
  }
  const double loss = floss_record_loss(c, slot, iteration, log_sum, k_used);
  if (k_used == 0 || !is_finite(loss)) return;  // no update, as on the CPU

  // Backward through the chain of the first kk = k_used columns.
  const int kk = k_used;
  double* frame_bar = chain_shared ? shared + L.frame_bar : scratch + G.frame_bar;  // H x kk (column stride H)
  double* M_bar = chain_shared ? shared + L.M_bar : scratch + G.M_bar;              // H x kk
  double* C = chain_shared ? shared + L.C : scratch + G.C;                          // kk x kk (column stride k)
  double* W_bar = scratch + G.W_bar;                                                // H x H
  double* R_staged = shared + L.R;
  for (int e = tid; e < H * k; e += threads) frame_bar[e] = 0.0;
  for (int e = tid; e < H * H; e += threads) W_bar[e] = 0.0;
  // chain_shared: Q_cur holds Q_n since the forward pass; Q_{t} and R_t of each step are brought
  // in before the barrier that opens it (into `other`, whose last reader was the step before's
  // M_bar product, and R_staged, last read by its back substitution).
  auto stage = [&](long t) {
    for (int e = tid; e < H * k; e += threads) other[e] = frames[size_t(t) * H * k + e];
    for (int e = tid; e < k * k; e += threads) R_staged[e] = triangles[size_t(t) * k * k + e];
  };
  if (chain_shared) stage(n - 1);
  for (long t = n - 1; t >= 0; --t) {
    __syncthreads();
    const double* Q = chain_shared ? Q_cur : frames + size_t(t + 1) * H * k;
    const double* Q_prev = chain_shared ? other : frames + size_t(t) * H * k;
    const double* R = chain_shared ? R_staged : triangles + size_t(t) * k * k;
    const double* slope = slopes + size_t(t) * H;
    // lower triangle of C = R R_bar^T - Q_bar^T Q, R_bar = diag(2 lambda / (n R_jj)): the
    // strictly lower part of R is 0, so only the diagonal gets the R R_bar^T term
    for (int e = tid; e < kk * kk; e += threads) {
      const int i = e % kk, j = e / kk;
      if (i < j) continue;
      double dot = 0;
      for (int m = 0; m < H; ++m) dot += frame_bar[m + size_t(i) * H] * Q[m + size_t(j) * H];
      const double lambda_j = log_sum[j] / double(n);
      const double r_bar = 2 * lambda_j / double(n) / R[j + size_t(j) * k];
      C[i + size_t(j) * k] = (i == j ? R[j + size_t(j) * k] * r_bar : 0.0) - dot;
    }
    __syncthreads();
    // M_bar = Q_bar + Q copyltu(C)
    for (int e = tid; e < H * kk; e += threads) {
      const int m = e % H, col = e / H;
      double sum = 0;
      for (int l = 0; l < kk; ++l) {
        const double c_sym = l >= col ? C[l + size_t(col) * k] : C[col + size_t(l) * k];
        sum += Q[m + size_t(l) * H] * c_sym;
      }
      M_bar[m + size_t(col) * H] = frame_bar[m + size_t(col) * H] + sum;
    }
    __syncthreads();
    // M_bar R^{-T}: row by row, R z = row^T by back substitution
    for (int m = tid; m < H; m += threads) {
      for (int i = kk - 1; i >= 0; --i) {
        double value = M_bar[m + size_t(i) * H];
        for (int l = i + 1; l < kk; ++l) value -= R[i + size_t(l) * k] * M_bar[m + size_t(l) * H];
        M_bar[m + size_t(i) * H] = value / R[i + size_t(i) * k];
      }
    }
    __syncthreads();
    for (int e = tid; e < H * H; e += threads) {
      const int i = e % H, j = e / H;
      if (slope[j] == 0) continue;
      double sum = 0;
      for (int col = 0; col < kk; ++col) sum += M_bar[i + size_t(col) * H] * Q_prev[j + size_t(col) * H];
      W_bar[e] += (1 - a) * sum;
    }
    if (t > 0) {
      for (int e = tid; e < H * kk; e += threads) {
        const int i = e % H, col = e / H;
        double through_W = 0;
        if (slope[i] != 0)
          for (int j = 0; j < H; ++j) through_W += W(j, i) * M_bar[j + size_t(col) * H];
        frame_bar[e] = a * M_bar[e] + (1 - a) * through_W;
      }
      if (chain_shared) {
        // Q_t becomes the next step's Q; Q_{t+1}'s buffer (last read by the M_bar product above,
        // before the back substitution's barriers) takes Q_{t-1}
        double* done = const_cast<double*>(Q);
        Q_cur = other;
        other = done;
        stage(t - 1);
      }
    }
  }
  // The CPU skips the update when the gradient has a NaN or Inf; count them first. Each thread
  // reads only the entries of W_bar it wrote, so no barrier is needed before; every thread
  // reads the step count before block_sum's barriers, and thread 0 writes it after them.
  const int step = c.adam_steps[slot] + 1;
  double bad = 0;
  for (int e = tid; e < H * H; e += threads) bad += is_finite(W_bar[e]) ? 0.0 : 1.0;
  if (block_sum(bad, reduce) > 0) return;
  if (tid == 0) c.adam_steps[slot] = step;
  const FlossAdam adam(c, slot, step, params + layout.W_h);
  for (int e = tid; e < H * H; e += threads) adam.update(e, W_bar[e]);
}

size_t floss_shared_bytes(const Shape& s, int k, int T, bool W_h_shared, bool chain_shared) {
  return floss_shared_layout(s, k, T, W_h_shared, chain_shared).total * sizeof(double);
}

// The placements, best first: W_h in shared memory matters most (every product of the chain and
// of its adjoint reads all of it), then the chain's QR and work arrays.
constexpr bool kPlacements[4][2] = {{true, true}, {true, false}, {false, true}, {false, false}};

}  // namespace

size_t floss_scratch_doubles(int H, int k, long steps) { return floss_scratch_layout(H, k, steps).total; }

std::vector<double> adam_bias_corrections(double beta, long steps) {
  std::vector<double> out(size_t(steps) + 1);
  for (long s = 0; s <= steps; ++s) out[size_t(s)] = 1.0 - std::pow(beta, double(s));
  return out;
}

FlossBiasCorrections::FlossBiasCorrections(FlossChunk& f) {
  const std::vector<double> bc1 = adam_bias_corrections(f.beta1, f.iters), bc2 = adam_bias_corrections(f.beta2, f.iters);
  bc1_ = DeviceBuffer<double>(bc1.size());
  bc2_ = DeviceBuffer<double>(bc2.size());
  bc1_.upload(bc1.data(), bc1.size());
  bc2_.upload(bc2.data(), bc2.size());
  f.bias_correction1 = bc1_.get();
  f.bias_correction2 = bc2_.get();
}

std::string FlossLaunchPlan::name() const {
  if (registers) return "registers threads=" + std::to_string(threads);
  return "threads=" + std::to_string(threads) + " W_h=" + (W_h_shared ? "shared" : "global") +
         " chain=" + (chain_shared ? "shared" : "global");
}

namespace {

// The register instance's plan, where one exists for the shape and fits.
std::optional<FlossLaunchPlan> registers_plan(const Shape& shape, int k, const TaskParams& task, size_t max_shared) {
  if (!floss_registers_exists(shape, k)) return std::nullopt;
  FlossLaunchPlan plan;
  plan.registers = true;
  plan.threads = floss_registers_threads(shape, k);
  plan.shared_bytes = floss_registers_shared_bytes(shape, k, task);
  if (plan.shared_bytes > max_shared) return std::nullopt;
  return plan;
}

}  // namespace

FlossLaunchPlan plan_floss(const Shape& shape, int k, const TaskParams& task, size_t max_shared) {
  if (const auto fast = registers_plan(shape, k, task, max_shared)) return *fast;
  FlossLaunchPlan plan;
  plan.threads = std::min(256, std::max(64, (shape.H + 31) / 32 * 32 * 2));
  // The first placement that leaves room for a second block on the SM (its warps hide the
  // latency of the first's barriers and loads), else the first that fits at all. The paper's
  // shape (H = 64, k = 32) gets everything in shared memory at about 100 KiB.
  for (const size_t budget : {max_shared / 2, max_shared})
    for (const auto& [W_h_shared, chain_shared] : kPlacements) {
      const size_t bytes = floss_shared_bytes(shape, k, task.T(), W_h_shared, chain_shared);
      if (bytes <= budget) {
        plan.W_h_shared = W_h_shared;
        plan.chain_shared = chain_shared;
        plan.shared_bytes = bytes;
        return plan;
      }
    }
  throw std::invalid_argument("flossing at hidden = " + std::to_string(shape.H) + " needs " +
                              std::to_string(floss_shared_bytes(shape, k, task.T(), false, false) / 1024) +
                              " KiB of shared memory, more than this GPU's " + std::to_string(max_shared / 1024) +
                              " KiB; use --backend cpu");
}

std::vector<FlossLaunchPlan> floss_candidates(const Shape& shape, int k, const TaskParams& task,
                                              size_t max_shared) {
  const FlossLaunchPlan heuristic = plan_floss(shape, k, task, max_shared);
  std::vector<FlossLaunchPlan> out = {heuristic};
  if (const auto fast = registers_plan(shape, k, task, max_shared); fast && !heuristic.registers)
    out.push_back(*fast);
  for (int threads : {64, 128, 256})
    for (const auto& [W_h_shared, chain_shared] : kPlacements) {
      FlossLaunchPlan plan;
      plan.threads = threads;
      plan.W_h_shared = W_h_shared;
      plan.chain_shared = chain_shared;
      plan.shared_bytes = floss_shared_bytes(shape, k, task.T(), W_h_shared, chain_shared);
      if (plan.shared_bytes > max_shared || plan.name() == heuristic.name()) continue;
      out.push_back(plan);
    }
  return out;
}

std::string floss_shape_key(const Shape& shape, int k, const TaskParams& task) {
  return "H=" + std::to_string(shape.H) + " k=" + std::to_string(k) + " I=" + std::to_string(shape.I) +
         " O=" + std::to_string(shape.O) + " T=" + std::to_string(task.T());
}

void launch_floss_iteration(const FlossChunk& chunk, const FlossLaunchPlan& plan, long iteration,
                            cudaStream_t stream) {
  const Shape& s = chunk.shape;
  if (chunk.K < 1 || chunk.k < 1 || chunk.k > s.H || chunk.steps < 1 || iteration < 0 ||
      iteration >= chunk.iters)
    throw std::invalid_argument(
        "launch_floss_iteration: need K >= 1, 1 <= k <= H, steps >= 1, 0 <= iteration < iters");
  if (plan.threads % 32 != 0 || plan.threads < 32)
    throw std::invalid_argument("launch_floss_iteration: threads must be a positive multiple of 32");
  if (!chunk.bias_correction1 || !chunk.bias_correction2)
    throw std::invalid_argument("launch_floss_iteration: the bias corrections (adam_bias_corrections) are missing");
  if (plan.registers) {
    if (!floss_registers_exists(s, chunk.k) || plan.threads != floss_registers_threads(s, chunk.k) ||
        plan.shared_bytes != floss_registers_shared_bytes(s, chunk.k, chunk.task))
      throw std::invalid_argument("launch_floss_iteration: the plan was made for another shape");
    launch_floss_registers(chunk, iteration, stream);
    return;
  }
  if (plan.shared_bytes != floss_shared_bytes(s, chunk.k, chunk.task.T(), plan.W_h_shared, plan.chain_shared))
    throw std::invalid_argument("launch_floss_iteration: the plan was made for another shape");
  CUDA_CHECK(cudaFuncSetAttribute(floss_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  int(plan.shared_bytes)));
  RNNSWEEP_LAUNCH(floss_kernel, chunk.K, plan.threads, plan.shared_bytes, stream)(chunk, plan.W_h_shared, plan.chain_shared,
                                                                                  iteration);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace rnnsweep::cuda
