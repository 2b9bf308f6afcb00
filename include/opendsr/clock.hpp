// The clock seam. All engine time comes from a clock the embedder injects.
//
// Thread safety: now() may be called from any thread concurrently with every other method.
// Ownership: the embedder owns the clock and keeps it alive as long as anything that uses it.
#pragma once

#include <opendsr/time.hpp>

#include <atomic>
#include <chrono>

namespace opendsr {

class clock {
 public:
  virtual ~clock() = default;
  clock() = default;
  clock(const clock&) = delete;
  clock& operator=(const clock&) = delete;

  // Returns the current UTC time.
  virtual timestamp now() const = 0;
};

// Wall-clock time from the operating system.
class system_clock final : public clock {
 public:
  timestamp now() const override {
    return std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
  }
};

// Time that moves only when told to: for tests, simulations and the daemon's test mode.
class manual_clock final : public clock {
 public:
  explicit manual_clock(timestamp start = {}) : us_(start.time_since_epoch().count()) {}

  timestamp now() const override { return timestamp(std::chrono::microseconds(us_.load())); }
  void set(timestamp t) { us_.store(t.time_since_epoch().count()); }
  void advance(std::chrono::microseconds d) { us_.fetch_add(d.count()); }

 private:
  std::atomic<std::chrono::microseconds::rep> us_;
};

}  // namespace opendsr
