// The compiled half of the block emulator (see block_emulator.h): the fiber scheduler with its
// block and warp barriers, and the emulated runtime's state (memory, errors, attributes).
#include "tests/emulator/block_emulator.h"

#include <boost/context/fiber.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace rnnsweep::emu {

namespace ctx = boost::context;

namespace {

// Enough for a kernel's local arrays; the guard page below turns an overflow into a fault
// instead of silent corruption of a neighbour's stack.
constexpr std::size_t kStackBytes = 256 * 1024;

// Guarded stacks are an mmap and an mprotect each; a launch of many blocks would pay that per
// thread per block, so stacks are kept for reuse by the OS thread that launches.
class StackPool {
 public:
  StackPool() : alloc_(kStackBytes) { free_.reserve(kMaxThreadsPerBlock); }
  ~StackPool() {
    for (auto& s : free_) alloc_.deallocate(s);
  }
  ctx::stack_context get() {
    if (free_.empty()) return alloc_.allocate();
    ctx::stack_context s = free_.back();
    free_.pop_back();
    return s;
  }
  void put(ctx::stack_context s) { free_.push_back(s); }

 private:
  ctx::protected_fixedsize_stack alloc_;
  std::vector<ctx::stack_context> free_;
};

StackPool& stack_pool() {
  static thread_local StackPool pool;
  return pool;
}

struct PooledStack {
  ctx::stack_context allocate() { return stack_pool().get(); }
  void deallocate(ctx::stack_context& s) noexcept { stack_pool().put(s); }
};

enum class State { kReady, kRunning, kAtBlock, kAtWarp, kDone };

// What a warp barrier is waited at: lanes of one warp meeting at different kinds of warp
// operation would exchange nonsense, so that is reported rather than paired up.
enum class WarpOp { kSyncwarp, kShuffleWrite, kShuffleRead, kBallotWrite, kBallotRead, kMmaWrite, kMmaRead };

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::kSyncwarp:
      return "__syncwarp";
    case WarpOp::kShuffleWrite:
    case WarpOp::kShuffleRead:
      return "a __shfl*_sync";
    case WarpOp::kBallotWrite:
    case WarpOp::kBallotRead:
      return "a warp vote (__ballot/__any/__all_sync)";
    case WarpOp::kMmaWrite:
    case WarpOp::kMmaRead:
      return "an mma.sync (mma_tf32)";
  }
  return "?";
}

std::string str(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

}  // namespace

namespace detail {

struct EmuThread : ThreadContext {
  ctx::fiber fiber;      // the thread while it is not running
  ctx::fiber scheduler;  // while it runs: where to switch back to
  State state = State::kDone;
  // asynchronous copies issued and not yet let through: committed groups, then the open one
  struct Copy {
    void* dst;
    std::vector<unsigned char> bytes;
  };
  std::vector<std::vector<Copy>> copy_groups;
  std::vector<Copy> open_copies;
};

// The ready threads of a block, by their position in the schedule's order, and the pick.
class ReadySet {
 public:
  void reset(const Schedule& schedule, unsigned n, unsigned warps, std::uint64_t block_linear);
  void mark(unsigned id) {
    const unsigned p = position_[id];
    bits_[p / 64] |= std::uint64_t(1) << (p % 64);
  }
  // The next thread to run (removed from the set), or -1 when none is ready.
  int take();

 private:
  int first_from(unsigned p) const;
  std::uint64_t next_random();

