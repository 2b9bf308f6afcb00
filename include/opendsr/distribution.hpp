// Distribution: forwarding erasure requests to partners (seed 004; spec/partners.md §1, §7).
// The outputs a workspace forwards to, the forwarding policy, and the values the engine's
// forwarding methods exchange with a dispatcher (engine::claim_forwards / record_forwards; the
// forward_dispatcher in <opendsr/forward_dispatcher.hpp> drives them over an http_client).
//
// The life of one forward (one erasure request, to one active output of its workspace):
//   written  in the transaction that admits the request, with the request's identities enriched
//            from its profile (engine_options::distribution.enrich_from), keeping only the types
//            the output's partner accepts. None left: the request's entry is `skipped` at once,
//            with a status_message. Else the entry is `pending` and the forward joins the
//            output's queue. Access and portability requests are never forwarded.
//   batched  when the output's queue holds partner_batching::max_items identities, or its oldest
//            forward is max_age old, a dispatcher claims it: the queued forwards become a batch
//            (membership stored), leased (owner, expiry) in one write transaction.
//   sent     the batch's request goes out outside any transaction; its outcome is recorded:
//            sent (the partner's 2xx)  -> every request of the batch `sent`, the batch removed;
//            retry (5xx, 429, timeout) -> attempts + 1, next attempt after Retry-After, or an
//                                         exponential backoff with full jitter;
//            too_large (413)           -> the batch split in two halves, sent again; the output
//                                         remembers the smaller size;
//            bad_credentials (401/403) -> the batch's requests `failed`, the batch dead, and the
//                                         output's circuit open: nothing more is sent to it
//                                         until its configuration changes;
//            failed, or retries spent  -> the batch's requests `failed`, the batch dead.
//   Each change of a request's entry queues a status callback carrying the same `extensions`.
//   A dead batch is listed (dead_forwards) and re-driven (redrive_forwards): its requests go
//   back to `pending`. Cancelling a request recalls nothing: its forwards still go out.
// A crash at any point loses nothing: a batch whose 2xx was not recorded is sent again when its
// lease expires (or its owner restarts), and only such a batch.
#pragma once

#include <opendsr/partner.hpp>
#include <opendsr/time.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace opendsr {

class subject_data;

// The status of one request's forward to one output (distribution_status[].status).
enum class distribution_state : std::uint8_t { pending, skipped, sent, failed };

// Wire names: "pending", "skipped", "sent", "failed".
constexpr std::string_view to_string(distribution_state s) noexcept {
  switch (s) {
    case distribution_state::pending: return "pending";
    case distribution_state::skipped: return "skipped";
    case distribution_state::sent: return "sent";
    case distribution_state::failed: return "failed";
  }
  return "unknown";
}

// One entry of extensions["<processor domain>"].distribution_status[].
struct distribution_entry {
  std::string domain;  // the partner's domain ("kochava.com")
  std::string name;    // the output's name
  distribution_state status = distribution_state::pending;
  std::optional<std::string> status_message;

  friend bool operator==(const distribution_entry&, const distribution_entry&) = default;
};

struct distribution_policy {
  // The partner kinds outputs may name. Default: none (opendsrd passes Kochava and Blueshift).
  std::vector<std::shared_ptr<const partner_kind>> partners;
  // Where a forwarded request's identities are enriched from (spec §2: one profile, all its
  // identities; the request wins on conflict; an mpid that resolves to nothing forwards
  // nothing). nullptr: only the request's own identities are forwarded. Not owned: it must
  // outlive the engine.
  subject_data* enrich_from = nullptr;
  // Attempts of a batch before it is dead. REQUIRES: 1 to 1000. Default: 12.
  unsigned max_attempts = 12;
  // A batch still failing this long after it first fell due is dead at its next failure.
  // REQUIRES: > 0. Default: 72 hours.
  std::chrono::microseconds max_age = std::chrono::hours(72);
  // Backoff before attempt n+1 (unless the partner sent Retry-After): uniform in
  // [min_retry_delay, min(max_retry_delay, first_retry_delay * 2^(n-1))].
  // REQUIRES: 0 < min <= first <= max. Defaults: 1 second, 2 seconds, 15 minutes.
  std::chrono::microseconds min_retry_delay = std::chrono::seconds(1);
  std::chrono::microseconds first_retry_delay = std::chrono::seconds(2);
  std::chrono::microseconds max_retry_delay = std::chrono::minutes(15);
  // A Retry-After longer than this is cut to it. REQUIRES: > 0. Default: 6 hours.
  std::chrono::microseconds max_retry_after = std::chrono::hours(6);
  // How long a claim holds a batch: it must outlast the send. REQUIRES: > 0. Default: 2 minutes.
  std::chrono::microseconds lease = std::chrono::minutes(2);
};

