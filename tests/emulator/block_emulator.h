// Block emulator: lets the CUDA kernels of kernels/ compile with a plain C++ compiler and run
// on the host, so that machines without a GPU (CI) execute the kernels' own source. It is
// reached through kernels/portability.cuh, never included by kernel code directly.
//
// What it emulates:
// - the qualifiers (__global__, __device__, __host__, __forceinline__, __align__), dim3, uint3,
//   float2, float4, double2 and uint4,
//   warpSize, threadIdx / blockIdx / blockDim / gridDim (of the emulated thread now running);
// - a launch (RNNSWEEP_LAUNCH -> launcher(kernel, name, grid, block, shared_bytes, stream)(args...)):
//   the configuration is checked as CUDA does (1..1024 threads, a non-empty grid, dynamic
//   shared memory over 48 KiB only after cudaFuncSetAttribute raised the kernel's limit, never
//   over 227 KiB); a bad one records the error for cudaGetLastError and runs nothing. Then the
//   blocks run one after another, synchronously; within a block every thread is a fiber
//   (Boost.Context, 256 KiB guarded stack), scheduled cooperatively on the calling OS thread:
//   a thread runs until it waits at a barrier (block or warp) or exits, then the schedule
//   picks the next ready thread. The arguments are converted to the kernel's parameter types
//   and every thread gets its own copy of them, as on the GPU;
// - schedules, as a race detector: which ready thread runs next is the schedule's choice
//   (Schedule below: round-robin, greedy or random picks over ascending, descending,
//   lane-interleaved or shuffled thread orders, blocks forward or reversed). Kernels without
//   atomics compute the same bits in every order, so a launch whose memory differs between
//   two schedules has a race. With several schedules set (the default; RNNSWEEP_EMU_SCHEDULES
//   or set_schedules), every launch runs under the first, then again from the same device
//   memory under each of the others, and any byte of device memory that differs afterwards
//   throws RaceDetected naming the kernel, the two schedules and the first differing value.
//   A missing __syncthreads between a write and another thread's read shows under ascending
//   against descending order; one whose hazard a warp shuffle delays (a warp running several
//   barriers ahead of another, e.g. a reduction's scratch reused too early) only under greedy
//   picks, which let one warp run as far as it can before the next; a race between blocks
//   under reversed blocks; a read of shared memory that nothing wrote under the replays that
//   fill it with other garbage (fill=0x3f);
// - dynamic shared memory: one buffer per block, refilled before each block with the
//   schedule's garbage (0xFF bytes, a NaN as float or double and -1 as int, unless the schedule
//   says otherwise) so that a kernel reading shared memory it did not write, or left over from
//   another block, shows it in results;
// - __syncthreads (and _count/_and/_or): a block barrier over the threads that have not exited.
//   All waiting threads must have reached the same __syncthreads (same file and line): CUDA
//   makes barriers in divergent code undefined, and the emulator reports it rather than
//   silently pairing two different barriers;
// - __syncwarp and the warp shuffles / votes: a separate warp barrier over the warp's live
//   lanes (linear thread ids 32w..32w+31, fewer in a last partial warp). A thread waiting at
//   __syncthreads never counts at a warp barrier nor the reverse, so warps may shuffle a
//   different number of times between two __syncthreads. Shuffles follow the PTX definition
//   (width sections, up/down out of range return the own value); reading a lane that does not
//   exist or has exited returns 0xFF bytes (CUDA: undefined). Masks are taken to name every
//   live lane of the warp, the only way our kernels use them;
// - deadlocks (no thread can run and not all finished): std::logic_error naming the block and
//   who waits where. An exception thrown by a kernel thread ends the launch: the other threads'
//   stacks are unwound (their destructors run) and the exception is rethrown from the launch;
// - asynchronous global-to-shared copies (__pipeline_memcpy_async, _commit, _wait_prior), held
//   back until waited for;
// - atomics (done with the compiler's atomic builtins, so launches from several host threads
//   at once stay correct), __ldg, __threadfence (no-op);
// - a subset of the CUDA runtime over host memory: errors, streams and events (everything is
//   synchronous, so they only keep the API), cudaMalloc and friends with an emulated capacity
//   (set_memory_capacity; cudaMemGetInfo reports what cudaMalloc holds against it), copies and
//   memsets that check the device side lies inside one cudaMalloc allocation, device
//   properties of an H100-like device, cudaFuncSetAttribute. Errors of runtime calls are also
//   recorded for cudaGetLastError, as CUDA does.
//
// What it does not emulate:
// - the memory model: cooperative scheduling makes every access sequentially consistent, and
//   a thread runs from one barrier to the next without being preempted, so races that need
//   real concurrency (a missing __threadfence; a read and a write of one word both inside the
//   same stretch between barriers of two threads, that every schedule orders the same way;
//   races that change no bit of the result) pass. Race checking also replays each launch, so
//   a kernel with side effects outside device memory (host memory it writes non-idempotently,
//   atomics on host memory) must run under a single schedule (ScopedSchedules);
// - concurrent blocks (a kernel waiting for another block, e.g. a grid-wide spin lock, hangs or
//   deadlocks), streams' asynchrony, dynamic parallelism (a launch inside a kernel throws),
//   static __shared__ / __constant__ (deliberately left undefined: they would compile into
//   per-thread storage), __noinline__ (libstdc++ spells its own attribute that way), textures,
//   cooperative groups, half precision, device-only intrinsics not listed here;
// - AddressSanitizer: the fiber switches are not annotated for it, so ASan builds report false
//   stack errors (UBSan and valgrind are clean);
// - implicit warp lockstep: warp-synchronous code that omits __syncwarp does not work here,
//   which is intended, since Volta and later do not guarantee it either;
// - kernels touching host memory that was not cudaMalloc'd are not caught.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ---- Qualifiers -------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __align__(n) alignas(n)
#define __launch_bounds__(...)

