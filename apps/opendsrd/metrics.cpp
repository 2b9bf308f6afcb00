#include "opendsrd/metrics.hpp"

#include <cstdio>

namespace opendsr::app {
namespace {

using clock_type = std::chrono::steady_clock;

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", s);
  return buf;
}

class metered_write final : public write_transaction_wrapper {
 public:
  metered_write(std::unique_ptr<write_transaction> t, metrics& m) : write_transaction_wrapper(std::move(t)), metrics_(m) {}
  result<void> commit() override {
    auto start = clock_type::now();
    auto r = write_transaction_wrapper::commit();
    metrics_.record_commit(clock_type::now() - start, r.has_value());
    return r;
  }

 private:
  metrics& metrics_;
};

}  // namespace

void latency_histogram::observe(std::chrono::nanoseconds d) {
  const double s = std::chrono::duration<double>(d).count();
  std::size_t i = 0;
  while (i < bounds.size() && s > bounds[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<std::uint64_t>(d.count()), std::memory_order_relaxed);
}

void latency_histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    std::string le = i < bounds.size() ? seconds_text(bounds[i]) : "+Inf";
    out += std::string(name) + "_bucket{" + std::string(labels) + "le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  std::string plain(labels.empty() ? "" : labels.substr(0, labels.size() - 1));  // without the trailing comma
  std::string braces = plain.empty() ? "" : "{" + plain + "}";
  out += std::string(name) + "_sum" + braces + " " + seconds_text(static_cast<double>(sum_ns_.load()) / 1e9) + "\n";
  out += std::string(name) + "_count" + braces + " " + std::to_string(cumulative) + "\n";
}

void metrics::record_request(std::string_view route, std::string_view method, int status, std::chrono::nanoseconds latency) {
  std::lock_guard lock(mutex_);
  ++requests_[{std::string(route), std::string(method), status}];
  auto it = latency_.find(route);
  if (it == latency_.end()) it = latency_.try_emplace(std::string(route)).first;
  it->second.latency.observe(latency);
}

void metrics::record_commit(std::chrono::nanoseconds d, bool ok) {
  (ok ? commits_ : failed_commits_).fetch_add(1, std::memory_order_relaxed);
  commit_latency_.observe(d);
}

void metrics::record_tick(std::size_t transitions, bool ok) {
  (ok ? ticks_ : failed_ticks_).fetch_add(1, std::memory_order_relaxed);
  transitions_.fetch_add(transitions, std::memory_order_relaxed);
}

void metrics::record_callback_attempt(bool delivered, std::chrono::nanoseconds latency) {
  (delivered ? callbacks_delivered_ : callback_failures_).fetch_add(1);
  callback_latency_.observe(latency);
}

void metrics::record_callback_outcomes(std::size_t dead_lettered, bool ok) {
  callbacks_dead_lettered_.fetch_add(dead_lettered);
  if (!ok) callback_record_failures_.fetch_add(1);
}

