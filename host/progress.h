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

// Prints "rnnsweep: 42.0% (done/total units), rate, elapsed, ETA" on stderr until stopped: in
// place every second on a terminal; otherwise (a batch job's log) a plain line, no carriage
// return, every `period_s` seconds (default 10). The last line says "done", or, for a run
// stopped by a signal, "stopped" with what was left.
class ProgressPrinter {
 public:
  ProgressPrinter(const Progress& p, std::string units, bool quiet, double period_s = 0)
      : progress_(p), units_(std::move(units)), tty_(isatty(STDERR_FILENO)) {
    period_ = std::chrono::duration<double>(period_s > 0 ? period_s : tty_ ? 1.0 : 10.0);
    if (!quiet) thread_ = std::thread([this] { loop(); });
  }
  ~ProgressPrinter() { stop(); }
  // `stopped`: the work ended early (SIGTERM and the like), not because it was done.
  void stop(bool stopped = false) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) {
      thread_.join();
      print(stopped ? Line::stopped : Line::done);
    }
  }

 private:
  enum class Line { running, done, stopped };
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, period_, [this] { return stopping_; })) print(Line::running);
  }
  void print(Line line) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const long long done = progress_.done, total = std::max(1LL, progress_.total.load());
    const double rate = elapsed > 0 ? done / elapsed : 0;
    const std::string eta = rate > 0 ? clock_text((total - done) / rate) : "?";
    const std::string end = line == Line::done      ? "done"
                            : line == Line::stopped ? "stopped with " + std::to_string(total - done) + " to go"
                                                    : "ETA " + eta;
    std::fprintf(stderr, "%srnnsweep: %5.1f%% (%lld/%lld %s), %.0f/s, elapsed %s, %s%s", tty_ ? "\r" : "",
                 100.0 * done / total, done, total, units_.c_str(), rate, clock_text(elapsed).c_str(),
                 end.c_str(), tty_ && line == Line::running ? "\033[K" : tty_ ? "\033[K\n" : "\n");
    std::fflush(stderr);
  }

  const Progress& progress_;
  std::string units_;
  bool tty_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::chrono::duration<double> period_;
  std::thread thread_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace rnnsweep
