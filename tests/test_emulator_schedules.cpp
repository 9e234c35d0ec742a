// The block emulator as a race detector (tests/emulator/block_emulator.h, "schedules"): each
// schedule runs the threads in the order it names; a correct kernel gives the same bits under
// every schedule; planted races (a missing barrier, a write-after-read hazard, a reduction's
// scratch reused while a warp lags, two blocks writing one word) are each caught, with a report
// that names the kernel, the schedule and the first value that differs.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/cuda_utils.cuh"
#include "kernels/portability.cuh"

static_assert(RNNSWEEP_EMULATED == 1, "this file tests the emulator; it must not be compiled by nvcc");

namespace emu = rnnsweep::emu;
using rnnsweep::cuda::DeviceBuffer;

namespace {

// ---- Kernels ----------------------------------------------------------------------------------

// Every thread reads its right neighbour's write: needs the barrier between.
RNNSWEEP_KERNEL void neighbour_read(int* out, bool with_barrier) {
  RNNSWEEP_DYNAMIC_SHARED(int, s);
  const int tid = int(threadIdx.x), n = int(blockDim.x);
  s[tid] = 3 * tid + 1;
  if (with_barrier) __syncthreads();
  out[tid] = s[(tid + 1) % n];
}

// Every thread reads its neighbour's value, then overwrites its own: without the second barrier
// a neighbour may already have overwritten the value to be read (write after read).
RNNSWEEP_KERNEL void read_then_overwrite(int* out, bool with_barrier) {
  RNNSWEEP_DYNAMIC_SHARED(int, s);
  const int tid = int(threadIdx.x), n = int(blockDim.x);
  s[tid] = tid;
  __syncthreads();
  const int v = s[(tid + 1) % n];
  if (with_barrier) __syncthreads();
  s[tid] = 2 * v + 1;
  __syncthreads();
  out[tid] = s[tid];
}

// Two block-wide sums through one scratch array, as kernels/block_ops.cuh's block_sum: without
// the barrier before the second sum writes its scratch, a warp that runs ahead through its
// shuffles overwrites a partial sum that a lagging thread has not read yet. Round-robin
// schedules move every thread one stretch per round and never show it; greedy ones do.
RNNSWEEP_DEVICE float warp_total(float v) {
  for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

RNNSWEEP_DEVICE float scratch_sum(float v, float* scratch, bool with_barrier) {
  v = warp_total(v);
  if (with_barrier) __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0;
  for (unsigned w = 0; w < blockDim.x / 32; ++w) total += scratch[w];
  return total;
}

RNNSWEEP_KERNEL void two_sums(float* out, bool with_barrier) {
  RNNSWEEP_DYNAMIC_SHARED(float, scratch);
  const float first = scratch_sum(float(threadIdx.x), scratch, true);
  const float second = scratch_sum(float(2 * threadIdx.x + 1), scratch, with_barrier);
  out[threadIdx.x] = first;
  out[blockDim.x + threadIdx.x] = second;
}

// Every block writes the same word: the last block wins, whichever that is.
RNNSWEEP_KERNEL void blocks_collide(int* out) {
  if (threadIdx.x == 0) out[0] = int(blockIdx.x);
}

// Reads its shared word before anything wrote it.
RNNSWEEP_KERNEL void uninitialised_read(int* out) {
  RNNSWEEP_DYNAMIC_SHARED(float, s);
  out[threadIdx.x] = s[threadIdx.x] > 0 ? 1 : 0;
}

// Tree reduction of each block's slice (correct: must pass every schedule).
RNNSWEEP_KERNEL void tree_sum(const float* x, float* out, int n) {
  RNNSWEEP_DYNAMIC_SHARED(float, s);
  const int tid = int(threadIdx.x), i = int(blockIdx.x * blockDim.x) + tid;
  s[tid] = i < n ? x[i] : 0.0f;
  for (int half = int(blockDim.x) / 2; half > 0; half /= 2) {
    __syncthreads();
    if (tid < half) s[tid] += s[tid + half];
  }
  if (tid == 0) out[blockIdx.x] = s[0];
}

// The order threads run in: a ticket before and one after a shuffle (a warp barrier).
RNNSWEEP_KERNEL void tickets(int* counter, int* first, int* second) {
  first[threadIdx.x] = atomicAdd(counter, 1);
  (void)__shfl_xor_sync(0xffffffffu, 0, 1);
  second[threadIdx.x] = atomicAdd(counter, 1);
}

// ---- Helpers ----------------------------------------------------------------------------------

template <typename T>
std::vector<T> download(const DeviceBuffer<T>& b) {
  std::vector<T> host(b.size());
  b.download(host.data(), host.size());
  return host;
}

emu::Schedule named(const std::string& name) { return emu::parse_schedule(name); }

// Tickets of a 64-thread block (two warps) under one schedule: {first..., second...}.
std::vector<int> tickets_under(const emu::Schedule& schedule) {
  const emu::ScopedSchedules only({schedule});
  DeviceBuffer<int> counter(1), first(64), second(64);
  counter.zero();
  RNNSWEEP_LAUNCH(tickets, 1, 64, 0, nullptr)(counter.get(), first.get(), second.get());
  std::vector<int> all = download(first);
  const std::vector<int> after = download(second);
  all.insert(all.end(), after.begin(), after.end());
  return all;
}

// The race report of a launch, or "" when every schedule agreed.
template <typename Launch>
std::string race_report(Launch&& launch) {
  try {
    launch();
  } catch (const emu::RaceDetected& e) {
    return e.what();
  }
  return "";
}

class Schedules : public ::testing::Test {
 protected:
  // The tests set their schedules themselves, whatever RNNSWEEP_EMU_SCHEDULES says.
  emu::ScopedSchedules defaults{emu::default_schedules()};
  void SetUp() override { (void)cudaGetLastError(); }
  void TearDown() override { EXPECT_EQ(cudaGetLastError(), cudaSuccess); }
};

// ---- Tests ------------------------------------------------------------------------------------

TEST_F(Schedules, EachRunsTheThreadsInTheOrderItNames) {
  std::vector<int> want(128);
  // round-robin, ascending: every thread one stretch per round, in id order
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(tickets_under(named("round-robin/ascending")), want);
  // round-robin, descending
  for (int t = 0; t < 64; ++t) want[t] = 63 - t, want[64 + t] = 64 + 63 - t;
  EXPECT_EQ(tickets_under(named("round-robin/descending")), want);
  // greedy, ascending: warp 0 runs past its shuffle before warp 1 starts
  for (int t = 0; t < 64; ++t) {
    const int warp = t / 32, lane = t % 32;
    want[t] = 64 * warp + lane;
    want[64 + t] = 64 * warp + 32 + lane;
  }
  EXPECT_EQ(tickets_under(named("greedy/ascending")), want);
  // greedy, descending: warp 1 first, from its last lane down
  for (int t = 0; t < 64; ++t) {
    const int warp = 1 - t / 32, lane = 31 - t % 32;
    want[t] = 64 * warp + lane;
    want[64 + t] = 64 * warp + 32 + lane;
  }
  EXPECT_EQ(tickets_under(named("greedy/descending")), want);
  // round-robin, interleaved: lane 0 of each warp, then lane 1, ...
  for (int t = 0; t < 64; ++t) want[t] = 2 * (t % 32) + t / 32, want[64 + t] = 64 + want[t];
  EXPECT_EQ(tickets_under(named("round-robin/interleaved")), want);
  // random picks over a shuffled order: every ticket once, reproducible from the seed
  const std::vector<int> random1 = tickets_under(named("random/shuffled/seed=1"));
  std::vector<int> sorted = random1;
  std::sort(sorted.begin(), sorted.end());
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(sorted, want);
  EXPECT_EQ(tickets_under(named("random/shuffled/seed=1")), random1);
  EXPECT_NE(tickets_under(named("random/shuffled/seed=2")), random1);
  EXPECT_NE(random1, want);
}

TEST_F(Schedules, BlocksReversedRunsTheLastBlockFirst) {
  const emu::ScopedSchedules only({named("round-robin/ascending/blocks-reversed")});
  DeviceBuffer<int> out(1);
  RNNSWEEP_LAUNCH(blocks_collide, 5, 32, 0, nullptr)(out.get());
  EXPECT_EQ(download(out)[0], 0);
}

TEST_F(Schedules, CorrectKernelsGiveTheSameBitsUnderEverySchedule) {
  const int blocks = 3, threads = 256, n = blocks * threads - 5;
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = 1.0f / float(i + 1);  // sums whose rounding depends on the order
  DeviceBuffer<float> x_dev(n), sums(blocks);
  x_dev.upload(x.data(), n);
  EXPECT_EQ(race_report([&] {
              RNNSWEEP_LAUNCH(tree_sum, blocks, threads, threads * sizeof(float), nullptr)(x_dev.get(), sums.get(), n);
            }),
            "");
  DeviceBuffer<int> ints(256);
  DeviceBuffer<float> floats(2 * 256);
  EXPECT_EQ(race_report([&] { RNNSWEEP_LAUNCH(neighbour_read, 1, 256, 256 * sizeof(int), nullptr)(ints.get(), true); }), "");
  EXPECT_EQ(race_report([&] { RNNSWEEP_LAUNCH(read_then_overwrite, 1, 256, 256 * sizeof(int), nullptr)(ints.get(), true); }),
            "");
  EXPECT_EQ(race_report([&] { RNNSWEEP_LAUNCH(two_sums, 1, 256, 8 * sizeof(float), nullptr)(floats.get(), true); }), "");
  const std::vector<float> both = download(floats);
  EXPECT_EQ(both[0], 255.0f * 256.0f / 2);
  EXPECT_EQ(both[256], 256.0f * 256.0f);
}

TEST_F(Schedules, AMissingBarrierIsCaughtAndNamed) {
  DeviceBuffer<int> out(256);
  const std::string report =
      race_report([&] { RNNSWEEP_LAUNCH(neighbour_read, 1, 256, 256 * sizeof(int), nullptr)(out.get(), false); });
  ASSERT_NE(report, "") << "a missing barrier went unnoticed";
  EXPECT_NE(report.find("race in neighbour_read (grid (1,1,1), block (256,1,1))"), std::string::npos) << report;
  EXPECT_NE(report.find("under schedule round-robin/descending/blocks-reversed (against round-robin/ascending)"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("the first at byte"), std::string::npos) << report;
  // What is left is the primary schedule's result: in ascending order every thread but the last
  // reads its neighbour's word before it is written (the emulator's garbage, -1 as int); the
  // last reads thread 0's, written before it.
  const std::vector<int> left = download(out);
  for (int t = 0; t < 256; ++t) EXPECT_EQ(left[t], t == 255 ? 1 : -1) << t;
}

TEST_F(Schedules, AWriteAfterReadHazardIsCaught) {
  DeviceBuffer<int> out(64);
  EXPECT_NE(race_report([&] {
              RNNSWEEP_LAUNCH(read_then_overwrite, 1, 64, 64 * sizeof(int), nullptr)(out.get(), false);
            }),
            "")
      << "a write-after-read hazard went unnoticed";
}

TEST_F(Schedules, AScratchReusedWhileAWarpLagsNeedsGreedyPicks) {
  DeviceBuffer<float> out(2 * 256);
  auto launch = [&] { RNNSWEEP_LAUNCH(two_sums, 1, 256, 8 * sizeof(float), nullptr)(out.get(), false); };
  {
    // The hazard is real, but round-robin schedules cannot show it: a warp needs ten shuffle
    // barriers to get from reading the scratch to writing it, and every other thread reads it
    // in the first round.
    const emu::ScopedSchedules round_robin(
        {named("round-robin/ascending"), named("round-robin/descending"), named("round-robin/interleaved")});
    EXPECT_EQ(race_report(launch), "");
  }
  const std::string report = race_report(launch);
  ASSERT_NE(report, "") << "the default schedules missed the reused scratch";
  EXPECT_NE(report.find("under schedule greedy/"), std::string::npos) << report;
}

TEST_F(Schedules, ARaceBetweenBlocksIsCaught) {
  DeviceBuffer<int> out(1);
  const std::string report = race_report([&] { RNNSWEEP_LAUNCH(blocks_collide, 4, 32, 0, nullptr)(out.get()); });
  ASSERT_NE(report, "");
  EXPECT_NE(report.find("blocks-reversed"), std::string::npos) << report;
  EXPECT_NE(report.find("as float"), std::string::npos) << report;
}

TEST_F(Schedules, AReadOfSharedMemoryThatNothingWroteIsCaught) {
  // Garbage that reads as NaN compares like 0 (NaN > 0 is false): only another fill shows it.
  DeviceBuffer<int> out(32);
  const std::string report =
      race_report([&] { RNNSWEEP_LAUNCH(uninitialised_read, 1, 32, 32 * sizeof(float), nullptr)(out.get()); });
  EXPECT_NE(report.find("/fill=0x3f"), std::string::npos) << report;
}

TEST_F(Schedules, NamesRoundTripAndBadNamesSayWhatIsAllowed) {
  for (const emu::Schedule& s : emu::default_schedules()) EXPECT_EQ(emu::parse_schedule(s.name()), s) << s.name();
  for (const emu::Schedule& s : emu::quick_schedules()) EXPECT_EQ(emu::parse_schedule(s.name()), s) << s.name();
  EXPECT_EQ(emu::parse_schedules("default"), emu::default_schedules());
  EXPECT_EQ(emu::parse_schedule("greedy/ascending/fill=0x3f").shared_fill, 0x3f);
  const auto two = emu::parse_schedules("greedy/descending,random/shuffled/seed=7");
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1].seed, 7u);
  for (const char* bad : {"greedy", "sideways/ascending", "greedy/upwards", "greedy/ascending/twice",
                          "random/shuffled/seed=x", "greedy/ascending/fill=3f", ""}) {
    try {
      emu::parse_schedule(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("round-robin, greedy or random"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(emu::set_schedules({}), std::invalid_argument);
}

}  // namespace
