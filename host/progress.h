// The progress line of long commands, and the clock text it uses.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>

#include "rnnsweep/backend.h"

namespace rnnsweep {

inline std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// "1 network", "2 networks": a count and its noun, singular for one.
inline std::string count_of(long long n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

inline std::string clock_text(double seconds) {
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

// Prints "what: 42.0% (done/total units), rate, elapsed, ETA" on stderr until stopped: in place
// on a terminal, a line every 10 s otherwise (logs of batch jobs stay short).
class ProgressPrinter {
 public:
  ProgressPrinter(const Progress& p, std::string units, bool quiet)
      : progress_(p), units_(std::move(units)), tty_(isatty(STDERR_FILENO)) {
    if (!quiet) thread_ = std::thread([this] { loop(); });
  }
  ~ProgressPrinter() { stop(); }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) {
      thread_.join();
      print(true);
    }
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto period = std::chrono::seconds(tty_ ? 1 : 10);
    while (!wake_.wait_for(lock, period, [this] { return stopping_; })) print(false);
  }
  void print(bool last) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const long long done = progress_.done, total = std::max(1LL, progress_.total.load());
    const double rate = elapsed > 0 ? done / elapsed : 0;
    const std::string eta = rate > 0 ? clock_text((total - done) / rate) : "?";
    std::fprintf(stderr, "%srnnsweep: %5.1f%% (%lld/%lld %s), %.0f/s, elapsed %s, ETA %s%s", tty_ ? "\r" : "",
                 100.0 * done / total, done, total, units_.c_str(), rate, clock_text(elapsed).c_str(),
                 last ? "0:00" : eta.c_str(), tty_ && !last ? "" : "\n");
    std::fflush(stderr);
  }

  const Progress& progress_;
  std::string units_;
  bool tty_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace rnnsweep