  Pick pick_ = Pick::round_robin;
  std::vector<unsigned> order_, position_;  // position -> linear id, linear id -> position
  std::vector<std::uint64_t> bits_;         // bit p: the thread at position p is ready
  unsigned cursor_ = 0;
  std::uint64_t rng_ = 0;
};

struct Warp {
  unsigned first = 0, size = 0;  // linear ids first..first+size-1
  unsigned live = 0, arrived = 0;
  WarpOp op = WarpOp::kSyncwarp;
  std::uint64_t slots[32] = {};
  std::uint32_t mma_slots[32][6] = {};  // each lane's A (4) and B (2) fragments of an mma
};

struct BlockState {
  std::vector<EmuThread> threads;
  std::vector<Warp> warps;
  ReadySet ready;
  unsigned live = 0, finished = 0;
  unsigned arrived = 0;  // at the block barrier
  const char* site_file = nullptr;
  int site_line = 0;
  int count = 0, count_result = 0;  // __syncthreads_count
  std::exception_ptr error;
  void (*body)(void*) = nullptr;
  void* context = nullptr;
};

[[noreturn]] void outside_kernel() {
  throw std::logic_error(
      "rnnsweep emulator: threadIdx/blockIdx/blockDim/gridDim, shared memory or a device intrinsic used "
      "outside a kernel launch");
}

[[noreturn]] void invalid_width(int width) {
  throw std::logic_error("rnnsweep emulator: shuffle width must be a power of two from 1 to 32, got " +
                         std::to_string(width));
}

// ---- Schedules ----

namespace {

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

void ReadySet::reset(const Schedule& schedule, unsigned n, unsigned warps, std::uint64_t block_linear) {
  pick_ = schedule.pick;
  order_.resize(n);
  position_.resize(n);
  bits_.assign((n + 63) / 64, 0);
  cursor_ = 0;
  std::uint64_t stream = schedule.seed * 0x100000001b3ull + block_linear;
  rng_ = splitmix64(stream);
  switch (schedule.order) {
    case ThreadOrder::ascending:
      for (unsigned i = 0; i < n; ++i) order_[i] = i;
      break;
    case ThreadOrder::descending:
      for (unsigned i = 0; i < n; ++i) order_[i] = n - 1 - i;
      break;
    case ThreadOrder::interleaved: {
      unsigned p = 0;
      for (unsigned lane = 0; lane < 32; ++lane)
        for (unsigned w = 0; w < warps; ++w)
          if (32 * w + lane < n) order_[p++] = 32 * w + lane;
      break;
    }
    case ThreadOrder::shuffled:
      for (unsigned i = 0; i < n; ++i) order_[i] = i;
      for (unsigned i = n; i > 1; --i) std::swap(order_[i - 1], order_[next_random() % i]);
      break;
  }
  for (unsigned p = 0; p < n; ++p) position_[order_[p]] = p;
}

std::uint64_t ReadySet::next_random() { return splitmix64(rng_); }

int ReadySet::first_from(unsigned p) const {
  const unsigned n = unsigned(order_.size());
  if (p >= n) return -1;
  unsigned word = p / 64;
  std::uint64_t bits = bits_[word] & (~std::uint64_t(0) << (p % 64));
  for (;;) {
    if (bits) return int(word * 64 + unsigned(__builtin_ctzll(bits)));
    if (++word == bits_.size()) return -1;
    bits = bits_[word];
  }
}

int ReadySet::take() {
  int p = -1;
  switch (pick_) {
    case Pick::round_robin:
      p = first_from(cursor_);
      if (p < 0) p = first_from(0);
      break;
    case Pick::greedy:
      p = first_from(0);
      break;
    case Pick::random: {
      unsigned count = 0;
      for (std::uint64_t w : bits_) count += unsigned(__builtin_popcountll(w));
      if (count == 0) break;
      unsigned k = unsigned(next_random() % count);
      for (unsigned word = 0; word < bits_.size(); ++word) {
        const unsigned c = unsigned(__builtin_popcountll(bits_[word]));
        if (k >= c) {
          k -= c;
          continue;
        }
        std::uint64_t bits = bits_[word];
        for (; k > 0; --k) bits &= bits - 1;  // drop the lowest set bits
        p = int(word * 64 + unsigned(__builtin_ctzll(bits)));
        break;
      }
      break;
    }
  }
  if (p < 0) return -1;
  bits_[unsigned(p) / 64] &= ~(std::uint64_t(1) << (unsigned(p) % 64));
  cursor_ = unsigned(p) + 1;
  return int(order_[unsigned(p)]);
}

}  // namespace detail

namespace {

using detail::BlockState;
using detail::EmuThread;
using detail::Warp;

EmuThread& self() { return static_cast<EmuThread&>(current()); }

// Back to the scheduler until a barrier releases this thread. If the launch is abandoned
// meanwhile, resume() throws forced_unwind here, which unwinds the kernel's frames.
void suspend(EmuThread& t) { t.scheduler = std::move(t.scheduler).resume(); }

void make_ready(BlockState& b, EmuThread& t) {
  t.state = State::kReady;
  b.ready.mark(t.linear);
}

void release_block(BlockState& b) {
  for (auto& t : b.threads)
    if (t.state == State::kAtBlock) make_ready(b, t);
  b.arrived = 0;
  b.count_result = b.count;
  b.count = 0;
}

void release_warp(BlockState& b, Warp& w) {
  for (unsigned i = w.first; i < w.first + w.size; ++i)
    if (b.threads[i].state == State::kAtWarp) make_ready(b, b.threads[i]);
  w.arrived = 0;
}

// The last thread to arrive releases the barrier and also goes back to the scheduler, so that
// the schedule alone decides who runs next (otherwise the last arriver would always go first).
void yield_after_release(EmuThread& t) {
  make_ready(*t.block, t);
  suspend(t);
}

bool same_site(const BlockState& b, const char* file, int line) {
  return b.site_line == line && (b.site_file == file || std::strcmp(b.site_file, file) == 0);
}

void warp_wait(EmuThread& t, WarpOp op) {
  BlockState& b = *t.block;
  Warp& w = b.warps[t.warp];
  if (w.arrived == 0) {
    w.op = op;
  } else if (w.op != op) {
    throw std::logic_error("rnnsweep emulator: deadlock: in block " + str(t.block_idx) + ", warp " +
                           std::to_string(t.warp) + ", lane " + std::to_string(t.lane) + " reached " +
                           op_name(op) + " while " + std::to_string(w.arrived) + " lanes wait at " +
                           op_name(w.op));
  }
  if (++w.arrived == w.live) {
    release_warp(b, w);
    yield_after_release(t);
    return;
  }
  t.state = State::kAtWarp;
  suspend(t);
}

void finish_copies(EmuThread& t, std::size_t keep) {
  while (t.copy_groups.size() > keep) {
    for (auto& c : t.copy_groups.front()) std::memcpy(c.dst, c.bytes.data(), c.bytes.size());
    t.copy_groups.erase(t.copy_groups.begin());
  }
}

void thread_exit(EmuThread& t) {
  // copies never waited for land at some point on a GPU: here, at the thread's exit
  if (!t.open_copies.empty()) t.copy_groups.push_back(std::move(t.open_copies));
  t.open_copies.clear();
  finish_copies(t, 0);
  BlockState& b = *t.block;
  Warp& w = b.warps[t.warp];
  t.state = State::kDone;
  ++b.finished;
  --b.live;
  --w.live;
  // Exited threads no longer count: the barriers they leave may now be complete.
  if (b.arrived > 0 && b.arrived == b.live) release_block(b);
  if (w.arrived > 0 && w.arrived == w.live) release_warp(b, w);
}

std::string describe_deadlock(const BlockState& b, const LaunchConfig& c) {
  std::string s = "rnnsweep emulator: deadlock in block " + str(b.threads[0].block_idx) + " (grid " +
                  str(c.grid) + ", block " + str(c.block) + "): no thread can run; " +
                  std::to_string(b.live) + " live threads, " + std::to_string(b.arrived) +
                  " wait at __syncthreads";
  if (b.arrived > 0) s += std::string(" (") + b.site_file + ":" + std::to_string(b.site_line) + ")";
  for (size_t i = 0; i < b.warps.size(); ++i) {
    const Warp& w = b.warps[i];
    if (w.arrived > 0)
      s += "; warp " + std::to_string(i) + ": " + std::to_string(w.arrived) + " of " +
           std::to_string(w.live) + " live lanes wait at " + op_name(w.op);
  }
  return s;
}

// Restores "no emulated thread" however the scheduler leaves.
struct CurrentGuard {
  ~CurrentGuard() { detail::current_thread = nullptr; }
};

// Destroys the fibers not yet finished; their stacks unwind (forced_unwind), running the
// destructors of the kernel's locals.
void abandon(BlockState& b) {
  for (auto& t : b.threads) {
    if (!t.fiber) continue;
    detail::current_thread = &t;
    t.fiber = ctx::fiber();
  }
  detail::current_thread = nullptr;
}

void run_block(BlockState& b, const LaunchConfig& c) {
  const unsigned n = unsigned(b.threads.size());
  for (auto& t : b.threads) {
    make_ready(b, t);
    EmuThread* tp = &t;
    t.fiber = ctx::fiber(std::allocator_arg, PooledStack(), [tp](ctx::fiber&& sched) {
      tp->scheduler = std::move(sched);
      BlockState& block = *tp->block;
      try {
        block.body(block.context);
      } catch (const ctx::detail::forced_unwind&) {
        throw;  // the launch is being abandoned: let Boost finish unwinding this stack
      } catch (...) {
        if (!block.error) block.error = std::current_exception();
      }
      thread_exit(*tp);
      return std::move(tp->scheduler);
    });
  }
  while (b.finished < n) {
    const int next = b.ready.take();
    if (next < 0) {
      std::string message = describe_deadlock(b, c);
      abandon(b);
      throw std::logic_error(message);
    }
    EmuThread& t = b.threads[unsigned(next)];
    t.state = State::kRunning;
    detail::current_thread = &t;
    t.fiber = std::move(t.fiber).resume();
    detail::current_thread = nullptr;
    if (b.error) {
      abandon(b);
      std::rethrow_exception(b.error);
    }
  }
}

std::mutex& attribute_mutex() {
  static std::mutex m;
  return m;
}
std::map<const void*, int>& shared_attributes() {
  static std::map<const void*, int> m;
  return m;
}

cudaError_t check_config(const LaunchConfig& c) {
  const dim3 b = c.block, g = c.grid;
  if (b.x == 0 || b.y == 0 || b.z == 0 || b.z > 64 ||
      std::uint64_t(b.x) * b.y * b.z > std::uint64_t(kMaxThreadsPerBlock))
    return cudaErrorInvalidConfiguration;
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 2147483647u || g.y > 65535u || g.z > 65535u)
    return cudaErrorInvalidConfiguration;
  if (c.shared_bytes > kSharedPerBlockOptin) return cudaErrorInvalidValue;
  if (c.shared_bytes > kSharedPerBlock) {
    std::lock_guard<std::mutex> lock(attribute_mutex());
    auto it = shared_attributes().find(c.kernel);
    if (it == shared_attributes().end() || std::size_t(it->second) < c.shared_bytes)
      return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

struct AlignedDelete {
  std::align_val_t align;
  void operator()(unsigned char* p) const { ::operator delete(p, align); }
};
using AlignedBuffer = std::unique_ptr<unsigned char, AlignedDelete>;

AlignedBuffer aligned_buffer(std::size_t bytes, std::size_t align) {
  void* p = ::operator new(bytes, std::align_val_t(align), std::nothrow);
  return AlignedBuffer(static_cast<unsigned char*>(p), AlignedDelete{std::align_val_t(align)});
}

}  // namespace

// ---- Synchronisation ----

int syncthreads_count(int predicate, const char* file, int line) {
  EmuThread& t = self();
  BlockState& b = *t.block;
  if (b.arrived == 0) {
    b.site_file = file;
    b.site_line = line;
  } else if (!same_site(b, file, line)) {
    throw std::logic_error("rnnsweep emulator: deadlock: divergent __syncthreads in block " +
                           str(t.block_idx) + ": thread " + str(t.thread_idx) + " reached the one at " +
                           file + ":" + std::to_string(line) + " while " + std::to_string(b.arrived) +
                           " threads wait at " + b.site_file + ":" + std::to_string(b.site_line) +
                           " (undefined in CUDA: a GPU may hang or pair the wrong barriers)");
  }
  b.count += predicate;
  if (++b.arrived == b.live) {
    release_block(b);
    yield_after_release(t);
    return b.count_result;
  }
  t.state = State::kAtBlock;
  suspend(t);
  // Stable until the next release, which needs this thread to arrive again.
  return b.count_result;
}

void syncthreads(const char* file, int line) { syncthreads_count(0, file, line); }

void syncwarp() { warp_wait(self(), WarpOp::kSyncwarp); }

void async_copy(void* dst, const void* src, std::size_t bytes) {
  if (bytes != 4 && bytes != 8 && bytes != 16)
    throw std::logic_error("rnnsweep emulator: __pipeline_memcpy_async copies 4, 8 or 16 bytes, not " +
                           std::to_string(bytes));
  if (reinterpret_cast<std::uintptr_t>(dst) % bytes != 0 || reinterpret_cast<std::uintptr_t>(src) % bytes != 0)
    throw std::logic_error("rnnsweep emulator: __pipeline_memcpy_async needs both addresses aligned to its size");
  const auto* p = static_cast<const unsigned char*>(src);
  self().open_copies.push_back(detail::EmuThread::Copy{dst, std::vector<unsigned char>(p, p + bytes)});
}

void async_commit() {
  EmuThread& t = self();
  t.copy_groups.push_back(std::move(t.open_copies));
  t.open_copies.clear();
}

void async_wait_prior(std::size_t prior) { finish_copies(self(), prior); }

std::uint64_t warp_exchange(std::uint64_t bits, unsigned src) {
  EmuThread& t = self();
  BlockState& b = *t.block;
  Warp& w = b.warps[t.warp];
  w.slots[t.lane] = bits;
  warp_wait(t, WarpOp::kShuffleWrite);
  // Between the two barriers no lane can exit or write, so the slots are stable.
  const bool active = src < w.size && b.threads[w.first + src].state != State::kDone;
  const std::uint64_t out = active ? w.slots[src] : ~std::uint64_t(0);
  warp_wait(t, WarpOp::kShuffleRead);
  return out;
}

void warp_mma_tf32(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2]) {
  EmuThread& t = self();
  BlockState& bs = *t.block;
  Warp& w = bs.warps[t.warp];
  if (w.size != 32 || w.live != 32)
    throw std::logic_error("rnnsweep emulator: mma.sync needs all 32 lanes of a full warp");
  for (int k = 0; k < 4; ++k) w.mma_slots[t.lane][k] = a[k];
  for (int k = 0; k < 2; ++k) w.mma_slots[t.lane][4 + k] = b[k];
  warp_wait(t, WarpOp::kMmaWrite);
  // m16n8k8, A row-major, B column-major (PTX ISA, "Matrix Fragments for mma.m16n8k8" with .tf32):
  // lane = 4 g + c holds A(g, c), A(g + 8, c), A(g, c + 4), A(g + 8, c + 4); B(c, g), B(c + 4, g);
  // and D(g, 2c), D(g, 2c + 1), D(g + 8, 2c), D(g + 8, 2c + 1).
  auto A = [&w](int row, int k) {
    const std::uint32_t* s = w.mma_slots[4 * (row % 8) + k % 4];
    return s[(row >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)];
  };
  auto B = [&w](int k, int col) { return w.mma_slots[4 * col + k % 4][4 + (k >= 4 ? 1 : 0)]; };
  // The operands as TF32: the low 13 bits of each are ignored, as the tensor cores do. Every
  // product of two TF32 values is exact in float; the sum runs in k order here (the hardware's
  // order and internal rounding are its own: the GPU tests compare with a tolerance).
  auto as_tf32 = [](std::uint32_t bits) {
    bits &= ~std::uint32_t(0x1fff);
    float x;
    std::memcpy(&x, &bits, sizeof x);
    return x;
  };
  const int g = int(t.lane) / 4, c = int(t.lane) % 4;
  float out[4];
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * c + e % 2;
    float sum = d[e];
    for (int k = 0; k < 8; ++k) sum = std::fma(as_tf32(A(row, k)), as_tf32(B(k, col)), sum);
    out[e] = sum;
  }
  warp_wait(t, WarpOp::kMmaRead);
  for (int e = 0; e < 4; ++e) d[e] = out[e];
}

