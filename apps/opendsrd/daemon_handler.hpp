// The http_handler opendsrd serves: the OpenDSR API (published once it is built), plus the
// daemon's own routes, with every request counted in the metrics and logged.
//
// Routes besides the API's:
//   GET  /metrics       Prometheus text format (public: bind to loopback or filter at the proxy)
//   GET  /admin/clock   test mode only: {"now": ...}
//   POST /admin/clock   test mode only: {"set": "<RFC 3339>"} or {"advance_seconds": N} moves the
//                       manual clock (never backwards), then runs the due work at once
//                       (engine tick); answers {"now": ..., "transitions": N}
// Until publish() the API routes answer 503 (retryable).
//
// Thread safety: as http_handler; publish() may be called from any thread once.
#pragma once

#include "opendsrd/metrics.hpp"

#include <opendsr/api.hpp>
#include <opendsr/clock.hpp>
#include <opendsr/engine.hpp>

#include <atomic>
#include <functional>
#include <string>

namespace opendsr::app {

struct daemon_handler_options {
  std::string base_path = "/v3";
  std::string certificate_path;  // where the API serves the certificate
  bool access_log = true;        // one log line per request
  // Test mode: the manual clock the admin routes move (they tick the published engine). Null
  // otherwise: the admin routes do not exist.
  manual_clock* test_clock = nullptr;
  // Called after each created request (201), so the tick timer can be re-armed.
  std::function<void()> on_created;
  // Test mode: called after the admin route moved the clock and ticked, so the dispatchers send
  // what is now due.
  std::function<void()> on_clock_moved;
  // The clock the engine runs on (the test clock in test mode); /metrics reports ages by it.
  const clock* engine_clock = nullptr;
};

class daemon_handler final : public http_handler {
 public:
  daemon_handler(metrics& m, daemon_handler_options options);

  // From now on API requests go to `a` (and test-mode ticks to `e`); both must outlive the
  // server's use of the handler. Call once.
  void publish(api& a, engine& e) noexcept {
    engine_.store(&e);
    api_.store(&a);
  }
  // The number of open connections, for /metrics. Default: none reported (0).
  void set_connection_count(std::function<std::size_t()> count) { connections_ = std::move(count); }

  http_head_decision on_head(const http_request& head) override;
  http_response on_error(const error& e) override;

 private:
  http_response metrics_response() const;
  http_head_decision admin_clock(const http_request& head);
  http_response move_clock(std::string_view body);
  void finish(std::string_view route, std::string_view method, int status,
              std::chrono::steady_clock::time_point start);

  metrics& metrics_;
  daemon_handler_options options_;
  std::atomic<api*> api_{nullptr};
  std::atomic<engine*> engine_{nullptr};
  std::function<std::size_t()> connections_;
};

}  // namespace opendsr::app
