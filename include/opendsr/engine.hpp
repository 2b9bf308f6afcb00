// opendsr::engine: the sans-I/O core of an OpenDSR processor.
//
// The engine turns inputs (a submission, a cancellation, the passage of time, the outcome of a
// delivery) into state changes and outbound work (callbacks in the outbox), each inside one
// storage transaction. It does no I/O: a dispatcher (<opendsr/callback_dispatcher.hpp>) claims
// due callbacks, sends them and records their outcomes through the methods below. It keeps no
// per-request state in memory: everything lives in the storage under the engine's own key schema
// (docs/engine.md), so a new engine over the same storage continues where the last one stopped.
//
// Workspaces are opaque, non-empty UTF-8 strings (the controller_id of the responses); every
// request, group and id is scoped to one, and nothing reveals another workspace's requests.
//
// Expected outcomes are error values (result<T>):
//   errc::invalid_json, errc::invalid_request  the body breaks the v3 contract (parse_request)
//   errc::duplicate_request_id                 the id exists in the workspace, in any state
//   errc::group_full                           the group already holds max_group_size requests
//   errc::identity_conflict                    a pending or in_progress request of the same type
//                                              has the same identities; the message names it
//   errc::not_found                            no such request in this workspace
//   errc::invalid_operation                    cancel of a request that is not pending
//   errc::invalid_argument                     an empty or non-UTF-8 workspace
// and storage errors (errc::storage_*) pass through. A storage_conflict at commit re-runs the
// whole transaction, up to engine_options::max_transaction_attempts times.
//
// Thread safety: every method may be called from any thread, concurrently; the storage
// serializes writers. Ownership: the engine refers to the storage, which must outlive it.
#pragma once

#include <opendsr/callback_delivery.hpp>
#include <opendsr/distribution.hpp>
#include <opendsr/documents.hpp>
#include <opendsr/engine_options.hpp>
#include <opendsr/fulfilment.hpp>
#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>
#include <opendsr/time.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr {

// One POST /requests of a batch.
struct submission {
  std::string_view workspace;
  std::string_view body;    // the exact request body bytes
  timestamp received_time;  // when the processor received it
};

// A submission with everything done that needs no storage (engine::prepare): the workspace
// checked, the body parsed and validated, the request's record and schedule built and its
// receipt rendered. It owns copies of the workspace and body. A group committer prepares on the
// submitting threads, in parallel, so that its writer thread spends its time on the
// transaction alone.
class prepared_submission {
 public:
  prepared_submission(prepared_submission&&) noexcept;
  prepared_submission& operator=(prepared_submission&&) noexcept;
  ~prepared_submission();

 private:
  friend class engine;
  struct state;
  explicit prepared_submission(std::unique_ptr<state> s);
  std::unique_ptr<state> state_;
};

// What one tick() did.
// What a results token names (results_store.hpp's tokens; engine::results).
struct results_link {
  std::string subject_request_id;
  timestamp expires;  // completion + fulfilment_policy::results_lifetime
  bool expired = false;
};

struct tick_report {
  std::size_t transitions = 0;        // status changes performed
  std::optional<timestamp> next_due;  // as next_due() after the tick
};

class engine {
 public:
  // Validates the options (errc::invalid_argument naming the option) and the store's schema
  // version (errc::storage_corrupt if the store was written by an incompatible version), and
  // records the schema version in a new store. A store of schema 1 (before callback delivery)
  // or 2 (before fulfilment tasks) is upgraded in place, in one transaction: a schema-1 outbox
  // becomes callbacks queued as they were, and ended requests drop their body and conflict
  // digest. Under fulfilment_mode::tasks, every in_progress request without a task gets one.
  static result<engine> open(storage& store, engine_options options);

  engine(engine&&) noexcept;
  engine& operator=(engine&&) noexcept;
  ~engine();

  const engine_options& options() const noexcept;

  // Creates a request from a POST /requests body received at `received`: parses it, then, in one
  // write transaction, refuses a duplicate id, a full group or an identity conflict (in that
  // order), else stores the request, its indexes, its first timer and the callbacks its creation
  // causes. Returns the 201 receipt.
  result<receipt> submit(std::string_view workspace, std::string_view body, timestamp received);

