// Status callbacks as outbound work: the retry policy, and the values the engine's delivery
// methods exchange with a dispatcher (engine::claim_callbacks / record_callbacks; the
// callback_dispatcher in <opendsr/callback_dispatcher.hpp> drives them over an http_client).
//
// The life of one callback (one status of one request, to one of its URLs):
//   queued   written in the transaction of the status change, due at the next callback flush.
//            Per (request, URL) the callbacks form a chain in status order: only the earliest
//            queued one is due; a later one waits until the earlier is delivered or dead.
//   claimed  a dispatcher leased it (owner, expiry) in a write transaction; no other dispatcher
//            sees it until the lease expires (a crashed sender's work is sent again then).
//   sent     the I/O happens outside any transaction, then the outcome is recorded:
//            delivered (any 2xx)  -> removed, and the next of its chain falls due;
//            failed               -> attempts + 1, the next attempt after an exponential backoff
//                                    with full jitter, the last error kept;
//            failed for the last time (max_attempts, or max_age since it first fell due)
//                                 -> dead: kept and listed, the next of its chain falls due;
//                                    engine::redrive_callbacks queues it again.
// The body and its signature never change: a retry resends identical bytes.
#pragma once

#include <opendsr/time.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace opendsr {

struct callback_delivery_policy {
  // Attempts before a callback is dead-lettered. REQUIRES: 1 to 1000. Default: 20.
  unsigned max_attempts = 20;
  // A callback still failing this long after it first fell due is dead-lettered at its next
  // failure. REQUIRES: > 0. Default: 72 hours.
  std::chrono::microseconds max_age = std::chrono::hours(72);
  // The backoff before attempt n+1 is uniform in [min_retry_delay, min(max_retry_delay,
  // first_retry_delay * 2^(n-1))] ("full jitter", floored so that a failing receiver is never
  // called in a loop). REQUIRES: 0 < min_retry_delay <= first_retry_delay <= max_retry_delay.
  // Defaults: 1 second, 1 minute, 6 hours.
  std::chrono::microseconds min_retry_delay = std::chrono::seconds(1);
  std::chrono::microseconds first_retry_delay = std::chrono::minutes(1);
  std::chrono::microseconds max_retry_delay = std::chrono::hours(6);
  // How long a claim holds a callback. It must outlast the send (the http client's total
  // timeout, plus signing): a callback whose lease expires may be sent again by another
  // dispatcher. REQUIRES: > 0. Default: 60 seconds.
  std::chrono::microseconds lease = std::chrono::seconds(60);
};

// A callback a dispatcher claimed: what to send, and the claim to hand back with its outcome.
struct claimed_callback {
  std::string workspace;
  std::string subject_request_id;
  std::string url;        // the status_callback_url
  std::string body;       // the exact bytes to send and sign
  std::string signature;  // base64 signature of body from an earlier attempt; empty if never signed
  unsigned attempt = 1;   // 1 for the first attempt
  // Opaque: the entry and this claim's lease. Pass them back unchanged in callback_outcome.
  std::string entry_key;
  std::string lease;
};

// The outcome of one claimed callback.
struct callback_outcome {
  std::string entry_key;  // from claimed_callback
  std::string lease;      // from claimed_callback
  bool delivered = false; // true iff the receiver answered 2xx
  // The signature sent (kept for the retries). Empty if signing failed.
  std::string signature;
  // Why it failed ("HTTP 500", "timed out", ...): never a body or identity. Empty if delivered.
  std::string error;
};

// What engine::record_callbacks did.
struct callback_record_report {
  std::size_t delivered = 0;
  std::size_t retried = 0;       // failed, another attempt scheduled
  std::size_t dead_lettered = 0; // failed for the last time
  std::size_t stale = 0;         // the lease was lost (expired and claimed again): nothing recorded
};

// A dead-lettered callback, as listed for operators (no identity values).
struct dead_callback {
  std::string workspace;
  std::string subject_request_id;
  std::string request_status;  // the status it announces
  std::string url;
  unsigned attempts = 0;
  std::string last_error;
  timestamp first_due;
  timestamp last_attempt;
};

// The queue as a whole, for metrics.
struct callback_queue_stats {
  std::size_t queued = 0;  // not yet delivered nor dead (waiting behind an earlier one included)
  std::size_t dead = 0;
  // The earliest due time among callbacks that are due or claimed; nullopt if none.
  std::optional<timestamp> oldest_due;
};

}  // namespace opendsr
