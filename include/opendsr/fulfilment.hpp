// The fulfilment seam: what finishes a request in progress (for access and portability, export
// the subject's data; for erasure, erase it). The default, scheduled_completion, completes every
// request at its expected_completion_time without results; the fulfilment module replaces it.
//
// Contract
// - When an in_progress request's expected_completion_time has come, engine::tick (or a cancel
//   that catches up with due work) calls poll() inside its write transaction, and applies the
//   outcome in the same transaction: fulfilment_done completes the request; fulfilment_pending
//   moves its expected_completion_time to ask_again_at and polls again then.
// - poll() runs while the engine holds the storage's write transaction: it must be quick and
//   must not call the engine. Long work (an export) runs elsewhere; poll() only reports on it.
// - The same job may be polled more than once (a storage conflict re-runs the transaction; a
//   crash loses an uncommitted one): poll() must be idempotent.
//
// Thread safety: poll() may be called from every thread that calls engine::tick or
// engine::cancel, concurrently.
// Ownership: the embedder owns the fulfilment and keeps it alive as long as the engine.
#pragma once

#include <opendsr/request.hpp>
#include <opendsr/time.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace opendsr {

// What the engine knows about a request to fulfil. The views are valid during poll() only.
struct fulfilment_job {
  std::string_view controller_id;  // the workspace
  std::string_view subject_request_id;
  request_type type;
  std::string_view body;  // the exact POST body: parse_request(body) yields the identities
  timestamp received_time;
  timestamp expected_completion_time;  // the time this poll was scheduled for
};

// The request is fulfilled.
struct fulfilment_done {
  // Access and portability: where the controller downloads the results. nullopt: no link.
  // REQUIRES: valid UTF-8.
  std::optional<std::string> results_url;
};

// The request is not fulfilled yet: poll again at ask_again_at, which becomes the request's new
// expected_completion_time. A time not after `now` means the next tick.
struct fulfilment_pending {
  timestamp ask_again_at;
};

using fulfilment_outcome = std::variant<fulfilment_done, fulfilment_pending>;

class fulfilment {
 public:
  virtual ~fulfilment() = default;
  fulfilment() = default;
  fulfilment(const fulfilment&) = delete;
  fulfilment& operator=(const fulfilment&) = delete;

  virtual fulfilment_outcome poll(const fulfilment_job& job, timestamp now) = 0;
};

// Completes every request at its scheduled time, without results: the engine's default until a
// real fulfilment is configured.
class scheduled_completion final : public fulfilment {
 public:
  fulfilment_outcome poll(const fulfilment_job&, timestamp) override { return fulfilment_done{}; }
};

}  // namespace opendsr
