// What the distribution black-box tests share (tests/api/distribution_test.cpp,
// tests/api/distribution_crash_test.cpp): outputs managed over opendsrd's API (/v3/outputs, the
// workspace's Basic credentials), distribution_status entries read from a status document, and
// what a fake partner (tests/support/fake_partner.hpp) received, parsed back: Kochava's device ids,
// Blueshift's customer_id and email.
// The daemon is tests/support/fulfilment_daemon.hpp's: opendsrd in --test-mode, delivering to
// loopback only, its clock moved by the test.
#pragma once

#include "daemon_process.hpp"

#include "../support/fake_partner.hpp"
#include "../support/fulfilment_daemon.hpp"
#include "../support/request_bodies.hpp"
#include "common/base64.hpp"
#include "common/json_text.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace opendsr::testing {

namespace json = boost::json;

// The key of the processor's own extension in request and status bodies.
inline constexpr std::string_view extension_domain = "opendsr.mparticle.com";

// The body parsed, or null (and a test failure naming the body) if it is not JSON.
inline json::value parse_json(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    ADD_FAILURE() << "not JSON (" << ec.message() << "): " << body.substr(0, 400);
    return nullptr;
  }
  return v;
}

// One distribution_status entry as a status document shows it.
struct entry_view {
  std::string domain, name, status;
  std::optional<std::string> message;  // status_message; nullopt when null
};

inline std::string describe(const std::vector<entry_view>& entries) {
  std::string out = "[";
  for (const auto& e : entries)
    out += " {" + e.domain + " " + e.name + " " + e.status + (e.message ? " \"" + *e.message + "\"" : " null") + "}";
  return out + " ]";
}

// The distribution_status entries of a status object (GET /v3/requests/{id}, a group member, a
// callback body); nullopt when its "extensions" is null. A missing key or a wrong shape is a test
// failure (and an empty list).
inline std::optional<std::vector<entry_view>> distribution_of(const json::value& status) {
  const json::object* doc = status.if_object();
  if (!doc || !doc->contains("extensions")) {
    ADD_FAILURE() << "no \"extensions\" key in " << json::serialize(status);
    return std::vector<entry_view>{};
  }
  const json::value& ext = doc->at("extensions");
  if (ext.is_null()) return std::nullopt;
  std::vector<entry_view> out;
  const json::object* by_domain = ext.if_object();
  const json::value* ours = by_domain ? by_domain->if_contains(extension_domain) : nullptr;
  const json::object* ours_object = ours ? ours->if_object() : nullptr;
  const json::value* list = ours_object ? ours_object->if_contains("distribution_status") : nullptr;
  if (!list || !list->is_array()) {
    ADD_FAILURE() << "no extensions[\"" << extension_domain << "\"].distribution_status[] in " << json::serialize(status);
    return out;
  }
  for (const auto& item : list->as_array()) {
    const json::object* o = item.if_object();
    if (!o) {
      ADD_FAILURE() << "an entry is not an object: " << json::serialize(item);
      continue;
    }
    entry_view e;
    for (auto [key, field] : {std::pair{"domain", &e.domain}, std::pair{"name", &e.name}, std::pair{"status", &e.status}}) {
      const json::value* v = o->if_contains(key);
      if (v && v->is_string()) *field = std::string(v->as_string());
      else ADD_FAILURE() << "entry without a string \"" << key << "\": " << json::serialize(item);
    }
    const json::value* m = o->if_contains("status_message");
    if (!m) ADD_FAILURE() << "entry without \"status_message\": " << json::serialize(item);
    else if (m->is_string()) e.message = std::string(m->as_string());
    else if (!m->is_null()) ADD_FAILURE() << "status_message neither a string nor null: " << json::serialize(item);
    if (o->size() != 4) ADD_FAILURE() << "an entry has keys besides domain, name, status, status_message: " << json::serialize(item);
    out.push_back(std::move(e));
  }
  return out;
}

// The entry of output `name`, or nullopt.
inline std::optional<entry_view> entry_named(const std::vector<entry_view>& entries, std::string_view name) {
  for (const auto& e : entries)
    if (e.name == name) return e;
  return std::nullopt;
}

// An output to create: POST /v3/outputs.
struct output_spec {
  std::string name;
  std::string partner;  // "kochava" | "blueshift"
  std::string endpoint;
  std::vector<std::pair<std::string, std::string>> settings = {};
  std::vector<std::pair<std::string, std::string>> credentials = {};
  bool active = true;
};

