// The partner seam: a pure description of a downstream partner's erasure API (issue 10;
// spec/partners.md §3, §4, §7). A partner knows which identity types it takes, how it batches,
// how to build the HTTP request for a batch and how to read the answer. It does no I/O: the
// forward dispatcher (<opendsr/forward_dispatcher.hpp>) sends what build() returns through an
// http_client and records what classify() says through the engine, so every partner is
// unit-testable without a socket, and a new partner is one small class.
//
// A partner_kind ("kochava", "blueshift") makes a configured partner from an output's settings
// and credentials (<opendsr/distribution.hpp>): configure() validates them (errc::invalid_argument
// naming the setting and the rule, never a credential's value).
//
// Contract
// - Every method is const and may be called from any thread concurrently.
// - No message (an error's, a verdict's) contains a credential or an identity value.
// - build() receives only identities of accepted types, at least one per subject, and at most
//   batching().max_items identities in all (fewer after the partner answered too_large).
#pragma once

#include <opendsr/http_client.hpp>
#include <opendsr/identity.hpp>
#include <opendsr/result.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr {

// When queued forwards go out: a batch is sent when max_items identities are queued, or max_age
// after the oldest was queued, whichever comes first. {1, 0}: each request at once.
struct partner_batching {
  std::size_t max_items = 1;  // REQUIRES: >= 1
  std::chrono::microseconds max_age{0};
};

// One erasure request's identities for one partner (only the types it accepts).
struct forward_subject {
  std::vector<identity> identities;
};

// What a partner's answer means for the batch.
enum class forward_verdict_kind {
  sent,             // acknowledged: every request of the batch is `sent`
  retry,            // try again later (after retry_after when set)
  too_large,        // split the batch and send the halves (a single request: failed)
  bad_credentials,  // every request of the batch `failed`; the output stops until reconfigured
  failed,           // failed for good: `failed`, kept as a dead letter for operators
};

struct forward_verdict {
  forward_verdict_kind kind = forward_verdict_kind::failed;
  // The partner's Retry-After, for kind == retry.
  std::optional<std::chrono::microseconds> retry_after;
  // The status_message of the requests (sent: usually empty; failed: why), or the error kept
  // for a retry. Never a credential or identity value.
  std::string message;
  // The partner's reference of the job, if it returned one (Kochava's job_id), for operators.
  std::string reference;
};

class partner {
 public:
  virtual ~partner() = default;
  partner() = default;
  partner(const partner&) = delete;
  partner& operator=(const partner&) = delete;

  // The partner's domain as distribution_status names it ("kochava.com").
  virtual std::string_view domain() const noexcept = 0;
  virtual bool accepts(identity_type t) const noexcept = 0;
  virtual partner_batching batching() const noexcept = 0;
  // The request that forwards `batch` (one or more subjects).
  virtual result<http_client_request> build(std::span<const forward_subject> batch) const = 0;
  // What `response` to attempt `attempt` (1 for the first) of a batch means.
  virtual forward_verdict classify(const http_client_response& response, unsigned attempt) const = 0;
};

// An output's partner configuration, as stored (<opendsr/distribution.hpp>).
struct partner_settings {
  std::map<std::string, std::string> settings;     // e.g. account_id, region, mode
  std::map<std::string, std::string> credentials;  // secret: api_key, user_api_key
  // Replaces the partner's base URL (scheme://host[:port], no path): a regional endpoint, or a
  // loopback fake in tests. nullopt: the partner's own.
  std::optional<std::string> endpoint;
};

class partner_kind {
 public:
  virtual ~partner_kind() = default;
  partner_kind() = default;
  partner_kind(const partner_kind&) = delete;
  partner_kind& operator=(const partner_kind&) = delete;

  // The name outputs use ("kochava").
  virtual std::string_view name() const noexcept = 0;
  // The settings and credentials this kind takes, with what each means, for --help and docs:
  // one "name: meaning" line each.
  virtual std::string_view describe() const noexcept = 0;
  // A partner configured by `s`; errc::invalid_argument naming the setting if s is not valid.
  virtual result<std::unique_ptr<partner>> configure(const partner_settings& s) const = 0;
};

}  // namespace opendsr
