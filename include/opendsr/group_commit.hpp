// opendsr::group_committer: group commit for submissions (POST /requests).
//
// A durable commit costs an fsync whether it carries one request or a hundred. The committer
// gathers the submissions that arrive while a commit is in progress and hands them to the engine
// together: one write transaction, one fsync, each submission with its own result. A duplicate
// id, a full group or an identity conflict refuses only its own submission (later submissions of
// the batch see the earlier ones, as if they had come one by one in queue order); a storage
// failure fails every submission of that batch and no other.
//
// How it batches: each submission is prepared (engine::prepare: parsed, validated, its record
// and receipt built) on the submitting thread, so bad bodies never reach the queue and that
// work runs in parallel. One writer thread takes everything queued (up to max_batch_size) the
// moment the previous commit returns, and commits it with engine::submit_prepared. There is no
// timer: a lone submission on an idle committer is committed at once, and batches grow only
// because submissions arrive while a commit is in progress, so the batch size follows the load.
// Every write transaction of the committer begins, commits and ends on the writer thread, as
// LMDB requires.
//
// Acknowledgement: a submission's result (submit()'s return value, or the call of its completion
// handler) that is a receipt comes only after its transaction committed (durably, on a durable
// storage). Nothing is acknowledged before its commit.
//
// Back-pressure: at most max_queued submissions wait for the writer (the batch being committed
// does not count); one more is refused at once with errc::unavailable, as is every submission
// once stop() has begun. Both are retryable (HTTP 503).
//
// Thread safety: submit(), submit_async() and stop() may be called from any thread concurrently,
// except as below. Completion handlers run on the writer thread, in queue order, after the
// commit of their batch and before the next batch is taken; so they must be quick (post the
// response to its I/O thread, wake a waiter), must not throw, and must not call submit() or
// stop(), which wait for the writer thread that runs them (a deadlock). They may call
// submit_async().
// Ownership: the engine must outlive the committer. Submissions are copied when prepared: the
// caller's buffers may go as soon as submit_async() returns.
#pragma once

#include <opendsr/documents.hpp>
#include <opendsr/engine.hpp>
#include <opendsr/result.hpp>
#include <opendsr/time.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace opendsr {

struct group_commit_options {
  // The most submissions one write transaction carries. REQUIRES: >= 1. Default: 128.
  std::size_t max_batch_size = 128;
  // The most submissions waiting for the writer; one more is refused with errc::unavailable.
  // REQUIRES: >= 1. Default: 4096.
  std::size_t max_queued = 4096;
};

class group_committer {
 public:
  // Called once with the submission's result, on the writer thread (see the contract above).
  using completion_handler = std::function<void(result<receipt>)>;

  // Starts the writer thread. Errors: invalid_argument naming an option that breaks its
  // REQUIRES; internal if the thread cannot be started.
  static result<std::unique_ptr<group_committer>> start(engine& e, group_commit_options options = {});

  // stop(), then destroys the committer.
  ~group_committer();
  group_committer(const group_committer&) = delete;
  group_committer& operator=(const group_committer&) = delete;

  // As engine::submit(workspace, body, received), committed together with whatever else is
  // queued. Blocks until the submission's batch committed or failed (a body that does not parse
  // returns at once). Errors: as engine::submit, plus errc::unavailable when the queue is full
  // or the committer is stopping or stopped.
  result<receipt> submit(std::string_view workspace, std::string_view body, timestamp received);

  // Prepares and queues the submission, and returns; `done` is later called exactly once, on
  // the writer thread, with the result of its transaction: the receipt, a refusal
  // (duplicate_request_id, group_full, identity_conflict) or a storage error. Returns an error,
  // and never calls `done`, when the submission fails before its transaction: invalid_argument
  // (workspace), invalid_json or invalid_request (engine::prepare), or errc::unavailable (the
  // queue is full, or the committer is stopping or stopped).
  // REQUIRES: done is callable.
  result<void> submit_async(std::string_view workspace, std::string_view body, timestamp received,
                            completion_handler done);

  // Refuses new submissions, commits every submission already queued (completing each), and
  // joins the writer thread. Idempotent; concurrent calls all return once it is done.
  // REQUIRES: not called from a completion handler.
  void stop();

 private:
  struct impl;
  explicit group_committer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace opendsr