unsigned warp_ballot(int predicate) {
  EmuThread& t = self();
  BlockState& b = *t.block;
  Warp& w = b.warps[t.warp];
  w.slots[t.lane] = predicate != 0;
  warp_wait(t, WarpOp::kBallotWrite);
  unsigned mask = 0;
  for (unsigned i = 0; i < w.size; ++i)
    if (b.threads[w.first + i].state != State::kDone && w.slots[i]) mask |= 1u << i;
  warp_wait(t, WarpOp::kBallotRead);
  return mask;
}

unsigned warp_active_mask() {
  EmuThread& t = self();
  const BlockState& b = *t.block;
  const Warp& w = b.warps[t.warp];
  unsigned mask = 0;
  for (unsigned i = 0; i < w.size; ++i)
    if (b.threads[w.first + i].state != State::kDone) mask |= 1u << i;
  return mask;
}

// ---- Schedules: names and the current list ----

namespace {

const char* pick_word(Pick p) {
  switch (p) {
    case Pick::round_robin:
      return "round-robin";
    case Pick::greedy:
      return "greedy";
    case Pick::random:
      return "random";
  }
  return "?";
}

const char* order_word(ThreadOrder o) {
  switch (o) {
    case ThreadOrder::ascending:
      return "ascending";
    case ThreadOrder::descending:
      return "descending";
    case ThreadOrder::interleaved:
      return "interleaved";
    case ThreadOrder::shuffled:
      return "shuffled";
  }
  return "?";
}

struct ScheduleList {
  std::mutex mutex;
  bool initialised = false;
  std::vector<Schedule> list;
};

ScheduleList& schedule_list() {
  static ScheduleList s;
  return s;
}

// One launch at a time while schedules are compared: a replay restores all device memory.
std::mutex& replay_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

std::string Schedule::name() const {
  std::string s = std::string(pick_word(pick)) + "/" + order_word(order);
  if (blocks_reversed) s += "/blocks-reversed";
  if (pick == Pick::random || order == ThreadOrder::shuffled) s += "/seed=" + std::to_string(seed);
  if (shared_fill != 0xFF) {
    char fill[16];
    std::snprintf(fill, sizeof fill, "/fill=0x%02x", unsigned(shared_fill));
    s += fill;
  }
  return s;
}

Schedule parse_schedule(const std::string& name) {
  const std::string allowed =
      " (allowed: PICK/ORDER[/blocks-reversed][/seed=N][/fill=0xNN] with PICK round-robin, greedy or random "
      "and ORDER ascending, descending, interleaved or shuffled; or the lists default and quick)";
  std::vector<std::string> parts;
  size_t from = 0;
  for (;;) {
    const size_t slash = name.find('/', from);
    parts.push_back(name.substr(from, slash == std::string::npos ? std::string::npos : slash - from));
    if (slash == std::string::npos) break;
    from = slash + 1;
  }
  if (parts.size() < 2) throw std::invalid_argument("emulator schedule '" + name + "' is not PICK/ORDER" + allowed);
  Schedule s;
  bool found = false;
  for (Pick p : {Pick::round_robin, Pick::greedy, Pick::random})
    if (parts[0] == pick_word(p)) s.pick = p, found = true;
  if (!found) throw std::invalid_argument("emulator schedule '" + name + "': unknown pick '" + parts[0] + "'" + allowed);
  found = false;
  for (ThreadOrder o : {ThreadOrder::ascending, ThreadOrder::descending, ThreadOrder::interleaved,
                        ThreadOrder::shuffled})
    if (parts[1] == order_word(o)) s.order = o, found = true;
  if (!found)
    throw std::invalid_argument("emulator schedule '" + name + "': unknown order '" + parts[1] + "'" + allowed);
  for (size_t i = 2; i < parts.size(); ++i) {
    if (parts[i] == "blocks-reversed") {
      s.blocks_reversed = true;
    } else if (parts[i].rfind("seed=", 0) == 0 && parts[i].size() > 5 &&
               parts[i].find_first_not_of("0123456789", 5) == std::string::npos) {
      s.seed = std::stoull(parts[i].substr(5));
    } else if (parts[i].rfind("fill=0x", 0) == 0 && parts[i].size() == 9 &&
               parts[i].find_first_not_of("0123456789abcdefABCDEF", 7) == std::string::npos) {
      s.shared_fill = static_cast<unsigned char>(std::stoul(parts[i].substr(7), nullptr, 16));
    } else {
      throw std::invalid_argument("emulator schedule '" + name + "': unknown part '" + parts[i] + "'" + allowed);
    }
  }
  return s;
}

std::vector<Schedule> parse_schedules(const std::string& list) {
  if (list == "default") return default_schedules();
  if (list == "quick") return quick_schedules();
  std::vector<Schedule> out;
  size_t from = 0;
  for (;;) {
    const size_t comma = list.find(',', from);
    out.push_back(parse_schedule(list.substr(from, comma == std::string::npos ? std::string::npos : comma - from)));
    if (comma == std::string::npos) break;
    from = comma + 1;
  }
  return out;
}

std::vector<Schedule> default_schedules() {
  return {
      Schedule{Pick::round_robin, ThreadOrder::ascending, false, 0, 0xFF},
      Schedule{Pick::round_robin, ThreadOrder::descending, true, 0, 0xFF},
      Schedule{Pick::greedy, ThreadOrder::ascending, false, 0, 0x3F},
      Schedule{Pick::greedy, ThreadOrder::descending, true, 0, 0xFF},
      Schedule{Pick::round_robin, ThreadOrder::interleaved, false, 0, 0xFF},
      Schedule{Pick::random, ThreadOrder::shuffled, false, 1, 0x3F},
  };
}

std::vector<Schedule> quick_schedules() {
  return {
      Schedule{Pick::round_robin, ThreadOrder::ascending, false, 0, 0xFF},
      Schedule{Pick::greedy, ThreadOrder::descending, true, 0, 0x3F},
  };
}

std::vector<Schedule> schedules() {
  ScheduleList& s = schedule_list();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.initialised) {
    const char* env = std::getenv("RNNSWEEP_EMU_SCHEDULES");
    s.list = env && *env ? parse_schedules(env) : default_schedules();
    s.initialised = true;
  }
  return s.list;
}