// ---- Vector types and built-in constants ------------------------------------------------------
struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// CUDA's vector types as the kernels use them: 8- and 16-byte aligned, for 64- and 128-bit loads.
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
struct alignas(16) double2 {
  double x, y;
};
inline double2 make_double2(double x, double y) { return double2{x, y}; }
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

inline constexpr int warpSize = 32;

// ---- Runtime types ----------------------------------------------------------------------------
// Enumerator values are CUDA's, so that numbers printed here mean the same as on a GPU.
enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
};
typedef cudaError cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

struct cudaDeviceProp {
  char name[256];
  std::size_t totalGlobalMem;
  std::size_t sharedMemPerBlock;
  std::size_t sharedMemPerBlockOptin;
  std::size_t sharedMemPerMultiprocessor;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int multiProcessorCount;
  int major;
  int minor;
};

namespace rnnsweep::emu {
struct Stream;
struct Event;
}  // namespace rnnsweep::emu
typedef ::rnnsweep::emu::Stream* cudaStream_t;
typedef ::rnnsweep::emu::Event* cudaEvent_t;
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00

namespace rnnsweep::emu {

// The emulated device's limits (an H100's where it matters to our launch code).
inline constexpr std::size_t kSharedPerBlock = 48 * 1024;
inline constexpr std::size_t kSharedPerBlockOptin = 227 * 1024;
inline constexpr int kMaxThreadsPerBlock = 1024;
inline constexpr std::size_t kDefaultMemoryCapacity = std::size_t(1) << 30;

// The emulated thread now running on this OS thread; the kernel's view of itself.
namespace detail {
struct BlockState;
}
struct ThreadContext {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  unsigned linear;  // x-fastest, as CUDA linearises
  unsigned lane;    // linear % 32
  unsigned warp;    // linear / 32
  unsigned char* shared;
  detail::BlockState* block;
};

namespace detail {
inline thread_local ThreadContext* current_thread = nullptr;
[[noreturn]] void outside_kernel();
[[noreturn]] void invalid_width(int width);
}  // namespace detail

inline ThreadContext& current() {
  ThreadContext* t = detail::current_thread;
  if (__builtin_expect(t == nullptr, 0)) detail::outside_kernel();
  return *t;
}

// The block's dynamic shared memory (16-byte aligned; valid even when 0 bytes were asked for).
inline void* dynamic_shared() { return current().shared; }

// ---- Synchronisation (block_emulator.cpp) ----
void syncthreads(const char* file, int line);
int syncthreads_count(int predicate, const char* file, int line);
void syncwarp();
// Writes `bits` to this lane's exchange slot, waits for the warp, reads lane `src` of the warp
// (all ones where it does not exist or has exited), waits for the warp again.
std::uint64_t warp_exchange(std::uint64_t bits, unsigned src);
// Bit i set where lane i is live and passed a non-zero predicate.
unsigned warp_ballot(int predicate);
// d += A B for the warp's m16n8k8 TF32 fragments (mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32):
// a warp-collective operation, every lane of a full warp takes part (kernels/portability.cuh).
void warp_mma_tf32(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2]);
// The live lanes of the calling thread's warp.
unsigned warp_active_mask();

