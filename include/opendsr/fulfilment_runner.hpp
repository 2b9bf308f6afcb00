// The fulfilment runner: runs the engine's due fulfilment tasks through a fulfilment
// (<opendsr/fulfilment.hpp> tells the life of a task) on worker threads, records every outcome,
// and deletes results packages when their links expire.
//
// A coordinator thread of its own claims due tasks (never more than there are free workers, so
// a claimed job starts at once and its lease runs from its start) and deletes expired packages;
// each worker runs one job at a time and records its outcome itself. poll() only wakes the
// coordinator. A crash at any point loses nothing: a job claimed and not recorded runs again
// when its lease expires, or at once when the same owner starts again (start() releases its
// leases); a package deleted but not yet forgotten is deleted again (deletion is idempotent).
//
// Thread safety: poll(), wait_idle() and stop() may be called from any thread, concurrently.
// Ownership: the engine, fulfilment, clock (and results store) must outlive the runner; the
// destructor stops it.
#pragma once

#include <opendsr/clock.hpp>
#include <opendsr/engine.hpp>
#include <opendsr/fulfilment.hpp>
#include <opendsr/result.hpp>
#include <opendsr/results_store.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace opendsr {

// What one job did, for metrics and logs (no identity).
struct fulfilment_run {
  std::string workspace;
  std::string subject_request_id;
  request_type type = request_type::access;
  std::uint32_t attempt = 1;
  std::string error;  // the fulfilment's error; empty if it was done
  result<fulfilment_recorded> recorded = fulfilment_recorded::stale;  // what recording it did
  std::chrono::microseconds took{0};  // the job's run time (steady clock)
};

struct fulfilment_runner_options {
  // The lease owner: the name of this process among those sharing the store (no line break).
  // Default: "opendsr".
  std::string owner = "opendsr";
  // Jobs run at once. REQUIRES: 1 to 256. Default: 2.
  std::size_t workers = 2;
  // Where packages are deleted when their links expire; not owned. Default (nullptr): packages
  // are not deleted (a fulfilment whose results live elsewhere).
  results_store* results = nullptr;
  // Called after each job's outcome is recorded (or recording failed), on the worker's thread.
  std::function<void(const fulfilment_run&)> on_run = {};
  // Called when a claim, an expiry read or a package deletion fails, on the coordinator's
  // thread; the host retries at its next timer. Default: none.
  std::function<void(const error&)> on_error = {};
};

class fulfilment_runner {
 public:
  // Validates the options (errc::invalid_argument) and releases the leases `owner` held before.
  static result<std::unique_ptr<fulfilment_runner>> start(engine& e, fulfilment& f, const clock& c,
                                                          fulfilment_runner_options options = {});
  virtual ~fulfilment_runner() = default;
  fulfilment_runner(const fulfilment_runner&) = delete;
  fulfilment_runner& operator=(const fulfilment_runner&) = delete;

  // Asks for the tasks due at clock.now() to be claimed (up to the free workers) and for expired
  // packages to be deleted; returns at once.
  virtual void poll() = 0;

  // Returns once every job claimed so far (including by polls made before the call) has run and
  // been recorded, and the jobs those freed workers could take are done too: nothing due now is
  // left unclaimed for lack of a free worker. For hosts and tests that need a deterministic point.
  virtual void wait_idle() = 0;

  // Stops claiming, then waits for the jobs running to finish and be recorded.
  virtual void stop() = 0;

  // Jobs running now.
  virtual std::size_t running() const = 0;

 protected:
  fulfilment_runner() = default;
};

}  // namespace opendsr