inline std::string object_of(const std::vector<std::pair<std::string, std::string>>& fields) {
  json::object o;
  for (const auto& [k, v] : fields) o[k] = v;
  return json::serialize(o);
}

inline std::string output_json(const output_spec& s) {
  json::object o;
  o["name"] = s.name;
  o["partner"] = s.partner;
  o["active"] = s.active;
  o["endpoint"] = s.endpoint;
  o["settings"] = parse_json(object_of(s.settings));
  o["credentials"] = parse_json(object_of(s.credentials));
  return json::serialize(o);
}

// A Kochava output at `endpoint` (account 1234, app 5678 unless settings say otherwise).
inline output_spec kochava_output(std::string name, std::string endpoint,
                                  std::vector<std::pair<std::string, std::string>> extra_settings = {},
                                  std::string api_key = "kochava-key-6f1e2d3c4b5a") {
  output_spec s{.name = std::move(name), .partner = "kochava", .endpoint = std::move(endpoint),
                .settings = {{"account_id", "1234"}, {"app_id", "5678"}}, .credentials = {{"api_key", std::move(api_key)}}};
  for (auto& kv : extra_settings) s.settings.push_back(std::move(kv));
  return s;
}

// A Blueshift output at `endpoint` (region us, mode delete).
inline output_spec blueshift_output(std::string name, std::string endpoint, std::string user_api_key = "blueshift-user-9a8b7c6d5e4f") {
  return {.name = std::move(name), .partner = "blueshift", .endpoint = std::move(endpoint),
          .settings = {{"region", "us"}, {"mode", "delete"}}, .credentials = {{"user_api_key", std::move(user_api_key)}}};
}

// The outputs routes of a running opendsrd, as workspace `w`.
class outputs_client {
 public:
  outputs_client(std::uint16_t port, workspace w) : api_(port), w_(std::move(w)) {}

  wire::response add(const output_spec& s) const { return call("POST", "/v3/outputs", output_json(s)); }
  wire::response update(const std::string& name, const std::string& change_json) const {
    return call("PATCH", "/v3/outputs/" + name, change_json);
  }
  wire::response remove(const std::string& name) const { return call("DELETE", "/v3/outputs/" + name, {}); }
  wire::response list_raw() const { return call("GET", "/v3/outputs", {}); }

  // GET /v3/outputs: the outputs (a JSON array, or an object holding one under "outputs").
  std::vector<json::object> list() const {
    auto r = list_raw();
    EXPECT_EQ(r.status, 200) << r.body;
    json::value v = parse_json(r.body);
    const json::array* a = v.if_array();
    if (!a && v.is_object() && v.as_object().contains("outputs")) a = v.as_object().at("outputs").if_array();
    std::vector<json::object> out;
    if (!a) {
      ADD_FAILURE() << "GET /v3/outputs: no list of outputs in " << r.body;
      return out;
    }
    for (const auto& o : *a)
      if (o.is_object()) out.push_back(o.as_object());
    return out;
  }
  // The output named `name` as listed (an empty object, and a test failure, if it is not listed).
  json::object named(const std::string& name) const {
    for (auto& o : list())
      if (auto* n = o.if_contains("name"); n && n->is_string() && n->as_string() == name) return o;
    ADD_FAILURE() << "output " << name << " is not listed: " << list_raw().body;
    return {};
  }
  bool circuit_open(const std::string& name) const {
    auto o = named(name);
    auto* c = o.if_contains("circuit_open");
    EXPECT_TRUE(c && c->is_bool()) << json::serialize(o);
    return c && c->is_bool() && c->as_bool();
  }

 private:
  wire::response call(std::string_view method, const std::string& target, const std::string& body) const {
    std::vector<std::string> headers = {w_.authorization()};
    if (!body.empty()) headers.push_back("Content-Type: application/json");
    return api_.exchange(wire::format_request(method, target, headers, body));
  }

  daemon_client api_;
  workspace w_;
};

// The request bodies of a test: ids distinct per (tag, n).
inline std::string request_id(std::uint32_t tag, std::uint64_t n) { return uuid_v4(std::uint64_t{tag} << 24 | n); }

// GET /v3/requests/{id} as `w`, parsed.
inline json::value status_document(const daemon_client& api, const std::string& id, const workspace& w) {
  auto r = api.get("/v3/requests/" + id, &w);
  EXPECT_EQ(r.status, 200) << r.body;
  return r.status == 200 ? parse_json(r.body) : json::value(nullptr);
}