namespace detail {
template <typename T>
inline constexpr bool shuffleable = sizeof(T) <= 8 && (std::is_arithmetic_v<T> || std::is_enum_v<T>);

// The source lane of a shuffle, by the PTX definition of shfl.sync: c is the packed clamp /
// segment mask operand CUDA's intrinsics pass for width; a source outside the permitted range
// yields the lane itself.
enum class ShuffleMode { kIdx, kUp, kDown, kXor };
inline unsigned shuffle_source(ShuffleMode mode, unsigned lane, unsigned b, int width) {
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) invalid_width(width);
  const unsigned segmask = unsigned(32 - width) & 31u;
  const unsigned cval = mode == ShuffleMode::kUp ? 0u : 31u;
  const int max_lane = int((lane & segmask) | (cval & ~segmask));
  const int min_lane = int(lane & segmask);
  b &= 31u;
  int j = 0;
  bool ok = false;
  switch (mode) {
    case ShuffleMode::kUp:
      j = int(lane) - int(b);
      ok = j >= max_lane;
      break;
    case ShuffleMode::kDown:
      j = int(lane + b);
      ok = j <= max_lane;
      break;
    case ShuffleMode::kXor:
      j = int(lane ^ b);
      ok = j <= max_lane;
      break;
    case ShuffleMode::kIdx:
      j = min_lane | int(b & ~segmask);
      ok = j <= max_lane;
      break;
  }
  return ok ? unsigned(j) : lane;
}

template <typename T>
inline T shuffle(ShuffleMode mode, T var, unsigned b, int width) {
  static_assert(shuffleable<T>, "the emulator shuffles arithmetic values of at most 8 bytes");
  const unsigned src = shuffle_source(mode, current().lane, b, width);
  std::uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  bits = warp_exchange(bits, src);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
}  // namespace detail

// ---- Schedules (block_emulator.cpp) ----
// Which ready thread runs next: the next after the last one picked, in the order, wrapping
// (round_robin: every thread advances one stretch per round); the first in the order
// (greedy: a warp runs as far as it can before any later one moves); a uniformly random one.
enum class Pick { round_robin, greedy, random };
// The order of a block's threads: linear ids up or down; lane-interleaved (lane 0 of every
// warp, then lane 1, ...); a random permutation per block.
enum class ThreadOrder { ascending, descending, interleaved, shuffled };

struct Schedule {
  Pick pick = Pick::round_robin;
  ThreadOrder order = ThreadOrder::ascending;
  bool blocks_reversed = false;  // the grid's blocks in reverse linear order
  std::uint64_t seed = 0;        // for shuffled orders and random picks
  // The byte shared memory is filled with before each block. 0xFF reads as NaN (float,
  // double) and -1 (int); another fill, such as 0x3F (0.747f, a positive int), makes a result
  // that depends on shared memory read before anything wrote it differ from the primary's.
  unsigned char shared_fill = 0xFF;
  // "pick/order[/blocks-reversed][/seed=N][/fill=0xNN]", e.g. "greedy/descending/blocks-reversed"
  std::string name() const;
  bool operator==(const Schedule& o) const {
    return pick == o.pick && order == o.order && blocks_reversed == o.blocks_reversed && seed == o.seed &&
           shared_fill == o.shared_fill;
  }
};

