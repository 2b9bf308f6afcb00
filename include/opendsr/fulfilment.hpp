// The fulfilment seam: the work that finishes a request in progress (for access and
// portability, export the subject's data; for erasure, erase it), and the engine's side of it.
//
// The life of one job (engine_options::fulfilment.mode == fulfilment_mode::tasks)
// - When a request starts processing, the engine writes its fulfilment task in the same
//   transaction as the status change, due at once.
// - A runner (<opendsr/fulfilment_runner.hpp>, or the embedder's own loop) claims due tasks with
//   engine::claim_fulfilments, which leases each for fulfilment_policy::lease, runs
//   fulfilment::fulfil() off every engine transaction, and reports with
//   engine::record_fulfilment. Done completes the request in the transaction that records it
//   (with its results link, which then stays valid for results_lifetime); an error schedules
//   the task again after a backoff. A lease that expires (the runner died) makes the task due
//   again, so a crash at any point repeats only the job that was in flight.
// - If expected_completion_time passes while the task is not done, the estimate moves
//   overdue_extension later (the status does not change).
// With fulfilment_mode::scheduled (the default) no task is written: requests complete at
// expected_completion_time without results, for an embedder that has no data to act on.
//
// Contract of fulfil()
// - It may take as long as it needs (within the lease) and block; it must not hold anything the
//   engine's writers wait for.
// - It is idempotent: the same job may run again (a lost lease, a crash before the outcome was
//   recorded), and must then produce the same effect. For access and portability the package
//   goes under job.results_token, which is the same on every run of one request (a re-run
//   replaces the package); an erasure that finds nothing left to erase is done.
// - An error is retried later; its message is logged and stored, so it must hold no identity
//   value (error.hpp's rule).
//
// Thread safety: fulfil() is called from the runner's worker threads, concurrently.
// Ownership: the embedder owns the fulfilment and keeps it alive as long as the runner.
#pragma once

#include <opendsr/identity.hpp>
#include <opendsr/request.hpp>
#include <opendsr/result.hpp>
#include <opendsr/time.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace opendsr {

enum class fulfilment_mode {
  scheduled,  // complete at expected_completion_time, without results; no task
  tasks,      // a task per request, completed when a runner records it done
};

// How fulfilment tasks are leased, retried and how long their results stay available.
struct fulfilment_policy {
  // Default: scheduled.
  fulfilment_mode mode = fulfilment_mode::scheduled;
  // How long a claimed job may run before another claim may take it. REQUIRES: > 0.
  // Default: 30 minutes (a package of millions of events takes minutes).
  std::chrono::microseconds lease = std::chrono::minutes(30);
  // The wait after the n-th failure: uniform in [min_retry_delay, min(max_retry_delay,
  // first_retry_delay * 2^(n-1))]. There is no dead letter: a request must be fulfilled, so a
  // failing job is retried until it succeeds (its last error is in fulfilment_tasks()).
  // REQUIRES: 0 < min <= first <= max. Defaults: 1 s, 1 minute, 1 hour.
  std::chrono::microseconds min_retry_delay = std::chrono::seconds(1);
  std::chrono::microseconds first_retry_delay = std::chrono::minutes(1);
  std::chrono::microseconds max_retry_delay = std::chrono::hours(1);
  // How long a results link answers after completion; then 410, and the package is deleted.
  // REQUIRES: > 0. Default: 7 days (the v3 contract).
  std::chrono::microseconds results_lifetime = std::chrono::days(7);
  // How far expected_completion_time moves when it passes with the task not done. REQUIRES: > 0.
  // Default: 24 hours.
  std::chrono::microseconds overdue_extension = std::chrono::hours(24);
};

// What the engine hands a fulfilment: the parsed request, never the raw body to parse again.
struct fulfilment_job {
  std::string controller_id;  // the workspace
  std::string subject_request_id;
  request_type type = request_type::access;
  std::vector<identity> identities;  // as parse_request gives them (request.hpp)
  timestamp received_time;
  // Access and portability: the results token the package goes under (results_store.hpp's
  // form; an HMAC of the request under a key of the store, so unguessable and the same on every
  // run). Empty for erasure.
  std::string results_token;
  std::uint32_t attempt = 1;  // 1 on the first run
};

// A job the caller has leased: record its outcome with `lease`.
struct claimed_fulfilment {
  fulfilment_job job;
  std::string lease;
};

// The job is done.
struct fulfilment_done {
  // Where the controller downloads the results (access and portability); nullopt: no link.
  // REQUIRES: valid UTF-8.
  std::optional<std::string> results_url;
};

// What a runner reports for a claimed job.
struct fulfilment_outcome {
  std::string workspace;
  std::string subject_request_id;
  std::string lease;
  result<fulfilment_done> outcome;  // an error: try again after the backoff
};

// What record_fulfilment did.
enum class fulfilment_recorded {
  completed,  // the request completed
  retrying,   // the task is due again after its backoff
  stale,      // the lease was lost (expired and claimed again, or released): nothing recorded
};

// One task, for operators and metrics.
struct fulfilment_task_info {
  std::string workspace;
  std::string subject_request_id;
  request_type type = request_type::access;
  timestamp queued;  // when processing started
  timestamp due;     // next attempt, or lease expiry while claimed
  bool claimed = false;
  std::uint32_t attempts = 0;
  std::string last_error;
};

class fulfilment {
 public:
  virtual ~fulfilment() = default;
  fulfilment() = default;
  fulfilment(const fulfilment&) = delete;
  fulfilment& operator=(const fulfilment&) = delete;

  virtual result<fulfilment_done> fulfil(const fulfilment_job& job) = 0;
};

}  // namespace opendsr