// The request's distribution entries (nullopt: extensions null).
inline std::optional<std::vector<entry_view>> entries_of(const daemon_client& api, const std::string& id, const workspace& w) {
  json::value doc = status_document(api, id, w);
  if (doc.is_null()) return std::vector<entry_view>{};
  return distribution_of(doc);
}

// The status of output `name`'s entry for request `id` ("" if there is none).
inline std::string entry_status(const daemon_client& api, const std::string& id, const workspace& w, std::string_view name) {
  auto entries = entries_of(api, id, w);
  if (!entries) return "";
  auto e = entry_named(*entries, name);
  return e ? e->status : "";
}

// POSTs every body as `w` from `threads` threads at once (new requests: the daemon's group commit
// takes them together); returns the status of each.
inline std::vector<int> post_all(std::uint16_t port, const workspace& w, const std::vector<std::string>& bodies,
                                 unsigned threads = 16) {
  std::vector<int> statuses(bodies.size(), 0);
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      daemon_client api(port);
      for (std::size_t i = next++; i < bodies.size(); i = next++) {
        try {
          statuses[i] = api.post(bodies[i], w).status;
        } catch (const std::exception&) {
          statuses[i] = -1;
        }
      }
    });
  for (auto& t : pool) t.join();
  return statuses;
}

// A Kochava scrub body's device_ids as (id_type, id_value), in order; a failure if the body is not
// {"device_ids": [{"id_type", "id_value"}, ...]} (an optional "email" beside it is allowed).
inline std::vector<std::pair<std::string, std::string>> device_ids(const std::string& body) {
  std::vector<std::pair<std::string, std::string>> out;
  json::value v = parse_json(body);
  const json::object* o = v.if_object();
  const json::value* ids = o ? o->if_contains("device_ids") : nullptr;
  if (!ids || !ids->is_array()) {
    ADD_FAILURE() << "no device_ids array in " << body.substr(0, 400);
    return out;
  }
  for (const auto& d : ids->as_array()) {
    const json::object* item = d.if_object();
    const json::value* type = item ? item->if_contains("id_type") : nullptr;
    const json::value* value = item ? item->if_contains("id_value") : nullptr;
    if (!type || !value || !type->is_string() || !value->is_string() || item->size() != 2) {
      ADD_FAILURE() << "a device id is not {id_type, id_value}: " << json::serialize(d);
      continue;
    }
    out.emplace_back(std::string(type->as_string()), std::string(value->as_string()));
  }
  return out;
}

// A Blueshift delete body: its "customer_id" and "email" ("" when absent).
struct blueshift_delete {
  std::string customer_id, email;
  std::size_t keys = 0;
};
inline blueshift_delete blueshift_body(const std::string& body) {
  blueshift_delete out;
  json::value v = parse_json(body);
  const json::object* o = v.if_object();
  if (!o) {
    ADD_FAILURE() << "not a JSON object: " << body;
    return out;
  }
  out.keys = o->size();
  if (auto* c = o->if_contains("customer_id"); c && c->is_string()) out.customer_id = std::string(c->as_string());
  if (auto* e = o->if_contains("email"); e && e->is_string()) out.email = std::string(e->as_string());
  return out;
}

// A sample of opendsrd's /metrics: the line "name value" (no labels); -1 if absent.
inline double metric(const daemon_client& api, std::string_view name) {
  auto m = api.get("/metrics", nullptr);
  const std::string marker = "\n" + std::string(name) + " ";
  auto at = m.body.find(marker);
  return at == std::string::npos ? -1 : std::stod(m.body.substr(at + marker.size()));
}

// Partner attempts whose outcome opendsrd recorded: each recorded attempt counts once, as sent,
// retried, split, failed, or stale (its lease lost).
inline double recorded_forward_outcomes(const daemon_client& api) {
  double sum = 0;
  for (const char* name : {"opendsr_forward_batches_sent_total", "opendsr_forward_retries_total", "opendsr_forward_splits_total",
                           "opendsr_forward_batches_failed_total", "opendsr_forward_stale_outcomes_total"}) {
    const double v = metric(api, name);
    if (v < 0) ADD_FAILURE() << name << " is not in /metrics";
    sum += std::max(v, 0.0);
  }
  return sum;
}

inline std::string header_of(const received_request& r, std::string_view name) {
  return std::string(r.headers.get(name).value_or(""));
}

// "Basic " + base64(user_api_key + ":"): Blueshift's authorization (partners.md §4.1).
inline std::string blueshift_authorization(std::string_view user_api_key) {
  return "Basic " + detail::base64_encode(std::string(user_api_key) + ":");
}

}  // namespace opendsr::testing
