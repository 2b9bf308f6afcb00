// The callback dispatcher: delivers the engine's due callbacks through an http_client, signed by
// a signer, and records every outcome back into the engine (<opendsr/callback_delivery.hpp>
// tells the life of a callback).
//
// The dispatcher's own worker thread does all of its storage work and signing; the client's
// threads only hand it outcomes. poll() asks the worker to claim what is due at clock.now()
// (bounded batches, each one write transaction with a lease), sign each body that has no
// signature yet and start the sends; it returns at once. As responses arrive, the worker records
// their outcomes in groups (one write transaction for all that arrived meanwhile: group commit,
// which a durable store needs), refills the freed slots once enough are free (claims are
// batched too), and on_recorded tells the host to re-arm its timer at engine::next_due(). A crash
// at any point loses nothing: what was claimed and not recorded is sent again when its lease
// expires, or at once when the same owner starts again (start() releases its leases).
//
// Each callback is a POST of the stored body with Content-Type: application/json,
// X-OpenDSR-Processor-Domain and X-OpenDSR-Signature (the signer's PKCS#1 v1.5 SHA-256 over the
// exact bytes). A 2xx is delivered; anything else (another status, a redirect, which is never
// followed, or a transport error) is a failed attempt.
//
// Thread safety: poll() and stop() may be called from any thread, concurrently.
// Ownership: the engine, client, signer and clock must outlive the dispatcher; the destructor
// stops it.
#pragma once

#include <opendsr/clock.hpp>
#include <opendsr/engine.hpp>
#include <opendsr/http_client.hpp>
#include <opendsr/result.hpp>
#include <opendsr/signer.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace opendsr {

// What happened to one attempt, for metrics and logs (no body, no identity).
struct callback_attempt {
  std::string workspace;
  std::string url;
  unsigned attempt = 1;
  bool delivered = false;
  std::string error;                     // empty if delivered
  std::chrono::microseconds latency{0};  // from the send to its completion (steady clock)
};

struct callback_dispatcher_options {
  // The lease owner: the name of this process among those sharing the store (no line break).
  // Default: "opendsr".
  std::string owner = "opendsr";
  // Callbacks being sent at once. REQUIRES: >= 1. Default: 256.
  std::size_t max_in_flight = 256;
  // Callbacks claimed per write transaction. REQUIRES: >= 1. Default: 64.
  std::size_t claim_batch = 64;
  // Called after each attempt completes, on the client's thread (keep it short). Default: none.
  std::function<void(const callback_attempt&)> on_attempt = {};
  // Called after outcomes were recorded (or recording failed: the callbacks are then sent again
  // when their leases expire), on the dispatcher's thread: re-arm the host's timer at
  // engine::next_due(). Default: none.
  std::function<void(const result<callback_record_report>&)> on_recorded = {};
  // Called when a claim fails (a storage error), on the dispatcher's thread; the host retries at
  // its next timer. Default: none.
  std::function<void(const error&)> on_claim_error = {};
};

class callback_dispatcher {
 public:
  // Validates the options (errc::invalid_argument) and releases the leases `owner` held before
  // (it restarted: nothing it claimed then is in flight), so those callbacks are due at once.
  static result<std::unique_ptr<callback_dispatcher>> start(engine& e, http_client& client, const signer& s,
                                                            const clock& c, callback_dispatcher_options options = {});

  virtual ~callback_dispatcher() = default;
  callback_dispatcher(const callback_dispatcher&) = delete;
  callback_dispatcher& operator=(const callback_dispatcher&) = delete;

  // Asks for what is due now to be claimed and sent, up to max_in_flight in flight; returns at once.
  virtual void poll() = 0;

  // Returns once the dispatcher has nothing to do but wait for answers: every outcome that has
  // arrived is recorded, and every poll() made before the call has claimed and started its sends.
  // For hosts and tests that need a deterministic point (a manual clock moves only after it).
  virtual void wait_idle() = 0;

  // Stops claiming, then waits until every send in flight has completed and been recorded.
  virtual void stop() = 0;

  // Sends in flight now.
  virtual std::size_t in_flight() const = 0;

 protected:
  callback_dispatcher() = default;
};

}  // namespace opendsr
