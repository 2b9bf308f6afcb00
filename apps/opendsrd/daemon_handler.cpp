#include "opendsrd/daemon_handler.hpp"

#include "opendsrd/log.hpp"

#include <opendsr/error_body.hpp>

#include <boost/json.hpp>

namespace opendsr::app {
namespace {

using steady = std::chrono::steady_clock;

// A label that outlives the request (a literal), from a bounded set.
std::string_view method_label(std::string_view m) {
  if (m == "GET") return "GET";
  if (m == "POST") return "POST";
  if (m == "DELETE") return "DELETE";
  if (m == "PATCH") return "PATCH";
  return "other";
}

http_response error_response(const error& e) {
  http_response r{http_status(e.code()), {}, error_body(e)};
  r.headers.set("Content-Type", "application/json");
  r.headers.set("Cache-Control", "no-store");
  r.headers.set("Pragma", "no-cache");
  return r;
}

http_response json_response(int status, std::string body) {
  http_response r{status, {}, std::move(body)};
  r.headers.set("Content-Type", "application/json");
  r.headers.set("Cache-Control", "no-store");
  return r;
}

}  // namespace

daemon_handler::daemon_handler(metrics& m, daemon_handler_options options) : metrics_(m), options_(std::move(options)) {}

void daemon_handler::finish(std::string_view route, std::string_view method, int status, steady::time_point start) {
  const auto took = steady::now() - start;
  metrics_.record_request(route, method, status, took);
  if (options_.access_log) {
    log_event("info", "request",
              {{"method", method},
               {"route", route},
               {"status", std::to_string(status)},
               {"us", std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(took).count())}});
  }
}

http_head_decision daemon_handler::on_head(const http_request& head) {
  const auto start = steady::now();
  const std::string_view route = route_label(head.target, options_.base_path, options_.certificate_path);
  const std::string_view method = method_label(head.method);
  auto answered = [&](http_response r) -> http_head_decision {
    finish(route, method, r.status, start);
    return r;
  };

  if (route == "metrics") {
    if (head.method != "GET") {
      http_response r = error_response(error(errc::method_not_allowed, "Allowed: GET."));
      r.headers.set("Allow", "GET");
      return answered(std::move(r));
    }
    return answered(metrics_response());
  }
  api* a = api_.load();
  if (!a) return answered(error_response(error(errc::unavailable, "The processor is starting.")));
  if (route == "admin" && options_.test_clock) {
    auto decision = admin_clock(head);
    if (auto* r = std::get_if<http_response>(&decision)) return answered(std::move(*r));
    return decision;
  }

  auto decision = a->on_head(head);
  if (auto* r = std::get_if<http_response>(&decision)) return answered(std::move(*r));
  return http_body_handler([this, inner = std::move(std::get<http_body_handler>(decision)), route, method, start](
                               http_request request, http_responder respond) {
    metrics_.post_started();
    inner(std::move(request), [this, respond = std::move(respond), route, method, start](http_response r) {
      metrics_.post_finished();
      finish(route, method, r.status, start);
      if (r.status == 201 && options_.on_created) options_.on_created();
      respond(std::move(r));
    });
  });
}

http_response daemon_handler::on_error(const error& e) {
  api* a = api_.load();
  http_response r = a ? a->on_error(e) : error_response(e);
  metrics_.record_request("transport", "other", r.status, std::chrono::nanoseconds(0));
  log_event("warn", "transport_error", {{"status", std::to_string(r.status)}, {"message", e.message()}});
  return r;
}

http_response daemon_handler::metrics_response() const {
  engine_view view;
  if (engine* e = engine_.load()) {
    if (auto q = e->callback_queue()) view.callbacks = *q;
    if (auto q = e->forward_queue()) view.forwards = *q;
    if (auto o = e->outputs()) view.outputs = std::move(*o);
  }
  view.now = options_.engine_clock ? options_.engine_clock->now() : timestamp{};
  http_response r{200, {}, metrics_.render(connections_ ? connections_() : 0, view)};
  r.headers.set("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  r.headers.set("Cache-Control", "no-store");
  return r;
}

http_head_decision daemon_handler::admin_clock(const http_request& head) {
  if (head.target != "/admin/clock") return error_response(error(errc::not_found, "There is no such resource."));
  if (head.method == "GET")
    return json_response(200, "{\"now\":\"" + format_rfc3339(options_.test_clock->now()) + "\"}");
  if (head.method != "POST") {
    http_response r = error_response(error(errc::method_not_allowed, "Allowed: GET, POST."));
    r.headers.set("Allow", "GET, POST");
    return r;
  }
  return http_body_handler([this](http_request request, http_responder respond) { respond(move_clock(request.body)); });
}

http_response daemon_handler::move_clock(std::string_view body) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  const auto* o = ec ? nullptr : v.if_object();
  if (!o || o->size() != 1)
    return error_response(error(errc::invalid_request, "Expected {\"set\": \"<RFC 3339>\"} or {\"advance_seconds\": N}."));
  manual_clock& clock = *options_.test_clock;
  const timestamp before = clock.now();
  if (const auto* set = o->if_contains("set")) {
    const auto* text = set->if_string();
    auto t = text ? parse_rfc3339(*text) : result<timestamp>(error(errc::invalid_request, "set: expected an RFC 3339 string"));
    if (!t) return error_response(error(errc::invalid_request, "set: " + t.error().message()));
    if (*t < before) return error_response(error(errc::invalid_request, "set: the test clock never moves backwards"));
    clock.set(*t);
  } else if (const auto* advance = o->if_contains("advance_seconds")) {
    const auto* n = advance->if_int64();
    if (!n || *n < 0 || *n > 10LL * 366 * 86400)
      return error_response(error(errc::invalid_request, "advance_seconds: expected an integer from 0 to 10 years"));
    clock.advance(std::chrono::seconds(*n));
  } else {
    return error_response(error(errc::invalid_request, "Expected {\"set\": \"<RFC 3339>\"} or {\"advance_seconds\": N}."));
  }
  const timestamp now = clock.now();
  auto report = engine_.load()->tick(now);
  metrics_.record_tick(report ? report->transitions : 0, report.has_value());
  if (!report) return error_response(report.error());
  log_event("info", "test_clock", {{"now", format_rfc3339(now)}, {"transitions", std::to_string(report->transitions)}});
  if (options_.on_clock_moved) options_.on_clock_moved();
  return json_response(200, "{\"now\":\"" + format_rfc3339(now) + "\",\"transitions\":" + std::to_string(report->transitions) + "}");
}

}  // namespace opendsr::app