// An output: where a workspace's erasures are forwarded.
struct output_definition {
  std::string name;     // unique in its workspace; 1 to 200 bytes of UTF-8, no control characters
  std::string partner;  // a partner_kind's name
  bool active = true;   // inactive: new erasures are not forwarded to it (queued ones still go)
  partner_settings config;
};

// A change to an output; what is nullopt stays. Any change closes an open circuit.
struct output_change {
  std::optional<bool> active = std::nullopt;
  std::optional<std::map<std::string, std::string>> settings = std::nullopt;
  std::optional<std::map<std::string, std::string>> credentials = std::nullopt;
  std::optional<std::optional<std::string>> endpoint = std::nullopt;
};

// An output as listed: credentials masked (never returned).
struct output_info {
  std::string workspace;
  std::string name;
  std::string partner;
  std::string domain;
  bool active = true;
  std::map<std::string, std::string> settings;
  // Each credential as "****" plus its last 4 characters when it is at least 12 long, else "****".
  std::map<std::string, std::string> masked_credentials;
  std::optional<std::string> endpoint;
  bool circuit_open = false;
  std::string circuit_reason;      // why it opened ("HTTP 401 ...")
  std::size_t queued = 0;          // forwards waiting for a batch
  std::size_t queued_items = 0;    // their identities
  std::size_t batches = 0;         // batches claimed or waiting for a retry
  std::size_t dead_batches = 0;
  std::size_t max_items = 0;       // the batch size in force (smaller after a 413)
  timestamp updated;
};

// A batch a dispatcher claimed: what to send, and the claim to hand back with its outcome.
struct claimed_forward {
  std::string workspace;
  std::string output;          // the output's name
  std::string partner;         // its partner_kind's name
  partner_settings config;     // credentials included: never log them
  std::uint64_t generation = 0;  // the output's configuration version (configure caches on it)
  std::vector<forward_subject> subjects;
  std::size_t requests = 0;    // how many requests the batch forwards (>= subjects after dedup)
  unsigned attempt = 1;
  // Opaque: the batch and this claim's lease. Pass them back unchanged in forward_outcome.
  std::string batch_key;
  std::string lease;
};

// The outcome of one claimed batch: the partner's verdict, or a transport error (retried).
struct forward_outcome {
  std::string batch_key;
  std::string lease;
  forward_verdict verdict;
};

struct forward_record_report {
  std::size_t sent = 0;          // batches
  std::size_t requests_sent = 0;
  std::size_t retried = 0;
  std::size_t split = 0;
  std::size_t failed = 0;        // batches dead (failed, bad credentials, retries spent)
  std::size_t stale = 0;         // the lease was lost: nothing recorded
};

// A dead batch, as listed for operators (no identity values).
struct dead_forward {
  std::string workspace;
  std::string output;
  std::string batch_id;
  std::vector<std::string> subject_request_ids;
  unsigned attempts = 0;
  std::string last_error;
  timestamp first_due;
  timestamp last_attempt;
};

// The forwarding queue as a whole, for metrics.
struct forward_queue_stats {
  std::size_t queued = 0;          // forwards not yet in a batch
  std::size_t batches = 0;         // live batches
  std::size_t dead_batches = 0;
  std::size_t circuits_open = 0;
  std::optional<timestamp> oldest_due;
};

}  // namespace opendsr