std::string metrics::render(std::size_t open_connections, const std::optional<callback_queue_stats>& queue,
                            timestamp now) const {
  std::string out;
  out += "# HELP opendsr_http_requests_total HTTP requests answered, by route, method and status.\n";
  out += "# TYPE opendsr_http_requests_total counter\n";
  std::lock_guard lock(mutex_);
  for (const auto& [key, n] : requests_) {
    const auto& [route, method, status] = key;
    out += "opendsr_http_requests_total{route=\"" + route + "\",method=\"" + method + "\",status=\"" + std::to_string(status) +
           "\"} " + std::to_string(n) + "\n";
  }
  out += "# HELP opendsr_http_request_duration_seconds Time from the request header to the response, by route.\n";
  out += "# TYPE opendsr_http_request_duration_seconds histogram\n";
  for (const auto& [route, r] : latency_) r.latency.render(out, "opendsr_http_request_duration_seconds", "route=\"" + route + "\",");
  out += "# HELP opendsr_http_connections Open HTTP connections.\n# TYPE opendsr_http_connections gauge\n";
  out += "opendsr_http_connections " + std::to_string(open_connections) + "\n";
  out += "# HELP opendsr_posts_in_progress POST bodies with the API: queued for or in a group commit, or being signed.\n";
  out += "# TYPE opendsr_posts_in_progress gauge\n";
  out += "opendsr_posts_in_progress " + std::to_string(posts_in_progress_.load()) + "\n";
  out += "# HELP opendsr_storage_commits_total Write transactions committed (one group commit is one), by outcome.\n";
  out += "# TYPE opendsr_storage_commits_total counter\n";
  out += "opendsr_storage_commits_total{outcome=\"ok\"} " + std::to_string(commits_.load()) + "\n";
  out += "opendsr_storage_commits_total{outcome=\"failed\"} " + std::to_string(failed_commits_.load()) + "\n";
  out += "# HELP opendsr_storage_commit_seconds Duration of write commits (including the fsync when durable).\n";
  out += "# TYPE opendsr_storage_commit_seconds histogram\n";
  commit_latency_.render(out, "opendsr_storage_commit_seconds", "");
  out += "# HELP opendsr_ticks_total Engine ticks, by outcome.\n# TYPE opendsr_ticks_total counter\n";
  out += "opendsr_ticks_total{outcome=\"ok\"} " + std::to_string(ticks_.load()) + "\n";
  out += "opendsr_ticks_total{outcome=\"failed\"} " + std::to_string(failed_ticks_.load()) + "\n";
  out += "# HELP opendsr_transitions_total Request status changes performed by ticks.\n# TYPE opendsr_transitions_total counter\n";
  out += "opendsr_transitions_total " + std::to_string(transitions_.load()) + "\n";
  out += "# HELP opendsr_callbacks_delivered_total Callback attempts the receiver answered with 2xx.\n";
  out += "# TYPE opendsr_callbacks_delivered_total counter\n";
  out += "opendsr_callbacks_delivered_total " + std::to_string(callbacks_delivered_.load()) + "\n";
  out += "# HELP opendsr_callback_failures_total Callback attempts that failed (non-2xx, redirect, timeout, TLS, network).\n";
  out += "# TYPE opendsr_callback_failures_total counter\n";
  out += "opendsr_callback_failures_total " + std::to_string(callback_failures_.load()) + "\n";
  out += "# HELP opendsr_callbacks_dead_lettered_total Callbacks that failed for the last time (see opendsr callbacks dead).\n";
  out += "# TYPE opendsr_callbacks_dead_lettered_total counter\n";
  out += "opendsr_callbacks_dead_lettered_total " + std::to_string(callbacks_dead_lettered_.load()) + "\n";
  out += "# HELP opendsr_callback_record_failures_total Recordings of callback outcomes that failed (the callbacks are sent again).\n";
  out += "# TYPE opendsr_callback_record_failures_total counter\n";
  out += "opendsr_callback_record_failures_total " + std::to_string(callback_record_failures_.load()) + "\n";
  out += "# HELP opendsr_callback_delivery_seconds Time from sending a callback to its answer or failure.\n";
  out += "# TYPE opendsr_callback_delivery_seconds histogram\n";
  callback_latency_.render(out, "opendsr_callback_delivery_seconds", "");
  if (queue) {
    out += "# HELP opendsr_callbacks_queued Callbacks not yet delivered nor dead.\n# TYPE opendsr_callbacks_queued gauge\n";
    out += "opendsr_callbacks_queued " + std::to_string(queue->queued) + "\n";
    out += "# HELP opendsr_callbacks_dead Dead-lettered callbacks in the store.\n# TYPE opendsr_callbacks_dead gauge\n";
    out += "opendsr_callbacks_dead " + std::to_string(queue->dead) + "\n";
    const auto age = queue->oldest_due && *queue->oldest_due < now ? now - *queue->oldest_due : std::chrono::microseconds(0);
    out += "# HELP opendsr_callback_oldest_due_age_seconds How long the earliest callback that is due and not being sent has waited.\n";
    out += "# TYPE opendsr_callback_oldest_due_age_seconds gauge\n";
    out += "opendsr_callback_oldest_due_age_seconds " + std::to_string(std::chrono::duration<double>(age).count()) + "\n";
  }
  if (callbacks_in_flight_) {
    out += "# HELP opendsr_callbacks_in_flight Callbacks claimed and being sent now.\n# TYPE opendsr_callbacks_in_flight gauge\n";
    out += "opendsr_callbacks_in_flight " + std::to_string(callbacks_in_flight_()) + "\n";
  }
  return out;
}

std::string_view route_label(std::string_view target, std::string_view base_path, std::string_view certificate_path) {
  std::string_view path = target.substr(0, target.find('?'));
  if (path == certificate_path) return "certificate";
  if (path == "/metrics") return "metrics";
  if (path.starts_with("/admin/")) return "admin";
  if (!path.starts_with(base_path)) return "other";
  path.remove_prefix(base_path.size());
  if (path == "/requests" || path == "/requests/") return "requests";
  if (path.starts_with("/requests/")) return "request";
  if (path == "/discovery" || path == "/discovery/") return "discovery";
  if (path.starts_with("/results/")) return "results";
  if (path == "/subject-data" || path == "/subject-data/") return "subject_data";
  return "other";
}

result<std::unique_ptr<write_transaction>> metered_storage::begin_write() {
  auto txn = storage_wrapper::begin_write();
  if (!txn) return std::move(txn).error();
  return std::unique_ptr<write_transaction>(std::make_unique<metered_write>(std::move(*txn), metrics_));
}

}  // namespace opendsr::app