  // Submits every element in ONE write transaction (group commit); result i belongs to batch[i].
  // The elements take effect in order, so a later one sees the earlier ones (a repeated id is a
  // duplicate). A storage failure fails every element that parsed; nothing of the batch is kept.
  // The same as prepare() on each element, then submit_prepared() on those that succeeded.
  std::vector<result<receipt>> submit_batch(std::span<const submission> batch);

  // The part of submit() that needs no storage; any thread, concurrently with everything else.
  // Errors: invalid_argument (workspace), invalid_json, invalid_request.
  result<prepared_submission> prepare(std::string_view workspace, std::string_view body, timestamp received) const;

  // As submit_batch, for submissions prepared by this engine: ONE write transaction, result i
  // for batch[i], in order, each refused (duplicate, full group, conflict) on its own, and a
  // storage failure failing them all.
  std::vector<result<receipt>> submit_prepared(std::span<const prepared_submission> batch);

  // The status object of one request.
  result<status_document> status(std::string_view workspace, std::string_view subject_request_id) const;

  // The status objects of a group, in submission order (at most max_group_size).
  result<group_document> group(std::string_view workspace, std::string_view group_id) const;

  // Cancels a pending request; `now` is when the cancellation was received. Work already due at
  // `now` happens first, so a request whose cancel window closed is refused even before the
  // tick that starts its processing. Returns the 202 body.
  result<cancellation> cancel(std::string_view workspace, std::string_view subject_request_id, timestamp now);

  // The discovery body (unsigned): api_version, supported identities, request types, certificate.
  const std::string& discovery() const noexcept;

  // Performs every transition due at or before `now` (processing starts, completions), in write
  // transactions of at most tick_batch_size timers each.
  result<tick_report> tick(timestamp now);

  // When tick(), the callback dispatcher, the fulfilment runner or the forward dispatcher next
  // has work: the earliest lifecycle timer, callback due (first attempt, retry or lease expiry),
  // fulfilment task due (the same), results expiry, or forward batch due (an output's batch
  // window, a retry or a lease expiry); nullopt if none.
  result<std::optional<timestamp>> next_due() const;

  // ---- Callback delivery (<opendsr/callback_delivery.hpp>) ----

  // Claims up to `max` callbacks due at or before `now`, in due order, for `owner` (a name for
  // the dispatching process; no line break; several engines sharing one store use distinct names) with
  // a lease of options().callbacks.lease, in one write transaction. Claimed callbacks are not
  // claimed again until their lease expires.
  result<std::vector<claimed_callback>> claim_callbacks(timestamp now, std::size_t max, std::string_view owner);

  // Records outcomes of claimed callbacks in one write transaction, at `now`: delivered ones are
  // removed (and the next of their chain falls due), failed ones scheduled again or
  // dead-lettered. An outcome whose lease was lost (it expired and the callback was claimed again,
  // or it was released) records nothing and counts as stale.
  result<callback_record_report> record_callbacks(std::span<const callback_outcome> outcomes, timestamp now);

  // Makes every callback leased by `owner` due at `now`: call it when a dispatcher starts, since
  // nothing it claimed before it (re)started is still in flight. Returns how many.
  result<std::size_t> release_callback_leases(std::string_view owner, timestamp now);

  // The dead-lettered callbacks, all or of one workspace (and request).
  result<std::vector<dead_callback>> dead_callbacks(std::optional<std::string_view> workspace = std::nullopt,
                                                    std::optional<std::string_view> subject_request_id = std::nullopt) const;

  // Queues dead-lettered callbacks again, all or of one workspace (and request), with their
  // attempts reset and due at `now`. Returns how many.
  result<std::size_t> redrive_callbacks(timestamp now, std::optional<std::string_view> workspace = std::nullopt,
                                        std::optional<std::string_view> subject_request_id = std::nullopt);

  // Counts of the callback queue, for metrics (scans the outbox).
  result<callback_queue_stats> callback_queue() const;

  // ---- Fulfilment (<opendsr/fulfilment.hpp>, fulfilment_mode::tasks) ----