void set_schedules(std::vector<Schedule> list) {
  if (list.empty()) throw std::invalid_argument("set_schedules: at least one schedule is needed");
  ScheduleList& s = schedule_list();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.list = std::move(list);
  s.initialised = true;
}

// ---- Launch ----

namespace {

// Runs every block of the launch under `schedule`.
void run_grid(const LaunchConfig& config, void (*body)(void*), void* context, const Schedule& schedule) {
  CurrentGuard guard;
  const dim3 g = config.grid, bd = config.block;
  const unsigned n = bd.x * bd.y * bd.z;
  const std::size_t shared_bytes = config.shared_bytes < 16 ? 16 : config.shared_bytes;
  AlignedBuffer shared = aligned_buffer(shared_bytes, 16);
  if (!shared) throw std::bad_alloc();

  BlockState b;
  b.body = body;
  b.context = context;
  b.threads.resize(n);
  b.warps.resize((n + 31) / 32);
  const std::uint64_t blocks = std::uint64_t(g.x) * g.y * g.z;
  for (std::uint64_t k = 0; k < blocks; ++k) {
    const std::uint64_t linear = schedule.blocks_reversed ? blocks - 1 - k : k;
    const unsigned x = unsigned(linear % g.x), y = unsigned(linear / g.x % g.y), z = unsigned(linear / g.x / g.y);
    std::memset(shared.get(), schedule.shared_fill, shared_bytes);
    b.ready.reset(schedule, n, unsigned(b.warps.size()), linear);
    for (unsigned i = 0; i < n; ++i) {
      EmuThread& t = b.threads[i];
      t.thread_idx = uint3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
      t.block_idx = uint3{x, y, z};
      t.block_dim = bd;
      t.grid_dim = g;
      t.linear = i;
      t.lane = i % 32;
      t.warp = i / 32;
      t.shared = shared.get();
      t.block = &b;
      t.copy_groups.clear();
      t.open_copies.clear();
    }
    for (unsigned w = 0; w < b.warps.size(); ++w) {
      Warp& warp = b.warps[w];
      warp.first = 32 * w;
      warp.size = n - 32 * w < 32 ? n - 32 * w : 32;
      warp.live = warp.size;
      warp.arrived = 0;
    }
    b.live = n;
    b.finished = 0;
    b.arrived = 0;
    b.count = b.count_result = 0;
    run_block(b, config);
  }
}

// A copy of every device (and pinned host) allocation, to replay a launch from and to compare.
class MemoryImage {
 public:
  static MemoryImage capture();
  void restore() const;
  // Empty when memory equals the image now; else what differs first, for the report.
  std::string first_difference() const;