// Parses Schedule::name()'s format; throws std::invalid_argument naming the allowed words.
Schedule parse_schedule(const std::string& name);
// A comma-separated list of names, or "default" or "quick"; throws std::invalid_argument.
std::vector<Schedule> parse_schedules(const std::string& list);
// round-robin/ascending (the primary), round-robin/descending/blocks-reversed,
// greedy/ascending/fill=0x3f, greedy/descending/blocks-reversed, round-robin/interleaved,
// random/shuffled/seed=1/fill=0x3f.
std::vector<Schedule> default_schedules();
// round-robin/ascending and greedy/descending/blocks-reversed/fill=0x3f: the two that differ
// most, for tests that run whole grids, where six replays of every launch cost minutes.
std::vector<Schedule> quick_schedules();
// The schedules launches run under: the first always, the others as replays compared with it
// (one schedule: no race check). Initially RNNSWEEP_EMU_SCHEDULES (a list as parse_schedules
// reads it), else default_schedules().
std::vector<Schedule> schedules();
void set_schedules(std::vector<Schedule> list);  // non-empty

// Sets the schedules for a scope and restores the previous ones after it.
class ScopedSchedules {
 public:
  explicit ScopedSchedules(std::vector<Schedule> list) : saved_(schedules()) { set_schedules(std::move(list)); }
  ~ScopedSchedules() { set_schedules(saved_); }
  ScopedSchedules(const ScopedSchedules&) = delete;
  ScopedSchedules& operator=(const ScopedSchedules&) = delete;

 private:
  std::vector<Schedule> saved_;
};

// A launch whose device memory afterwards depends on the schedule.
class RaceDetected : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// ---- Launch ----
struct LaunchConfig {
  const void* kernel;  // identity for cudaFuncSetAttribute
  const char* name;    // the kernel's name as launched, for reports
  dim3 grid;
  dim3 block;
  std::size_t shared_bytes;
};

namespace detail {
// Validates `config` (records the error and returns without running on a bad one), then runs
// body(context) for every thread of every block under each schedule (see schedules()); rethrows
// what a kernel thread threw, throws std::logic_error on a deadlock and RaceDetected when two
// schedules leave different device memory.
void launch(const LaunchConfig& config, void (*body)(void*), void* context);
}  // namespace detail

// The callable RNNSWEEP_LAUNCH returns: invoked with the kernel's arguments, it runs the launch.
template <typename... Params>
class Launch {
 public:
  Launch(void (*kernel)(Params...), const LaunchConfig& config) : kernel_(kernel), config_(config) {}

  template <typename... Args>
  void operator()(Args&&... args) const {
    static_assert(sizeof...(Args) == sizeof...(Params), "kernel launched with the wrong number of arguments");
    // Converted once to the parameter types, as the launch does; each thread then copies them
    // into its own parameters when the kernel is called.
    std::tuple<std::decay_t<Params>...> params(convert<std::decay_t<Params>>(std::forward<Args>(args))...);
    auto kernel = kernel_;
    auto body = [&params, kernel] { std::apply(kernel, params); };
    detail::launch(config_, &invoke<decltype(body)>, &body);
  }

 private:
  // Copy-initialisation: the implicit conversions of a call, nothing explicit.
  template <typename P, typename A>
  static P convert(A&& a) {
    return std::forward<A>(a);
  }
  template <typename F>
  static void invoke(void* f) {
    (*static_cast<F*>(f))();
  }

  void (*kernel_)(Params...);
  LaunchConfig config_;
};

template <typename... Params>
Launch<Params...> launcher(void (*kernel)(Params...), const char* name, dim3 grid, dim3 block,
                           std::size_t shared_bytes = 0, cudaStream_t stream = nullptr) {
  (void)stream;  // everything is synchronous
  return Launch<Params...>(kernel, LaunchConfig{reinterpret_cast<const void*>(kernel), name, grid, block,
                                                shared_bytes});
}