  // Claims up to `max` fulfilment tasks due at or before `now`, in due order, for `owner` (as
  // claim_callbacks), each leased for options().fulfilment.lease, in one write transaction.
  result<std::vector<claimed_fulfilment>> claim_fulfilments(timestamp now, std::size_t max, std::string_view owner);

  // Records a claimed job's outcome at `now`, in one write transaction: done completes the
  // request (its callbacks queued, its results token indexed to expire results_lifetime later);
  // an error schedules the task after a backoff. A lost lease records nothing (stale).
  result<fulfilment_recorded> record_fulfilment(const fulfilment_outcome& outcome, timestamp now);

  // Makes every task leased by `owner` due at `now` (as release_callback_leases). Returns how many.
  result<std::size_t> release_fulfilment_leases(std::string_view owner, timestamp now);

  // Every fulfilment task, in due order (operators, metrics).
  result<std::vector<fulfilment_task_info>> fulfilment_tasks() const;

  // What the results token names, for a download by `workspace` at `now`. errc::not_found if the
  // token names nothing, or a request of another workspace (indistinguishable on purpose).
  result<results_link> results(std::string_view workspace, std::string_view token, timestamp now) const;

  // Up to `max` results tokens whose package expired at or before `now`, in expiry order: delete
  // each package, then forget_expired_results().
  result<std::vector<std::string>> expired_results(timestamp now, std::size_t max) const;

  // Records that these packages are deleted (their links keep answering 410). Returns how many
  // were pending deletion.
  result<std::size_t> forget_expired_results(std::span<const std::string> tokens);

  // ---- Distribution (<opendsr/distribution.hpp>) ----

  // Adds an output to a workspace, validated by its partner kind (errc::invalid_argument naming
  // the field; errc::invalid_request if the workspace already has an output of that name).
  result<output_info> add_output(std::string_view workspace, const output_definition& output, timestamp now);

  // Changes an output (errc::not_found if there is none of that name); its circuit closes, and
  // its queue and batches fall due at `now`.
  result<output_info> update_output(std::string_view workspace, std::string_view name, const output_change& change,
                                    timestamp now);

  // Removes an output. Its forwards not yet sent become `failed` ("output removed"), each with a
  // status callback. errc::not_found if there is none of that name.
  result<void> remove_output(std::string_view workspace, std::string_view name, timestamp now);

  // The outputs of one workspace (all workspaces when nullopt), in name order, credentials masked.
  result<std::vector<output_info>> outputs(std::optional<std::string_view> workspace = std::nullopt) const;

  // Claims up to `max` batches due at or before `now` for `owner` (as claim_callbacks), each
  // leased for options().distribution.lease, in one write transaction: output queues whose batch
  // is due become batches; batches whose retry or lease expired are claimed again. Outputs whose
  // circuit is open are skipped.
  result<std::vector<claimed_forward>> claim_forwards(timestamp now, std::size_t max, std::string_view owner);

  // Records outcomes of claimed batches in one write transaction at `now` (distribution.hpp tells
  // what each verdict does). A lost lease records nothing (stale).
  result<forward_record_report> record_forwards(std::span<const forward_outcome> outcomes, timestamp now);

  // Makes every batch leased by `owner` due at `now` (as release_callback_leases).
  result<std::size_t> release_forward_leases(std::string_view owner, timestamp now);

  // Dead batches, all or of one workspace (and output).
  result<std::vector<dead_forward>> dead_forwards(std::optional<std::string_view> workspace = std::nullopt,
                                                  std::optional<std::string_view> output = std::nullopt) const;

  // Queues dead batches again (attempts reset, due at `now`; their requests' entries back to
  // `pending`, each with a callback), all or of one workspace (and output). Returns how many.
  result<std::size_t> redrive_forwards(timestamp now, std::optional<std::string_view> workspace = std::nullopt,
                                       std::optional<std::string_view> output = std::nullopt);

  // Counts of the forwarding queue, for metrics.
  result<forward_queue_stats> forward_queue() const;

 private:
  struct impl;
  explicit engine(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace opendsr