 private:
  struct Region {
    unsigned char* address;
    std::vector<unsigned char> bytes;
  };
  std::vector<Region> regions_;
};

std::string launch_description(const LaunchConfig& c) {
  return std::string(c.name ? c.name : "a kernel") + " (grid " + str(uint3(c.grid)) + ", block " +
         str(uint3(c.block)) + ")";
}

}  // namespace

void detail::launch(const LaunchConfig& config, void (*body)(void*), void* context) {
  if (detail::current_thread)
    throw std::logic_error(
        "rnnsweep emulator: a launch from inside a kernel (dynamic parallelism) is not emulated");
  if (cudaError_t e = check_config(config); e != cudaSuccess) {
    rt::record(e);
    return;
  }
  const std::vector<Schedule> list = schedules();
  if (list.size() == 1) {
    run_grid(config, body, context, list[0]);
    return;
  }
  std::lock_guard<std::mutex> lock(replay_mutex());
  const MemoryImage before = MemoryImage::capture();
  run_grid(config, body, context, list[0]);  // its failures are the kernel's own: thrown as they are
  const MemoryImage after = MemoryImage::capture();
  for (size_t i = 1; i < list.size(); ++i) {
    before.restore();
    std::string failure;
    try {
      run_grid(config, body, context, list[i]);
      failure = after.first_difference();
    } catch (const std::exception& e) {
      failure = std::string("the launch failed: ") + e.what();
    }
    if (!failure.empty()) {
      after.restore();  // leave the primary schedule's results, as a launch without replays would
      throw RaceDetected("rnnsweep emulator: race in " + launch_description(config) + ": under schedule " +
                         list[i].name() + " (against " + list[0].name() + ") " + failure);
    }
  }
}

