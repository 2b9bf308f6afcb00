// What opendsrd counts, and its rendering in the Prometheus text exposition format (GET /metrics).
//
// Thread safety: every method may be called from any thread concurrently.
#pragma once

#include <opendsr/callback_delivery.hpp>
#include <opendsr/storage_wrapper.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

namespace opendsr::app {

// A latency histogram with fixed buckets (seconds), as Prometheus expects them: cumulative on
// rendering.
class latency_histogram {
 public:
  static constexpr std::array<double, 12> bounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
  void observe(std::chrono::nanoseconds d);
  // Appends the _bucket, _sum and _count lines of `name` with `labels` ("" or `a="b",`).
  void render(std::string& out, std::string_view name, std::string_view labels) const;

 private:
  std::array<std::atomic<std::uint64_t>, bounds.size() + 1> counts_{};  // the last one is +Inf
  std::atomic<std::uint64_t> sum_ns_{0};
};

class metrics {
 public:
  // One answered HTTP request: route is one of the labels of route_label().
  void record_request(std::string_view route, std::string_view method, int status, std::chrono::nanoseconds latency);

  // A POST body handed to the API (waiting for its group commit and signature) / answered.
  void post_started() noexcept { posts_in_progress_.fetch_add(1); }
  void post_finished() noexcept { posts_in_progress_.fetch_sub(1); }

  void record_commit(std::chrono::nanoseconds d, bool ok);
  void record_tick(std::size_t transitions, bool ok);

  // One callback attempt completed (delivered iff the receiver answered 2xx).
  void record_callback_attempt(bool delivered, std::chrono::nanoseconds latency);
  // Outcomes recorded: how many were dead-lettered, and whether the recording failed.
  void record_callback_outcomes(std::size_t dead_lettered, bool ok);

  // Where the callbacks being sent now are counted (the dispatcher). Set once, before serving.
  void set_callbacks_in_flight(std::function<std::size_t()> count) { callbacks_in_flight_ = std::move(count); }

  // `queue` is the callback queue now (nullopt if it could not be read), `now` the engine's time.
  std::string render(std::size_t open_connections, const std::optional<callback_queue_stats>& queue, timestamp now) const;

 private:
  struct by_route {
    latency_histogram latency;
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;  // route, method, status
  std::map<std::string, by_route, std::less<>> latency_;                       // by route
  std::atomic<std::int64_t> posts_in_progress_{0};
  latency_histogram commit_latency_;
  std::atomic<std::uint64_t> commits_{0}, failed_commits_{0};
  std::atomic<std::uint64_t> ticks_{0}, failed_ticks_{0}, transitions_{0};
  std::atomic<std::uint64_t> callbacks_delivered_{0}, callback_failures_{0}, callbacks_dead_lettered_{0},
      callback_record_failures_{0};
  latency_histogram callback_latency_;
  std::function<std::size_t()> callbacks_in_flight_;
};

// The route label of a request target: requests, request, discovery, certificate, metrics,
// admin or other. `base_path` is the API's ("/v3").
std::string_view route_label(std::string_view target, std::string_view base_path, std::string_view certificate_path);

// A storage that reports the duration and outcome of every write commit to `m`.
class metered_storage final : public storage_wrapper {
 public:
  metered_storage(storage& target, metrics& m) : storage_wrapper(target), metrics_(m) {}
  result<std::unique_ptr<write_transaction>> begin_write() override;

 private:
  metrics& metrics_;
};

}  // namespace opendsr::app
