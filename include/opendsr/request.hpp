// The OpenDSR v3 request: the parsed model of a POST /v3/requests body, and its validator.
#pragma once

#include <opendsr/identity.hpp>
#include <opendsr/outbound_policy.hpp>
#include <opendsr/result.hpp>
#include <opendsr/time.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr {

enum class regulation { gdpr, ccpa };
enum class request_type { access, portability, erasure };

// Wire names: "gdpr"/"ccpa" and "access"/"portability"/"erasure".
std::string_view to_string(regulation r) noexcept;
std::string_view to_string(request_type t) noexcept;

// A validated v3 request. Every field of the body that the processor interprets.
struct request {
  opendsr::regulation regulation = opendsr::regulation::gdpr;
  std::string subject_request_id;  // lowercase UUID v4, as sent
  opendsr::request_type type = opendsr::request_type::access;
  timestamp submitted_time;
  // Top-level and extension identities together, sorted by type (the canonical order); the
  // location of each is implied by is_extension_only(type). At least one; an mpid is alone.
  std::vector<identity> identities;
  bool skip_waiting_period = false;                // extensions[<domain>].skip_waiting_period
  std::vector<std::string> status_callback_urls;   // absolute http(s) URLs, distinct, in order
  std::optional<std::string> group_id;             // 1-256 characters when present
};

// The in-flight conflict key: subject_request_type plus the canonical identity set, independent
// of the order the client wrote them in. Two requests conflict (HTTP 409) iff their keys are
// equal. The key is binary and unbounded in length (identity values are); hash it before using
// it as a storage key.
std::string canonical_key(const request& r);

struct parse_options {
  // The processor's own domain: the only key of `extensions` that is interpreted; the others
  // are ignored. Default: "opendsr.mparticle.com", so existing v3 clients work unchanged.
  std::string processor_domain = "opendsr.mparticle.com";
  // Maximum JSON nesting depth of the body. Default: 32.
  std::size_t max_depth = 32;
  // Where status_callback_urls may point: a URL the policy refuses as written (its scheme, or a
  // host that is a refused IP literal or a localhost name) is invalid_request naming the field.
  // The callback dispatcher checks the resolved addresses again at delivery. Default: https to
  // public addresses only.
  outbound_policy callback_destinations;
};

// Parses and validates a POST /v3/requests body against every rule of the OpenDSR v3 contract
// (docs/protocol.md lists them). Returns errc::invalid_json or errc::invalid_request with a
// message naming the field and the rule; the message never contains an identity value.
result<request> parse_request(std::string_view body, const parse_options& options = {});

}  // namespace opendsr