// ---- Emulated runtime ----

namespace {

struct Memory {
  std::mutex mutex;
  std::map<std::uintptr_t, std::size_t> device;  // address -> bytes
  std::map<void*, std::size_t> host;              // cudaMallocHost: address -> bytes
  std::size_t capacity = kDefaultMemoryCapacity;
  std::size_t used = 0;
};

Memory& memory() {
  static Memory m;
  return m;
}

// Whether [p, p + bytes) lies inside one cudaMalloc allocation (the caller holds the mutex).
bool inside_device(const Memory& m, const void* p, std::size_t bytes) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = m.device.upper_bound(a);
  if (it == m.device.begin()) return false;
  --it;
  return a >= it->first && a - it->first <= it->second && bytes <= it->second - (a - it->first);
}

thread_local cudaError_t last_error = cudaSuccess;

constexpr std::size_t kDeviceAlignment = 256;  // what cudaMalloc guarantees

std::string shortest(double x, int digits) {
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%.*g", digits, x);
  return buffer;
}

MemoryImage MemoryImage::capture() {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  MemoryImage image;
  auto add = [&image](void* address, std::size_t bytes) {
    auto* p = static_cast<unsigned char*>(address);
    image.regions_.push_back(Region{p, std::vector<unsigned char>(p, p + bytes)});
  };
  for (const auto& [address, bytes] : m.device) add(reinterpret_cast<void*>(address), bytes);
  for (const auto& [address, bytes] : m.host) add(address, bytes);
  return image;
}

