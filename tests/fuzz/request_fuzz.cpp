// libFuzzer target for parse_request. Beyond "no crash, no sanitizer report", each input checks:
// - an accepted body holds 1..25 identities, strictly sorted by type, an mpid alone, and every
//   field within its rule; Boost.JSON's own parser accepts the same bytes as an object;
// - an accepted request, written back as a body, parses to the same request (nothing is lost
//   or invented);
// - a rejection is invalid_json or invalid_request with a non-empty printable ASCII message and
//   renders a valid error body; the same body with its identity values and identity type keys
//   marked yields a message without the mark (messages never echo identity text).
#include <opendsr/error_body.hpp>
#include <opendsr/request.hpp>

#include "common/json_text.hpp"
#include "request/field_rules.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace opendsr {
namespace {

namespace json = boost::json;

const std::string domain = parse_options{}.processor_domain;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

void check_accepted(std::string_view body, const request& r) {
  const std::vector<identity>& ids = r.identities;
  require(!ids.empty() && ids.size() <= identity_type_count, "1..25 identities");
  require(std::adjacent_find(ids.begin(), ids.end(),
                             [](const identity& a, const identity& b) { return a.type >= b.type; }) == ids.end(),
          "identities strictly sorted by type");
  for (const identity& id : ids) {
    require(!id.value.empty(), "identity value non-empty");
    if (id.type == identity_type::mpid) {
      require(ids.size() == 1, "mpid alone");
      require(detail::is_canonical_int64(id.value), "mpid is an int64");
    }
  }
  require(detail::is_lowercase_uuid_v4(r.subject_request_id), "subject_request_id is a UUID v4");
  require(r.status_callback_urls.size() <= 10, "at most 10 URLs");
  for (std::size_t i = 0; i < r.status_callback_urls.size(); ++i) {
    const std::string& url = r.status_callback_urls[i];
    require(url.size() <= 2048 && detail::is_http_url(url), "URL rule");
    require(std::count(r.status_callback_urls.begin(), r.status_callback_urls.end(), url) == 1, "URLs distinct");
  }
  if (r.group_id) {
    const std::size_t n = detail::count_code_points(*r.group_id);
    require(n >= 1 && n <= 256, "group_id 1..256 code points");
  }
  require(detail::is_valid_utf8(body), "accepted body is UTF-8");
  json::error_code ec;
  const json::value dom = json::parse(json::string_view(body.data(), body.size()), ec);
  require(!ec && dom.is_object(), "Boost.JSON agrees the body is a JSON object");
  const std::string key = canonical_key(r);
  require(!key.empty() && key[0] == static_cast<char>(r.type) && key == canonical_key(r), "canonical key");
}

// The request written back as a v3 body.
std::string write_back(const request& r) {
  json::object top, extension;
  for (const identity& id : r.identities)
    (is_extension_only(id.type) ? extension : top)[opendsr_name(id.type)] =
        json::object{{"value", id.value}, {"encoding", "raw"}};
  json::object body{{"regulation", to_string(r.regulation)},
                    {"subject_request_id", r.subject_request_id},
                    {"subject_request_type", to_string(r.type)},
                    {"submitted_time", format_rfc3339(r.submitted_time)},
                    {"subject_identities", std::move(top)},
                    {"extensions", json::object{{domain, json::object{{"skip_waiting_period", r.skip_waiting_period},
                                                                      {"subject_identities", std::move(extension)}}}}}};
  json::array urls;
  for (const std::string& url : r.status_callback_urls) urls.emplace_back(url);
  body["status_callback_urls"] = std::move(urls);
  if (r.group_id) body["group_id"] = *r.group_id;
  return json::serialize(body);
}

void check_round_trip(const request& r) {
  const result<request> again = parse_request(write_back(r));
  require(again.has_value(), "written-back request parses");
  require(again->regulation == r.regulation && again->subject_request_id == r.subject_request_id &&
              again->type == r.type && again->submitted_time == r.submitted_time &&
              again->identities == r.identities && again->skip_waiting_period == r.skip_waiting_period &&
              again->status_callback_urls == r.status_callback_urls && again->group_id == r.group_id,
          "written-back request parses to the same request");
}

void check_message(const error& e) {
  require(e.code() == errc::invalid_json || e.code() == errc::invalid_request, "parser errors are 400s");
  const std::string m = e.message();
  require(!m.empty() && m != make_error_code(e.code()).message(), "specific message");
  require(std::all_of(m.begin(), m.end(), [](char c) { return c >= 0x20 && c < 0x7f; }), "printable ASCII message");
  json::error_code ec;
  json::parse(error_body(e), ec);
  require(!ec, "error body is JSON");
}

// Marks identity text with \x01: each string value inside an identity object, and each key of a
// subject_identities object that is not an identity type name.
void mark_identities(json::object& identities) {
  json::object marked;
  for (auto& [key, entry] : identities) {
    if (entry.is_object())
      for (auto& [field, value] : entry.as_object())
        if (value.is_string()) value = "\x01" + std::string(value.as_string());
    const bool known = identity_type_from_opendsr_name(std::string_view(key.data(), key.size())).has_value();
    marked[known ? std::string(key) : "\x01" + std::string(key)] = std::move(entry);
  }
  identities = std::move(marked);
}

void check_marked_rejection(std::string_view body) {
  json::error_code ec;
  json::value dom = json::parse(json::string_view(body.data(), body.size()), ec);
  if (ec || !dom.is_object()) return;
  json::object& top = dom.as_object();
  if (auto* ids = top.if_contains("subject_identities"); ids && ids->is_object()) mark_identities(ids->as_object());
  if (auto* extensions = top.if_contains("extensions"); extensions && extensions->is_object())
    if (auto* own = extensions->as_object().if_contains(domain); own && own->is_object())
      if (auto* ids = own->as_object().if_contains("subject_identities"); ids && ids->is_object())
        mark_identities(ids->as_object());
  const result<request> r = parse_request(json::serialize(dom));
  if (!r) require(r.error().message().find('\x01') == std::string::npos, "message echoes no identity text");
}

}  // namespace
}  // namespace opendsr

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace opendsr;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const result<request> r = parse_request(body);
  if (r) {
    check_accepted(body, *r);
    check_round_trip(*r);
  } else {
    check_message(r.error());
  }
  check_marked_rejection(body);
  return 0;
}