// ---- Emulated device memory ----
// Capacity cudaMalloc allocates against (default 1 GiB); lets tests exercise chunking logic.
void set_memory_capacity(std::size_t bytes);
// Bytes cudaMalloc currently holds (for leak checks in tests).
std::size_t device_bytes_in_use();

// ---- Runtime (block_emulator.cpp), wrapped by the global CUDA names below ----
namespace rt {
const char* error_string(cudaError_t e);
const char* error_name(cudaError_t e);
cudaError_t get_last_error();
cudaError_t peek_last_error();
cudaError_t record(cudaError_t e);  // remembers a failure for cudaGetLastError, returns e
cudaError_t malloc_device(void** p, std::size_t bytes);
cudaError_t free_device(void* p);
cudaError_t malloc_host(void** p, std::size_t bytes);
cudaError_t free_host(void* p);
cudaError_t memcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind);
cudaError_t memset(void* p, int value, std::size_t bytes);
cudaError_t mem_get_info(std::size_t* free_bytes, std::size_t* total_bytes);
cudaError_t device_properties(cudaDeviceProp* prop, int device);
cudaError_t device_attribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t func_set_attribute(const void* func, cudaFuncAttribute attr, int value);
cudaError_t stream_create(cudaStream_t* s);
cudaError_t stream_destroy(cudaStream_t s);
cudaError_t event_create(cudaEvent_t* e);
cudaError_t event_destroy(cudaEvent_t e);
cudaError_t event_record(cudaEvent_t e);
cudaError_t event_elapsed(float* ms, cudaEvent_t start, cudaEvent_t end);
}  // namespace rt

}  // namespace rnnsweep::emu

// ---- Device-side intrinsics (global names, as in CUDA) ----------------------------------------
#define threadIdx (::rnnsweep::emu::current().thread_idx)
#define blockIdx (::rnnsweep::emu::current().block_idx)
#define blockDim (::rnnsweep::emu::current().block_dim)
#define gridDim (::rnnsweep::emu::current().grid_dim)

// Macros rather than functions so that the barrier knows its source line (see above).
#define __syncthreads() ::rnnsweep::emu::syncthreads(__FILE__, __LINE__)
#define __syncthreads_count(predicate) \
  ::rnnsweep::emu::syncthreads_count((predicate) ? 1 : 0, __FILE__, __LINE__)
#define __syncthreads_and(predicate) \
  (::rnnsweep::emu::syncthreads_count((predicate) ? 0 : 1, __FILE__, __LINE__) == 0 ? 1 : 0)
#define __syncthreads_or(predicate) \
  (::rnnsweep::emu::syncthreads_count((predicate) ? 1 : 0, __FILE__, __LINE__) != 0 ? 1 : 0)

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  (void)mask;
  ::rnnsweep::emu::syncwarp();
}
inline unsigned __activemask() { return ::rnnsweep::emu::warp_active_mask(); }
inline unsigned __ballot_sync(unsigned, int predicate) { return ::rnnsweep::emu::warp_ballot(predicate); }
inline int __any_sync(unsigned, int predicate) { return ::rnnsweep::emu::warp_ballot(predicate) != 0; }
inline int __all_sync(unsigned, int predicate) { return ::rnnsweep::emu::warp_ballot(!predicate) == 0; }

