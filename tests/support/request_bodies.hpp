// Builds OpenDSR v3 request bodies for tests and benchmarks.
#pragma once

#include "common/json_text.hpp"

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace opendsr::testing {

// A lowercase UUID v4 made from n: distinct n give distinct ids.
inline std::string uuid_v4(std::uint64_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-8%03x-%012llx", static_cast<unsigned>(n >> 32 & 0xffffffff),
                static_cast<unsigned>(n >> 16 & 0xffff), static_cast<unsigned>(n >> 4 & 0xfff),
                static_cast<unsigned>(n & 0xf), static_cast<unsigned long long>(n & 0xffffffffffffULL));
  return buf;
}

struct body_spec {
  // Every member has an initializer, so designated initializers may leave any out.
  std::string id = {};
  std::string type = "erasure";
  // (OpenDSR identity type, value), written in this order.
  std::vector<std::pair<std::string, std::string>> identities = {{"email", "subject@example.com"}};
  std::vector<std::pair<std::string, std::string>> extension_identities = {};
  std::optional<bool> skip_waiting_period = {};
  std::vector<std::string> callback_urls = {};
  std::optional<std::string> group_id = {};
};

inline std::string make_body(const body_spec& s) {
  using detail::append_json_string;
  auto identities = [](std::string& out, const std::vector<std::pair<std::string, std::string>>& list) {
    out += '{';
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (i > 0) out += ',';
      append_json_string(out, list[i].first);
      out += ":{\"value\":";
      append_json_string(out, list[i].second);
      out += ",\"encoding\":\"raw\"}";
    }
    out += '}';
  };
  std::string out = "{\"regulation\":\"gdpr\",\"subject_request_id\":";
  append_json_string(out, s.id);
  out += ",\"subject_request_type\":";
  append_json_string(out, s.type);
  out += ",\"submitted_time\":\"2021-11-01T15:00:00Z\",\"subject_identities\":";
  identities(out, s.identities);
  out += ",\"api_version\":\"3.0\"";
  if (!s.callback_urls.empty()) {
    out += ",\"status_callback_urls\":[";
    for (std::size_t i = 0; i < s.callback_urls.size(); ++i) {
      if (i > 0) out += ',';
      append_json_string(out, s.callback_urls[i]);
    }
    out += ']';
  }
  if (s.group_id) {
    out += ",\"group_id\":";
    append_json_string(out, *s.group_id);
  }
  if (s.skip_waiting_period || !s.extension_identities.empty()) {
    out += ",\"extensions\":{\"opendsr.mparticle.com\":{";
    if (s.skip_waiting_period) out += *s.skip_waiting_period ? "\"skip_waiting_period\":true" : "\"skip_waiting_period\":false";
    if (!s.extension_identities.empty()) {
      if (s.skip_waiting_period) out += ',';
      out += "\"subject_identities\":";
      identities(out, s.extension_identities);
    }
    out += "}}";
  }
  out += '}';
  return out;
}

// The request body of the seed's example (mParticle DSR API v3, "Submit a Data Subject Request").
inline const std::string seed_body = R"({
  "regulation": "gdpr",
  "subject_request_id": "a7551968-d5d6-44b2-9831-815ac9017798",
  "subject_request_type": "erasure",
  "submitted_time": "2021-11-01T15:00:00Z",
  "subject_identities": {
    "email": {
      "value": "johndoe@example.com",
      "encoding": "raw"
    },
    "ios_advertising_id": {
      "value": "EA7583CD-A667-48BC-B806-42ECB2B48606",
      "encoding": "raw"
    }
  },
  "api_version": "3.0",
  "status_callback_urls": [
    "https://exampleurl.com/opendsr/callbacks"
  ],
  "group_id": "my-group",
  "extensions": {
    "opendsr.mparticle.com": {
      "skip_waiting_period": false,
      "subject_identities": {
        "other6": {
          "value": "EA7583CD-A667-48BC-B806-42ECB2B48606",
          "encoding": "raw"
        }
      }
    }
  }
})";

}  // namespace opendsr::testing