void MemoryImage::restore() const {
  for (const Region& r : regions_) std::memcpy(r.address, r.bytes.data(), r.bytes.size());
}

std::string MemoryImage::first_difference() const {
  for (size_t k = 0; k < regions_.size(); ++k) {
    const Region& r = regions_[k];
    if (std::memcmp(r.address, r.bytes.data(), r.bytes.size()) == 0) continue;
    size_t first = 0, count = 0;
    for (size_t i = r.bytes.size(); i-- > 0;)
      if (r.address[i] != r.bytes[i]) first = i, ++count;
    std::string s = "left different memory: " + std::to_string(count) + " of the " +
                    std::to_string(r.bytes.size()) + " bytes of allocation " + std::to_string(k) +
                    " differ, the first at byte " + std::to_string(first);
    const size_t word = first / 4 * 4;
    if (word + 4 <= r.bytes.size()) {
      float now, then;
      std::int32_t inow, ithen;
      std::memcpy(&now, r.address + word, 4);
      std::memcpy(&then, r.bytes.data() + word, 4);
      std::memcpy(&inow, r.address + word, 4);
      std::memcpy(&ithen, r.bytes.data() + word, 4);
      s += " (as int32 " + std::to_string(inow) + " against " + std::to_string(ithen) + ", as float " +
           shortest(now, 9) + " against " + shortest(then, 9);
      const size_t dword = first / 8 * 8;
      if (dword + 8 <= r.bytes.size()) {
        double dnow, dthen;
        std::memcpy(&dnow, r.address + dword, 8);
        std::memcpy(&dthen, r.bytes.data() + dword, 8);
        s += ", as double " + shortest(dnow, 17) + " against " + shortest(dthen, 17);
      }
      s += ")";
    }
    return s;
  }
  return {};
}

}  // namespace

void set_memory_capacity(std::size_t bytes) {
  std::lock_guard<std::mutex> lock(memory().mutex);
  memory().capacity = bytes;
}

std::size_t device_bytes_in_use() {
  std::lock_guard<std::mutex> lock(memory().mutex);
  return memory().used;
}

struct Stream {
  int unused = 0;
};
struct Event {
  std::chrono::steady_clock::time_point time;
  bool recorded = false;
};

namespace rt {

const char* error_string(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
  }
  return "unrecognized error code";
}

const char* error_name(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) last_error = e;
  return e;
}

cudaError_t get_last_error() {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

cudaError_t peek_last_error() { return last_error; }

cudaError_t malloc_device(void** p, std::size_t bytes) {
  if (!p) return record(cudaErrorInvalidValue);
  if (bytes == 0) {
    *p = nullptr;
    return cudaSuccess;
  }
  Memory& m = memory();
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    if (bytes > m.capacity || m.used > m.capacity - bytes) return record(cudaErrorMemoryAllocation);
    m.used += bytes;  // reserved before allocating so concurrent callers cannot overshoot
  }
  void* q = ::operator new(bytes, std::align_val_t(kDeviceAlignment), std::nothrow);
  std::lock_guard<std::mutex> lock(m.mutex);
  if (!q) {
    m.used -= bytes;
    return record(cudaErrorMemoryAllocation);
  }
  // Device memory starts as garbage; all ones reads as NaN, so missing initialisation shows.
  std::memset(q, 0xFF, bytes);
  m.device.emplace(reinterpret_cast<std::uintptr_t>(q), bytes);
  *p = q;
  return cudaSuccess;
}

cudaError_t free_device(void* p) {
  if (!p) return cudaSuccess;
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  auto it = m.device.find(reinterpret_cast<std::uintptr_t>(p));
  if (it == m.device.end()) return record(cudaErrorInvalidValue);
  m.used -= it->second;
  m.device.erase(it);
  ::operator delete(p, std::align_val_t(kDeviceAlignment));
  return cudaSuccess;
}