template <typename T, typename = std::enable_if_t<::rnnsweep::emu::detail::shuffleable<T>>>
inline T __shfl_sync(unsigned, T var, int srcLane, int width = warpSize) {
  return ::rnnsweep::emu::detail::shuffle(::rnnsweep::emu::detail::ShuffleMode::kIdx, var, unsigned(srcLane),
                                          width);
}
template <typename T, typename = std::enable_if_t<::rnnsweep::emu::detail::shuffleable<T>>>
inline T __shfl_up_sync(unsigned, T var, unsigned delta, int width = warpSize) {
  return ::rnnsweep::emu::detail::shuffle(::rnnsweep::emu::detail::ShuffleMode::kUp, var, delta, width);
}
template <typename T, typename = std::enable_if_t<::rnnsweep::emu::detail::shuffleable<T>>>
inline T __shfl_down_sync(unsigned, T var, unsigned delta, int width = warpSize) {
  return ::rnnsweep::emu::detail::shuffle(::rnnsweep::emu::detail::ShuffleMode::kDown, var, delta, width);
}
template <typename T, typename = std::enable_if_t<::rnnsweep::emu::detail::shuffleable<T>>>
inline T __shfl_xor_sync(unsigned, T var, int laneMask, int width = warpSize) {
  return ::rnnsweep::emu::detail::shuffle(::rnnsweep::emu::detail::ShuffleMode::kXor, var, unsigned(laneMask),
                                          width);
}

// Asynchronous copies from global to shared memory (cuda_pipeline_primitives.h, cp.async): each
// thread's copies are held back until __pipeline_wait_prior lets them through (all but the
// `prior` most recently committed groups; the rest at the thread's exit), so a kernel that reads
// a copy's destination before waiting for it reads the old contents here, as it may on a GPU.
// The source is read at the call.
namespace rnnsweep::emu {
void async_copy(void* dst, const void* src, std::size_t bytes);
void async_commit();
void async_wait_prior(std::size_t prior);
}  // namespace rnnsweep::emu
inline void __pipeline_memcpy_async(void* dst, const void* src, std::size_t bytes, std::size_t zfill = 0) {
  (void)zfill;
  ::rnnsweep::emu::async_copy(dst, src, bytes);
}
inline void __pipeline_commit() { ::rnnsweep::emu::async_commit(); }
inline void __pipeline_wait_prior(std::size_t prior) { ::rnnsweep::emu::async_wait_prior(prior); }

inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

