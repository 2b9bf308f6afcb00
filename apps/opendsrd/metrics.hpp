// What opendsrd counts, and its rendering in the Prometheus text exposition format (GET /metrics).
//
// Thread safety: every method may be called from any thread concurrently.
#pragma once

#include <opendsr/callback_delivery.hpp>
#include <opendsr/distribution.hpp>
#include <opendsr/forward_dispatcher.hpp>
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
#include <vector>

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

// What /metrics reads from the engine at each scrape (nullopt: it could not be read).
struct engine_view {
  std::optional<callback_queue_stats> callbacks;
  std::optional<forward_queue_stats> forwards;
  std::optional<std::vector<output_info>> outputs;
  timestamp now;  // the engine's time
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

  // One partner batch attempt completed (forward_dispatcher_options::on_attempt).
  void record_forward_attempt(forward_verdict_kind verdict, std::chrono::nanoseconds latency);
  // Forward outcomes recorded, or the recording failed (the batches are then sent again).
  void record_forward_outcomes(const result<forward_record_report>& report);
  // Where the partner batches being sent now are counted (the forward dispatcher). Set once,
  // before serving.
  void set_forwards_in_flight(std::function<std::size_t()> count) { forwards_in_flight_ = std::move(count); }

  std::string render(std::size_t open_connections, const engine_view& engine) const;

 private:
  void render_forwards(std::string& out, const engine_view& engine) const;
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
  std::array<std::atomic<std::uint64_t>, 5> forward_attempts_{};  // by forward_verdict_kind
  std::atomic<std::uint64_t> forward_batches_sent_{0}, forward_requests_sent_{0}, forward_retries_{0},
      forward_splits_{0}, forward_failures_{0}, forward_stale_{0}, forward_record_failures_{0};
  latency_histogram forward_latency_;
  std::function<std::size_t()> forwards_in_flight_;
};

// The label (and log value) of a verdict: sent, retry, too_large, bad_credentials, failed.
std::string_view forward_verdict_label(forward_verdict_kind k);

// A Prometheus label value, quoted: backslash, double quote and line feed escaped.
std::string label_value(std::string_view v);

// The route label of a request target: requests, request, discovery, results, subject_data,
// outputs, certificate, metrics, admin or other. `base_path` is the API's ("/v3").
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