cudaError_t malloc_host(void** p, std::size_t bytes) {
  if (!p) return record(cudaErrorInvalidValue);
  void* q = ::operator new(bytes ? bytes : 1, std::align_val_t(kDeviceAlignment), std::nothrow);
  if (!q) return record(cudaErrorMemoryAllocation);
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  m.host.emplace(q, bytes);
  *p = q;
  return cudaSuccess;
}

cudaError_t free_host(void* p) {
  if (!p) return cudaSuccess;
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  if (m.host.erase(p) == 0) return record(cudaErrorInvalidValue);
  ::operator delete(p, std::align_val_t(kDeviceAlignment));
  return cudaSuccess;
}

cudaError_t memcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  if (!dst || !src) return record(cudaErrorInvalidValue);
  {
    Memory& m = memory();
    std::lock_guard<std::mutex> lock(m.mutex);
    const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return record(cudaErrorInvalidValue);
    // The device side must lie in one allocation: swapped arguments or an overrun fail here as
    // they would fault on a GPU.
    if ((dst_device && !inside_device(m, dst, bytes)) || (src_device && !inside_device(m, src, bytes)))
      return record(cudaErrorInvalidValue);
  }
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t memset(void* p, int value, std::size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  {
    Memory& m = memory();
    std::lock_guard<std::mutex> lock(m.mutex);
    if (!inside_device(m, p, bytes)) return record(cudaErrorInvalidValue);
  }
  std::memset(p, value, bytes);
  return cudaSuccess;
}

cudaError_t mem_get_info(std::size_t* free_bytes, std::size_t* total_bytes) {
  if (!free_bytes || !total_bytes) return record(cudaErrorInvalidValue);
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mutex);
  *total_bytes = m.capacity;
  *free_bytes = m.used < m.capacity ? m.capacity - m.used : 0;
  return cudaSuccess;
}

cudaError_t device_properties(cudaDeviceProp* prop, int device) {
  if (!prop) return record(cudaErrorInvalidValue);
  if (device != 0) return record(cudaErrorInvalidDevice);
  *prop = cudaDeviceProp{};
  std::strncpy(prop->name, "host block emulator", sizeof prop->name - 1);
  {
    std::lock_guard<std::mutex> lock(memory().mutex);
    prop->totalGlobalMem = memory().capacity;
  }
  prop->sharedMemPerBlock = kSharedPerBlock;
  prop->sharedMemPerBlockOptin = kSharedPerBlockOptin;
  prop->sharedMemPerMultiprocessor = 228 * 1024;
  prop->regsPerBlock = 65536;
  prop->warpSize = warpSize;
  prop->maxThreadsPerBlock = kMaxThreadsPerBlock;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->multiProcessorCount = 132;
  prop->major = 9;
  prop->minor = 0;
  return cudaSuccess;
}

cudaError_t device_attribute(int* value, cudaDeviceAttr attr, int device) {
  if (!value) return record(cudaErrorInvalidValue);
  if (device != 0) return record(cudaErrorInvalidDevice);
  cudaDeviceProp p;
  device_properties(&p, 0);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = p.maxThreadsPerBlock;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = int(p.sharedMemPerBlock);
      break;
    case cudaDevAttrWarpSize:
      *value = p.warpSize;
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = p.multiProcessorCount;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = p.major;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = p.minor;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = int(p.sharedMemPerBlockOptin);
      break;
    default:
      return record(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t func_set_attribute(const void* func, cudaFuncAttribute attr, int value) {
  if (!func) return record(cudaErrorInvalidValue);
  switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize: {
      if (value < 0 || std::size_t(value) > kSharedPerBlockOptin) return record(cudaErrorInvalidValue);
      std::lock_guard<std::mutex> lock(attribute_mutex());
      shared_attributes()[func] = value;
      return cudaSuccess;
    }
    case cudaFuncAttributePreferredSharedMemoryCarveout:
      return value >= -1 && value <= 100 ? cudaSuccess : record(cudaErrorInvalidValue);
  }
  return record(cudaErrorInvalidValue);
}

cudaError_t stream_create(cudaStream_t* s) {
  if (!s) return record(cudaErrorInvalidValue);
  *s = new Stream;
  return cudaSuccess;
}

cudaError_t stream_destroy(cudaStream_t s) {
  if (!s) return record(cudaErrorInvalidResourceHandle);
  delete s;
  return cudaSuccess;
}

cudaError_t event_create(cudaEvent_t* e) {
  if (!e) return record(cudaErrorInvalidValue);
  *e = new Event;
  return cudaSuccess;
}

cudaError_t event_destroy(cudaEvent_t e) {
  if (!e) return record(cudaErrorInvalidResourceHandle);
  delete e;
  return cudaSuccess;
}

cudaError_t event_record(cudaEvent_t e) {
  if (!e) return record(cudaErrorInvalidResourceHandle);
  e->time = std::chrono::steady_clock::now();
  e->recorded = true;
  return cudaSuccess;
}

cudaError_t event_elapsed(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return record(cudaErrorInvalidValue);
  if (!start || !end || !start->recorded || !end->recorded) return record(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->time - start->time).count();
  return cudaSuccess;
}

}  // namespace rt

}  // namespace rnnsweep::emu