// Atomics return the old value. The builtins keep them atomic also between launches running on
// different host threads; within one launch the fibers are cooperative anyway.
namespace rnnsweep::emu::detail {
template <typename T>
inline T atomic_float_add(T* address, T value) {
  T old;
  __atomic_load(address, &old, __ATOMIC_RELAXED);
  for (;;) {
    T sum = old + value;
    if (__atomic_compare_exchange(address, &old, &sum, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
  }
}
}  // namespace rnnsweep::emu::detail

inline float atomicAdd(float* address, float value) {
  return ::rnnsweep::emu::detail::atomic_float_add(address, value);
}
inline double atomicAdd(double* address, double value) {
  return ::rnnsweep::emu::detail::atomic_float_add(address, value);
}
inline int atomicAdd(int* address, int value) { return __atomic_fetch_add(address, value, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* address, unsigned value) {
  return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}
inline unsigned long long atomicAdd(unsigned long long* address, unsigned long long value) {
  return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}
inline int atomicSub(int* address, int value) { return __atomic_fetch_sub(address, value, __ATOMIC_RELAXED); }
inline int atomicMax(int* address, int value) {
  int old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (old < value &&
         !__atomic_compare_exchange_n(address, &old, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
inline int atomicMin(int* address, int value) {
  int old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (old > value &&
         !__atomic_compare_exchange_n(address, &old, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
inline int atomicExch(int* address, int value) {
  return __atomic_exchange_n(address, value, __ATOMIC_RELAXED);
}
inline int atomicCAS(int* address, int compare, int value) {
  __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;
}
inline unsigned atomicCAS(unsigned* address, unsigned compare, unsigned value) {
  __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;
}
inline unsigned long long atomicCAS(unsigned long long* address, unsigned long long compare,
                                    unsigned long long value) {
  __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;
}

// ---- Runtime API (global names, as in CUDA) ---------------------------------------------------
// `static inline`: internal linkage, so these never meet the real runtime's symbols even where
// one binary links CUDA code and emulated code.
static inline const char* cudaGetErrorString(cudaError_t e) { return ::rnnsweep::emu::rt::error_string(e); }
static inline const char* cudaGetErrorName(cudaError_t e) { return ::rnnsweep::emu::rt::error_name(e); }
static inline cudaError_t cudaGetLastError() { return ::rnnsweep::emu::rt::get_last_error(); }
static inline cudaError_t cudaPeekAtLastError() { return ::rnnsweep::emu::rt::peek_last_error(); }

static inline cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return ::rnnsweep::emu::rt::record(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}
static inline cudaError_t cudaGetDevice(int* device) {
  if (!device) return ::rnnsweep::emu::rt::record(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}
static inline cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : ::rnnsweep::emu::rt::record(cudaErrorInvalidDevice);
}
static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  return ::rnnsweep::emu::rt::device_properties(prop, device);
}
static inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  return ::rnnsweep::emu::rt::device_attribute(value, attr, device);
}
static inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
static inline cudaError_t cudaMemGetInfo(std::size_t* free_bytes, std::size_t* total_bytes) {
  return ::rnnsweep::emu::rt::mem_get_info(free_bytes, total_bytes);
}

static inline cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  return ::rnnsweep::emu::rt::func_set_attribute(func, attr, value);
}
template <typename T>
static inline cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr, int value) {
  return ::rnnsweep::emu::rt::func_set_attribute(reinterpret_cast<const void*>(entry), attr, value);
}

static inline cudaError_t cudaMalloc(void** p, std::size_t bytes) {
  return ::rnnsweep::emu::rt::malloc_device(p, bytes);
}
template <typename T>
static inline cudaError_t cudaMalloc(T** p, std::size_t bytes) {
  return ::rnnsweep::emu::rt::malloc_device(reinterpret_cast<void**>(p), bytes);
}
static inline cudaError_t cudaFree(void* p) { return ::rnnsweep::emu::rt::free_device(p); }
static inline cudaError_t cudaMallocHost(void** p, std::size_t bytes) {
  return ::rnnsweep::emu::rt::malloc_host(p, bytes);
}
template <typename T>
static inline cudaError_t cudaMallocHost(T** p, std::size_t bytes) {
  return ::rnnsweep::emu::rt::malloc_host(reinterpret_cast<void**>(p), bytes);
}
static inline cudaError_t cudaFreeHost(void* p) { return ::rnnsweep::emu::rt::free_host(p); }
static inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  return ::rnnsweep::emu::rt::memcpy(dst, src, bytes, kind);
}
static inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                                          cudaStream_t stream = nullptr) {
  (void)stream;
  return ::rnnsweep::emu::rt::memcpy(dst, src, bytes, kind);
}
static inline cudaError_t cudaMemset(void* p, int value, std::size_t bytes) {
  return ::rnnsweep::emu::rt::memset(p, value, bytes);
}
static inline cudaError_t cudaMemsetAsync(void* p, int value, std::size_t bytes,
                                          cudaStream_t stream = nullptr) {
  (void)stream;
  return ::rnnsweep::emu::rt::memset(p, value, bytes);
}

static inline cudaError_t cudaStreamCreate(cudaStream_t* s) { return ::rnnsweep::emu::rt::stream_create(s); }
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  (void)flags;
  return ::rnnsweep::emu::rt::stream_create(s);
}
static inline cudaError_t cudaStreamDestroy(cudaStream_t s) { return ::rnnsweep::emu::rt::stream_destroy(s); }
static inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  (void)s;
  return cudaSuccess;
}
static inline cudaError_t cudaStreamQuery(cudaStream_t s) {
  (void)s;
  return cudaSuccess;
}

static inline cudaError_t cudaEventCreate(cudaEvent_t* e) { return ::rnnsweep::emu::rt::event_create(e); }
static inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
  (void)flags;
  return ::rnnsweep::emu::rt::event_create(e);
}
static inline cudaError_t cudaEventDestroy(cudaEvent_t e) { return ::rnnsweep::emu::rt::event_destroy(e); }
static inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream = nullptr) {
  (void)stream;
  return ::rnnsweep::emu::rt::event_record(e);
}
static inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  return e ? cudaSuccess : ::rnnsweep::emu::rt::record(cudaErrorInvalidResourceHandle);
}
static inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  return ::rnnsweep::emu::rt::event_elapsed(ms, start, end);
}
