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

// One metric of one sample: its HELP and TYPE lines, then `name value`.
void single(std::string& out, std::string_view name, std::string_view type, std::string_view help, std::string_view value) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  out.append(name).append(" ").append(value).append("\n");
}

std::string age_seconds(const std::optional<timestamp>& oldest_due, timestamp now) {
  const auto age = oldest_due && *oldest_due < now ? now - *oldest_due : std::chrono::microseconds(0);
  return std::to_string(std::chrono::duration<double>(age).count());
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

void metrics::record_forward_attempt(forward_verdict_kind verdict, std::chrono::nanoseconds latency) {
  forward_attempts_[static_cast<std::size_t>(verdict)].fetch_add(1);
  forward_latency_.observe(latency);
}

void metrics::record_forward_outcomes(const result<forward_record_report>& r) {
  if (!r) {
    forward_record_failures_.fetch_add(1);
    return;
  }
  forward_batches_sent_.fetch_add(r->sent);
  forward_requests_sent_.fetch_add(r->requests_sent);
  forward_retries_.fetch_add(r->retried);
  forward_splits_.fetch_add(r->split);
  forward_failures_.fetch_add(r->failed);
  forward_stale_.fetch_add(r->stale);
}

std::string_view forward_verdict_label(forward_verdict_kind k) {
  switch (k) {
    case forward_verdict_kind::sent: return "sent";
    case forward_verdict_kind::retry: return "retry";
    case forward_verdict_kind::too_large: return "too_large";
    case forward_verdict_kind::bad_credentials: return "bad_credentials";
    case forward_verdict_kind::failed: return "failed";
  }
  return "failed";
}

std::string label_value(std::string_view v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out + '"';
}

std::string metrics::render(std::size_t open_connections, const engine_view& engine) const {
  const std::optional<callback_queue_stats>& queue = engine.callbacks;
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
    out += "# HELP opendsr_callback_oldest_due_age_seconds How long the earliest callback that is due and not being sent has waited.\n";
    out += "# TYPE opendsr_callback_oldest_due_age_seconds gauge\n";
    out += "opendsr_callback_oldest_due_age_seconds " + age_seconds(queue->oldest_due, engine.now) + "\n";
  }
  if (callbacks_in_flight_) {
    out += "# HELP opendsr_callbacks_in_flight Callbacks claimed and being sent now.\n# TYPE opendsr_callbacks_in_flight gauge\n";
    out += "opendsr_callbacks_in_flight " + std::to_string(callbacks_in_flight_()) + "\n";
  }
  render_forwards(out, engine);
  return out;
}

void metrics::render_forwards(std::string& out, const engine_view& engine) const {
  out += "# HELP opendsr_forward_attempts_total Partner batch attempts, by what the partner's answer (or the transport) meant.\n";
  out += "# TYPE opendsr_forward_attempts_total counter\n";
  for (std::size_t k = 0; k < forward_attempts_.size(); ++k)
    out += "opendsr_forward_attempts_total{verdict=\"" + std::string(forward_verdict_label(static_cast<forward_verdict_kind>(k))) + "\"} " +
           std::to_string(forward_attempts_[k].load()) + "\n";
  const auto count = [](const std::atomic<std::uint64_t>& n) { return std::to_string(n.load()); };
  single(out, "opendsr_forward_batches_sent_total", "counter", "Partner batches whose 2xx was recorded.", count(forward_batches_sent_));
  single(out, "opendsr_forward_requests_sent_total", "counter", "Erasure requests those batches forwarded.", count(forward_requests_sent_));
  single(out, "opendsr_forward_retries_total", "counter", "Partner batches scheduled again (5xx, 429, timeout, network).", count(forward_retries_));
  single(out, "opendsr_forward_splits_total", "counter", "Partner batches split in two after a 413.", count(forward_splits_));
  single(out, "opendsr_forward_batches_failed_total", "counter",
         "Partner batches that failed for good (bad credentials, refused, retries spent): dead, see opendsr forwards dead.",
         count(forward_failures_));
  single(out, "opendsr_forward_stale_outcomes_total", "counter", "Partner outcomes not recorded because their lease was lost.", count(forward_stale_));
  single(out, "opendsr_forward_record_failures_total", "counter",
         "Recordings of partner outcomes that failed (those batches are sent again when their lease expires).",
         count(forward_record_failures_));
  out += "# HELP opendsr_forward_attempt_seconds Time from sending a partner batch to its answer or failure.\n";
  out += "# TYPE opendsr_forward_attempt_seconds histogram\n";
  forward_latency_.render(out, "opendsr_forward_attempt_seconds", "");
  if (const auto& q = engine.forwards) {
    single(out, "opendsr_forwards_queued", "gauge", "Forwards waiting for a partner batch.", std::to_string(q->queued));
    single(out, "opendsr_forward_batches", "gauge", "Partner batches claimed or waiting for a retry.", std::to_string(q->batches));
    single(out, "opendsr_forward_batches_dead", "gauge", "Dead partner batches in the store.", std::to_string(q->dead_batches));
    single(out, "opendsr_forward_oldest_due_age_seconds", "gauge",
           "How long the earliest partner batch that is due and not being sent has waited.", age_seconds(q->oldest_due, engine.now));
  }
  if (const auto& outputs = engine.outputs) {
    out += "# HELP opendsr_forward_output_circuit_open 1 while an output is stopped after its partner refused its credentials.\n";
    out += "# TYPE opendsr_forward_output_circuit_open gauge\n";
    for (const output_info& o : *outputs)
      out += "opendsr_forward_output_circuit_open{workspace=" + label_value(o.workspace) + ",output=" + label_value(o.name) + "} " +
             (o.circuit_open ? "1" : "0") + "\n";
  }
  if (forwards_in_flight_)
    single(out, "opendsr_forwards_in_flight", "gauge", "Partner batches being sent now (at most one per output).",
           std::to_string(forwards_in_flight_()));
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
  if (path == "/outputs" || path.starts_with("/outputs/")) return "outputs";
  return "other";
}

result<std::unique_ptr<write_transaction>> metered_storage::begin_write() {
  auto txn = storage_wrapper::begin_write();
  if (!txn) return std::move(txn).error();
  return std::unique_ptr<write_transaction>(std::make_unique<metered_write>(std::move(*txn), metrics_));
}

}  // namespace opendsr::app
