// Tests of the block emulator (tests/emulator/block_emulator.h) that lets kernels/ run without
// a GPU: barriers, shuffles, launch checks, failure reporting and the emulated runtime. The
// kernels here are written as kernels/ writes them, through kernels/portability.cuh.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/portability.cuh"

static_assert(RNNSWEEP_EMULATED == 1, "this file tests the emulator; it must not be compiled by nvcc");

namespace {

// ---- Kernels ----------------------------------------------------------------------------------

// Tree reduction of each block's slice of x in shared memory, for any block size.
RNNSWEEP_KERNEL void block_sum(const float* x, float* out, int n) {
  RNNSWEEP_DYNAMIC_SHARED(float, s);
  const int tid = threadIdx.x;
  const int i = blockIdx.x * blockDim.x + tid;
  s[tid] = i < n ? x[i] : 0.0f;
  int half = 1;
  while (half < int(blockDim.x)) half *= 2;
  for (half /= 2; half > 0; half /= 2) {
    __syncthreads();
    if (tid < half && tid + half < int(blockDim.x)) s[tid] += s[tid + half];
  }
  __syncthreads();
  if (tid == 0) out[blockIdx.x] = s[0];
}

struct Index {
  uint3 thread, block;
  dim3 block_dim, grid_dim;
  unsigned lane31_y;  // threadIdx.y of lane 31 of this thread's warp (x-fastest linearisation)
};

RNNSWEEP_KERNEL void record_indices(Index* out) {
  const unsigned in_block = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned y31 = __shfl_sync(0xffffffffu, threadIdx.y, 31);
  out[block * blockDim.x * blockDim.y * blockDim.z + in_block] =
      Index{threadIdx, blockIdx, blockDim, gridDim, y31};
}

struct ShuffleResults {
  int xor_sum;         // warp sum by butterfly (int)
  float down_sum;      // lane 0: warp sum by shfl_down (float)
  double up_scan;      // inclusive prefix sum by shfl_up (double)
  unsigned bcast;      // lane 3's value by shfl_sync (unsigned)
  int xor16_sum;       // butterfly with width 16: the sum of the 16-lane section
  int idx16;           // shfl_sync(v, 0, 16): the section's first lane
  int down16_edge;     // shfl_down(v, 8, 16): own value where lane % 16 + 8 >= 16
  int xor_partial8;    // butterfly over 1, 2, 4 only (a partial warp of 8 lanes)
  float down_missing;  // shfl_down by 16: the source lane may not exist
};

// Value of a thread: its linear id + 1, so that sums are distinct per warp.
RNNSWEEP_KERNEL void shuffles(ShuffleResults* out) {
  const unsigned full = 0xffffffffu;
  const int v = int(threadIdx.x) + 1;
  ShuffleResults r{};
  r.xor_sum = v;
  for (int m = 16; m > 0; m /= 2) r.xor_sum += __shfl_xor_sync(full, r.xor_sum, m);
  r.down_sum = float(v);
  for (unsigned d = 16; d > 0; d /= 2) r.down_sum += __shfl_down_sync(full, r.down_sum, d);
  r.up_scan = double(v);
  for (unsigned d = 1; d < 32; d *= 2) {
    const double t = __shfl_up_sync(full, r.up_scan, d);
    if (threadIdx.x % 32 >= d) r.up_scan += t;
  }
  r.bcast = __shfl_sync(full, unsigned(v), 3);
  r.xor16_sum = v;
  for (int m = 8; m > 0; m /= 2) r.xor16_sum += __shfl_xor_sync(full, r.xor16_sum, m, 16);
  r.idx16 = __shfl_sync(full, v, 0, 16);
  r.down16_edge = __shfl_down_sync(full, v, 8, 16);
  r.xor_partial8 = v;
  for (int m = 4; m > 0; m /= 2) r.xor_partial8 += __shfl_xor_sync(full, r.xor_partial8, m);
  r.down_missing = __shfl_down_sync(full, float(v), 16);
  out[threadIdx.x] = r;
}

// Warp 0 does five butterfly reductions between two __syncthreads, warp 1 one.
RNNSWEEP_KERNEL void uneven_shuffles(int* out) {
  RNNSWEEP_DYNAMIC_SHARED(int, s);
  const unsigned warp = threadIdx.x / 32;
  __syncthreads();
  int total = 0;
  const int rounds = warp == 0 ? 5 : 1;
  for (int r = 0; r < rounds; ++r) {
    int v = int(threadIdx.x % 32) * (r + 1);
    for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
    total += v;
  }
  if (threadIdx.x % 32 == 0) s[warp] = total;
  __syncthreads();
  out[threadIdx.x] = s[1 - warp];  // the other warp's result, through shared memory
}

RNNSWEEP_KERNEL void divergent_syncthreads(int* out) {
  if (threadIdx.x < 16) __syncthreads();
  __syncthreads();
  out[threadIdx.x] = 1;
}

int live_locals = 0;  // kernel locals constructed and not yet destroyed
struct Local {
  Local() { ++live_locals; }
  ~Local() { --live_locals; }
  Local(const Local&) = delete;
  Local& operator=(const Local&) = delete;
};

// In block 1, lanes 0..15 of warp 0 shuffle while everyone else waits at __syncthreads.
RNNSWEEP_KERNEL void shuffle_vs_syncthreads(int* out) {
  Local local;
  int v = int(threadIdx.x);
  if (blockIdx.x == 1 && threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

// Threads from `live` on exit at once; the rest reduce with __syncthreads and warp ops.
RNNSWEEP_KERNEL void early_exit_sum(int live, int* out) {
  RNNSWEEP_DYNAMIC_SHARED(int, s);
  if (int(threadIdx.x) >= live) return;
  s[threadIdx.x] = int(threadIdx.x) + 1;
  __syncwarp();
  for (int step = 0; step < 3; ++step) __syncthreads();
  if (threadIdx.x == 0) {
    int sum = 0;
    for (int i = 0; i < live; ++i) sum += s[i];
    *out = sum;
  }
}

template <int Tag>
RNNSWEEP_KERNEL void touch_shared(int* ran, int bytes) {
  RNNSWEEP_DYNAMIC_SHARED(unsigned char, s);
  s[bytes - 1] = 1;  // the whole requested range is usable
  if (threadIdx.x == 0) *ran = Tag;
}

RNNSWEEP_KERNEL void shared_garbage(int* nan_count) {
  RNNSWEEP_DYNAMIC_SHARED(float, s);
  if (std::isnan(s[threadIdx.x])) atomicAdd(nan_count, 1);  // read before any write: garbage
  s[threadIdx.x] = 0.0f;                                    // must not leak into the next block
}

RNNSWEEP_KERNEL void throws_in_one_thread(int* reached) {
  Local local;
  __syncthreads();
  if (blockIdx.x == 1 && threadIdx.x == 5) throw std::runtime_error("kernel failure in thread 5");
  __syncthreads();
  atomicAdd(reached, 1);
}

struct Affine {
  float scale;
  int offset;
  double extra[3];
};

template <int N>
RNNSWEEP_KERNEL void affine(Affine p, const float* x, float* y, float bias) {
  p.offset += int(threadIdx.x);  // a per-thread copy: must not affect other threads
  y[threadIdx.x] = N * (p.scale * x[threadIdx.x] + float(p.offset) + float(p.extra[2])) + bias;
}

RNNSWEEP_KERNEL void atomics(float* f, double* d, int* i, unsigned* u, unsigned long long* ull, int* mx,
                             int* mn, int* old_max_seen) {
  const int id = int(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(f, 0.5f);
  atomicAdd(d, 0.25);
  atomicAdd(i, 2);
  atomicAdd(u, 3u);
  atomicAdd(ull, 1ull << 33);
  const int old = atomicMax(mx, id);
  if (old > id) atomicAdd(old_max_seen, 1);  // only in reverse order, which we never run
  atomicMin(mn, -id);
}

RNNSWEEP_KERNEL void many_barriers(int rounds, int* out) {
  RNNSWEEP_DYNAMIC_SHARED(int, s);
  const int n = int(blockDim.x);
  int acc = 0;
  for (int r = 0; r < rounds; ++r) {
    s[threadIdx.x] = r + int(threadIdx.x);
    __syncthreads();
    acc += s[(threadIdx.x + 1) % n];
    __syncthreads();
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

// ---- Tests ------------------------------------------------------------------------------------

class Emulator : public ::testing::Test {
 protected:
  void SetUp() override { (void)cudaGetLastError(); }
  void TearDown() override { EXPECT_EQ(cudaGetLastError(), cudaSuccess); }
};

TEST_F(Emulator, BlockTreeReductionMatchesSerialSum) {
  for (int threads : {1, 33, 256}) {
    const int blocks = 5, n = blocks * threads - 3;  // a ragged last block
    std::vector<float> x(n);
    for (int i = 0; i < n; ++i) x[i] = float((i * 7) % 13 - 6);
    std::vector<float> out(blocks, -1.0f);
    RNNSWEEP_LAUNCH(block_sum, blocks, threads, threads * sizeof(float), nullptr)(x.data(), out.data(), n);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    for (int b = 0; b < blocks; ++b) {
      float expect = 0.0f;
      for (int i = b * threads; i < std::min(n, (b + 1) * threads); ++i) expect += x[i];
      EXPECT_EQ(out[b], expect) << "threads " << threads << ", block " << b;
    }
  }
}

TEST_F(Emulator, IndicesIn2dAnd3dShapes) {
  for (auto [grid, block] : {std::pair{dim3(2, 3, 2), dim3(4, 2, 3)}, std::pair{dim3(3, 2), dim3(16, 4)}}) {
    const unsigned per_block = block.x * block.y * block.z, blocks = grid.x * grid.y * grid.z;
    std::vector<Index> out(per_block * blocks, Index{{9, 9, 9}, {9, 9, 9}, dim3(0, 0, 0), dim3(0, 0, 0), 99});
    RNNSWEEP_LAUNCH(record_indices, grid, block, 0, nullptr)(out.data());
    for (unsigned b = 0; b < blocks; ++b)
      for (unsigned t = 0; t < per_block; ++t) {
        const Index& r = out[b * per_block + t];
        EXPECT_EQ(r.thread.x, t % block.x);
        EXPECT_EQ(r.thread.y, t / block.x % block.y);
        EXPECT_EQ(r.thread.z, t / (block.x * block.y));
        EXPECT_EQ(r.block.x, b % grid.x);
        EXPECT_EQ(r.block.y, b / grid.x % grid.y);
        EXPECT_EQ(r.block.z, b / (grid.x * grid.y));
        EXPECT_TRUE(r.block_dim.x == block.x && r.block_dim.y == block.y && r.block_dim.z == block.z);
        EXPECT_TRUE(r.grid_dim.x == grid.x && r.grid_dim.y == grid.y && r.grid_dim.z == grid.z);
        // Lane 31 of the warp is linear id 32w + 31; in a 24-thread block it does not exist and
        // the shuffle returns all ones.
        const unsigned lane31 = t / 32 * 32 + 31;
        EXPECT_EQ(r.lane31_y, lane31 < per_block ? lane31 / block.x % block.y : 0xffffffffu) << "t " << t;
      }
  }
}

TEST_F(Emulator, ShufflesFollowCudaSemanticsIncludingPartialWarpAndWidth16) {
  const int n = 40;  // warp 1 has 8 lanes
  std::vector<ShuffleResults> out(n);
  RNNSWEEP_LAUNCH(shuffles, 1, n, 0, nullptr)(out.data());
  for (int t = 0; t < n; ++t) {
    const int lane = t % 32, warp_first = t - lane, warp_size = std::min(32, n - warp_first);
    const ShuffleResults& r = out[t];
    auto v = [&](int l) { return warp_first + l + 1; };  // value of lane l of this warp
    int section = 0, scan = 0;
    for (int l = lane / 16 * 16; l < lane / 16 * 16 + 16; ++l) section += v(l);
    for (int l = 0; l <= lane; ++l) scan += v(l);
    EXPECT_EQ(r.up_scan, double(scan)) << "t " << t;
    EXPECT_EQ(r.bcast, unsigned(v(3))) << "t " << t;
    EXPECT_EQ(r.idx16, v(lane / 16 * 16)) << "t " << t;
    // In the partial warp, lanes 8..15 do not exist: an int of all ones.
    const int down16 = lane % 16 + 8 >= 16 ? v(lane) : lane + 8 < warp_size ? v(lane + 8) : -1;
    EXPECT_EQ(r.down16_edge, down16) << "t " << t;
    int partial = 0;
    for (int l = lane / 8 * 8; l < lane / 8 * 8 + 8; ++l) partial += v(l);
    EXPECT_EQ(r.xor_partial8, partial) << "t " << t;
    if (warp_size == 32) {
      int sum = 0;
      for (int l = 0; l < 32; ++l) sum += v(l);
      EXPECT_EQ(r.xor_sum, sum) << "t " << t;
      if (lane == 0) {
        EXPECT_EQ(r.down_sum, float(sum));
      }
      EXPECT_EQ(r.xor16_sum, section) << "t " << t;
      EXPECT_EQ(r.down_missing, lane < 16 ? float(v(lane + 16)) : float(v(lane))) << "t " << t;
    } else {
      // Lanes past the partial warp's end do not exist: reading them yields NaN (all ones).
      EXPECT_TRUE(std::isnan(r.down_missing)) << "t " << t;
    }
  }
}

TEST_F(Emulator, WarpsShuffleDifferentNumbersOfTimesBetweenSyncthreads) {
  std::vector<int> out(64, -1);
  RNNSWEEP_LAUNCH(uneven_shuffles, 1, 64, 2 * sizeof(int), nullptr)(out.data());
  const int lane_sum = 31 * 32 / 2;
  const int warp0 = lane_sum * (1 + 2 + 3 + 4 + 5), warp1 = lane_sum;
  for (int t = 0; t < 64; ++t) EXPECT_EQ(out[t], t < 32 ? warp1 : warp0) << "t " << t;
}

TEST_F(Emulator, SyncthreadsReachedBySomeThreadsIsADeadlock) {
  std::vector<int> out(32, 0);
  try {
    RNNSWEEP_LAUNCH(divergent_syncthreads, 1, 32, 0, nullptr)(out.data());
    FAIL() << "expected std::logic_error";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("deadlock"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("__syncthreads"), std::string::npos) << e.what();
  }
  EXPECT_EQ(std::accumulate(out.begin(), out.end(), 0), 0);
}

TEST_F(Emulator, ShuffleAgainstSyncthreadsIsADeadlockNamingTheBlock) {
  std::vector<int> out(3 * 64, 0);
  live_locals = 0;
  try {
    RNNSWEEP_LAUNCH(shuffle_vs_syncthreads, 3, 64, 0, nullptr)(out.data());
    FAIL() << "expected std::logic_error";
  } catch (const std::logic_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("deadlock in block (1,0,0)"), std::string::npos) << what;
    EXPECT_NE(what.find("48 wait at __syncthreads"), std::string::npos) << what;
    EXPECT_NE(what.find("warp 0: 16 of 32 live lanes"), std::string::npos) << what;
  }
  EXPECT_EQ(live_locals, 0) << "the abandoned threads' stacks were not unwound";
  EXPECT_EQ(out[63], 63);                                         // block 0 ran
  EXPECT_EQ(std::accumulate(out.begin() + 64, out.end(), 0), 0);  // block 1 did not finish, 2 never ran
  // The emulator is usable afterwards.
  std::vector<float> x(64, 1.0f), sum(1);
  RNNSWEEP_LAUNCH(block_sum, 1, 64, 64 * sizeof(float), nullptr)(x.data(), sum.data(), 64);
  EXPECT_EQ(sum[0], 64.0f);
}

TEST_F(Emulator, ThreadsExitingEarlyDoNotBlockTheOthers) {
  for (int live : {1, 40, 63, 64}) {
    int out = -1;
    RNNSWEEP_LAUNCH(early_exit_sum, 1, 64, 64 * sizeof(int), nullptr)(live, &out);
    EXPECT_EQ(out, live * (live + 1) / 2) << "live " << live;
  }
}

TEST_F(Emulator, DynamicSharedMemoryLimitsAreCudas) {
  int ran = 0;
  // Over 48 KiB without raising the kernel's attribute: refused, nothing runs.
  RNNSWEEP_LAUNCH(touch_shared<1>, 1, 32, 64 * 1024, nullptr)(&ran, 64 * 1024);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // cleared by the read
  EXPECT_EQ(ran, 0);
  // Exactly 48 KiB needs nothing.
  RNNSWEEP_LAUNCH(touch_shared<1>, 1, 32, 48 * 1024, nullptr)(&ran, 48 * 1024);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(ran, 1);
  // Raised for kernel 2 only, up to the opt-in limit of 227 KiB.
  ASSERT_EQ(cudaFuncSetAttribute(touch_shared<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024),
            cudaSuccess);
  RNNSWEEP_LAUNCH(touch_shared<2>, 2, 32, 227 * 1024, nullptr)(&ran, 227 * 1024);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(ran, 2);
  ran = 0;
  RNNSWEEP_LAUNCH(touch_shared<3>, 1, 32, 64 * 1024, nullptr)(&ran, 64 * 1024);  // not kernel 3
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(ran, 0);
  // A raised attribute smaller than the request does not do.
  ASSERT_EQ(cudaFuncSetAttribute(touch_shared<3>, cudaFuncAttributeMaxDynamicSharedMemorySize, 60 * 1024),
            cudaSuccess);
  RNNSWEEP_LAUNCH(touch_shared<3>, 1, 32, 64 * 1024, nullptr)(&ran, 64 * 1024);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  // Beyond 227 KiB: neither the attribute nor the launch.
  EXPECT_EQ(cudaFuncSetAttribute(touch_shared<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  RNNSWEEP_LAUNCH(touch_shared<2>, 1, 32, 228 * 1024, nullptr)(&ran, 228 * 1024);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(ran, 0);
  cudaDeviceProp prop;
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  EXPECT_EQ(prop.sharedMemPerBlockOptin, 227u * 1024);
  EXPECT_EQ(prop.sharedMemPerBlock, 48u * 1024);
  EXPECT_EQ(std::string(prop.name), "host block emulator");
}

TEST_F(Emulator, BadConfigurationsRunNothing) {
  int ran = 0;
  RNNSWEEP_LAUNCH(touch_shared<4>, 1, 1025, 16, nullptr)(&ran, 16);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  RNNSWEEP_LAUNCH(touch_shared<4>, 0, 32, 16, nullptr)(&ran, 16);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  RNNSWEEP_LAUNCH(touch_shared<4>, 1, dim3(32, 32, 2), 16, nullptr)(&ran, 16);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(ran, 0);
  RNNSWEEP_LAUNCH(touch_shared<4>, 1, dim3(32, 32), 16, nullptr)(&ran, 16);  // 1024 is fine
  EXPECT_EQ(ran, 4);
}

// Tests whose kernels count into host memory with atomics run under one schedule: a race
// check replays every launch, and would count again (see block_emulator.h).
rnnsweep::emu::ScopedSchedules primary_only() { return rnnsweep::emu::ScopedSchedules({rnnsweep::emu::Schedule{}}); }

TEST_F(Emulator, SharedMemoryStartsAsGarbageInEveryBlock) {
  const auto one = primary_only();
  int nan_count = 0;
  RNNSWEEP_LAUNCH(shared_garbage, 3, 64, 64 * sizeof(float), nullptr)(&nan_count);
  EXPECT_EQ(nan_count, 3 * 64);
}

TEST_F(Emulator, ExceptionInAKernelThreadPropagates) {
  const auto one = primary_only();
  int reached = 0;
  live_locals = 0;
  try {
    RNNSWEEP_LAUNCH(throws_in_one_thread, 3, 64, 0, nullptr)(&reached);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "kernel failure in thread 5");
  }
  EXPECT_EQ(reached, 64);  // block 0 only: block 1 was abandoned, block 2 never started
  EXPECT_EQ(live_locals, 0);
  reached = 0;
  RNNSWEEP_LAUNCH(throws_in_one_thread, 1, 64, 0, nullptr)(&reached);
  EXPECT_EQ(reached, 64);
}

TEST_F(Emulator, TemplateKernelsStructArgumentsAndConversions) {
  std::vector<float> x(32), y(32, 0.0f);
  for (int i = 0; i < 32; ++i) x[i] = float(i);
  const Affine p{2.0f, 10, {0.0, 0.0, 0.5}};
  int bias = 3;  // converted to the kernel's float parameter
  RNNSWEEP_LAUNCH(affine<4>, 1, 32, 0, nullptr)(p, x.data(), y.data(), bias);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 4 * (2.0f * float(i) + float(10 + i) + 0.5f) + 3.0f) << i;
  EXPECT_EQ(p.offset, 10);
}

TEST_F(Emulator, AtomicsReturnOldValuesAndAccumulate) {
  const auto one = primary_only();
  float f = 0;
  double d = 0;
  int i = 0, mx = -1, mn = 0, old_max_seen = 0;
  unsigned u = 0;
  unsigned long long ull = 0;
  RNNSWEEP_LAUNCH(atomics, 4, 256, 0, nullptr)(&f, &d, &i, &u, &ull, &mx, &mn, &old_max_seen);
  EXPECT_EQ(f, 512.0f);
  EXPECT_EQ(d, 256.0);
  EXPECT_EQ(i, 2048);
  EXPECT_EQ(u, 3072u);
  EXPECT_EQ(ull, 1024ull << 33);
  EXPECT_EQ(mx, 1023);
  EXPECT_EQ(mn, -1023);
  EXPECT_EQ(old_max_seen, 0);
  int x = 5;
  EXPECT_EQ(atomicMax(&x, 3), 5);
  EXPECT_EQ(x, 5);
  EXPECT_EQ(atomicMin(&x, 3), 5);
  EXPECT_EQ(x, 3);
  EXPECT_EQ(atomicAdd(&x, 4), 3);
}

TEST_F(Emulator, ThousandsOfBarriersAreFast) {
  const int blocks = 4, threads = 256, rounds = 2000;
  std::vector<int> out(blocks * threads);
  const auto start = std::chrono::steady_clock::now();
  RNNSWEEP_LAUNCH(many_barriers, blocks, threads, threads * sizeof(int), nullptr)(rounds, out.data());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (int t = 0; t < threads; ++t) {
    const int next = (t + 1) % threads;
    EXPECT_EQ(out[3 * threads + t], rounds * next + rounds * (rounds - 1) / 2) << t;
  }
  // 4 million context switches; generous so that a loaded CI machine does not fail it.
  EXPECT_LT(seconds, 10.0);
}

TEST_F(Emulator, IndicesOutsideAKernelThrow) {
  EXPECT_THROW((void)threadIdx.x, std::logic_error);
  EXPECT_THROW(__syncthreads(), std::logic_error);
}

TEST_F(Emulator, DeviceMemoryRoundTrip) {
  size_t free0 = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  EXPECT_EQ(total, size_t(1) << 30);
  const size_t n = 1000;
  float* a = nullptr;
  float* b = nullptr;
  ASSERT_EQ(cudaMalloc(&a, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&b), n * sizeof(float)), cudaSuccess);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % 256, 0u);
  size_t free1 = 0;
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_EQ(free0 - free1, 2 * n * sizeof(float));

  std::vector<float> host(n), back(n, -1.0f);
  std::iota(host.begin(), host.end(), 0.0f);
  ASSERT_EQ(cudaMemcpy(a, host.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(b, a, n * sizeof(float), cudaMemcpyDeviceToDevice, nullptr), cudaSuccess);
  ASSERT_EQ(cudaMemset(b, 0, 10 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(back.data(), b, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(back[i], i < 10 ? 0.0f : float(i)) << i;

  // Device side outside an allocation, swapped direction, unknown pointer: refused.
  EXPECT_EQ(cudaMemcpy(a + 1, host.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(host.data(), a, n * sizeof(float), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemset(host.data(), 0, 4), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(host.data()), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);

  ASSERT_EQ(cudaFree(a), cudaSuccess);
  ASSERT_EQ(cudaFree(b), cudaSuccess);
  EXPECT_EQ(cudaFree(nullptr), cudaSuccess);
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_EQ(free1, free0);

  // A smaller emulated device, as chunking code sees one.
  rnnsweep::emu::set_memory_capacity(1 << 20);
  void* big = nullptr;
  EXPECT_EQ(cudaMalloc(&big, (1 << 20) + 1), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
  ASSERT_EQ(cudaMalloc(&big, 1 << 19), cudaSuccess);
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_EQ(total, size_t(1) << 20);
  EXPECT_EQ(free1, size_t(1) << 19);
  EXPECT_EQ(cudaFree(big), cudaSuccess);
  rnnsweep::emu::set_memory_capacity(size_t(1) << 30);
  EXPECT_EQ(rnnsweep::emu::device_bytes_in_use(), 0u);

  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, 16 * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);

  int count = 0;
  EXPECT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  EXPECT_EQ(count, 1);
  EXPECT_EQ(cudaSetDevice(0), cudaSuccess);
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidValue), "invalid argument");
}

TEST_F(Emulator, StreamsAndEvents) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  cudaEvent_t start, stop;
  ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&stop), cudaSuccess);
  float ms = -1.0f;
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaErrorInvalidResourceHandle);  // not recorded
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);
  ASSERT_EQ(cudaEventRecord(start, stream), cudaSuccess);
  std::vector<float> x(64, 1.0f), sum(1);
  RNNSWEEP_LAUNCH(block_sum, 1, 64, 64 * sizeof(float), stream)(x.data(), sum.data(), 64);
  ASSERT_EQ(cudaEventRecord(stop, stream), cudaSuccess);
  ASSERT_EQ(cudaEventSynchronize(stop), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ASSERT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  EXPECT_EQ(sum[0], 64.0f);
  EXPECT_EQ(cudaEventDestroy(start), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(stop), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
