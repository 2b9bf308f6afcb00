// The forward dispatcher: sends the engine's due partner batches through an http_client and
// records every outcome back into the engine (<opendsr/distribution.hpp> tells the life of a
// forward).
//
// Like the callback dispatcher, its own worker thread does all storage work; the client's threads
// only hand it responses. poll() asks the worker to claim what is due at clock.now() (bounded
// batches, one write transaction each, leased), configure each batch's partner from the
// engine's distribution.partners by kind name (cached per output and configuration generation),
// build the request and start the send; it returns at once. As responses arrive the worker
// classifies them with the partner (a transport error is a retry whose message says what
// failed), records the outcomes in groups (one write transaction for all that arrived
// meanwhile), refills freed slots, and on_recorded tells the host to re-arm its timer at
// engine::next_due(). An output whose stored configuration no longer configures (a partner kind
// gone from this build) fails its batches for good, with the reason.
//
// At most one batch per output is in flight at a time, so a partner sees one call at a time
// from one process, in queue order.
//
// Thread safety: poll(), wait_idle() and stop() may be called from any thread, concurrently.
// Ownership: the engine, client and clock must outlive the dispatcher; the destructor stops it.
#pragma once

#include <opendsr/clock.hpp>
#include <opendsr/distribution.hpp>
#include <opendsr/engine.hpp>
#include <opendsr/http_client.hpp>
#include <opendsr/result.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace opendsr {

// What happened to one attempt, for metrics and logs (no body, no identity, no credential).
struct forward_attempt {
  std::string workspace;
  std::string output;
  std::string partner;
  unsigned attempt = 1;
  std::size_t requests = 0;  // erasure requests the batch forwards
  std::size_t items = 0;     // identities it carries
  forward_verdict_kind verdict = forward_verdict_kind::failed;
  std::string message;       // the verdict's message (empty when sent without one)
  std::chrono::microseconds latency{0};  // from the send to its completion (steady clock)
};

struct forward_dispatcher_options {
  // The lease owner: the name of this process among those sharing the store (no line break).
  // Default: "opendsr".
  std::string owner = "opendsr";
  // Batches being sent at once (across outputs). REQUIRES: >= 1. Default: 32.
  std::size_t max_in_flight = 32;
  // Batches claimed per write transaction. REQUIRES: >= 1. Default: 16.
  std::size_t claim_batch = 16;
  // Called after each attempt completes, on the dispatcher's thread (keep it short). Default: none.
  std::function<void(const forward_attempt&)> on_attempt = {};
  // Called after outcomes were recorded (or recording failed: the batches are then sent again
  // when their leases expire), on the dispatcher's thread. Default: none.
  std::function<void(const result<forward_record_report>&)> on_recorded = {};
  // Called when a claim fails (a storage error), on the dispatcher's thread. Default: none.
  std::function<void(const error&)> on_claim_error = {};
};

class forward_dispatcher {
 public:
  // Validates the options (errc::invalid_argument) and releases the leases `owner` held before
  // (it restarted: nothing it claimed then is in flight), so those batches are due at once.
  static result<std::unique_ptr<forward_dispatcher>> start(engine& e, http_client& client, const clock& c,
                                                           forward_dispatcher_options options = {});

  virtual ~forward_dispatcher() = default;
  forward_dispatcher(const forward_dispatcher&) = delete;
  forward_dispatcher& operator=(const forward_dispatcher&) = delete;

  // Asks for what is due now to be claimed and sent, up to max_in_flight; returns at once.
  virtual void poll() = 0;

  // Returns once every outcome that has arrived is recorded and every poll() made before the
  // call has claimed and started its sends (a manual clock moves only after it).
  virtual void wait_idle() = 0;

  // Stops claiming, then waits until every send in flight has completed and been recorded.
  virtual void stop() = 0;

  // Batches in flight now.
  virtual std::size_t in_flight() const = 0;

 protected:
  forward_dispatcher() = default;
};

}  // namespace opendsr
