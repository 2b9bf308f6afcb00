// Applying the state machine to stored requests: every status change writes, in the caller's
// transaction, everything it causes (the record, the timer moved, the conflict index entry
// removed when terminal, and the outbound work of outbox/outbound.hpp).
#pragma once

#include <opendsr/engine_options.hpp>
#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>
#include <opendsr/time.hpp>

#include "lifecycle/machine.hpp"
#include "store/record.hpp"

#include <cstddef>
#include <optional>
#include <string_view>

namespace opendsr::detail {

// Stores r in its current status with what that status causes: its timer moved from
// `old_timer` (nullopt: a new request) to timer_due(r), its conflict index entry removed if the
// status is terminal, and its outbound work written (callbacks due at the first flush not before
// `now`, and the fulfilment task queued or dropped). A terminal status's record is stored without
// its body and its conflict digest. `ref` is keys::request_ref(r.workspace, r.subject_request_id).
result<void> write_status(write_transaction& txn, const engine_options& options, const request_record& r,
                          std::string_view ref, std::optional<timestamp> old_timer, timestamp now);

// Moves r from its status by `event` at `now` (guard() decides) and writes the result.
result<void> apply_event(write_transaction& txn, const engine_options& options, request_record& r,
                         lifecycle_event event, timestamp now);

// Performs every timed transition of r due at or before `now`, in order. At
// expected_completion_time a request completes (fulfilment_mode::scheduled) or, its task not
// done, has its estimate moved (tasks). Returns how many status changes happened.
result<std::size_t> catch_up(write_transaction& txn, const engine_options& options, request_record& r, timestamp now);

// Completes an in_progress request whose fulfilment is done, with its results link.
result<void> complete_fulfilled(write_transaction& txn, const engine_options& options, request_record& r,
                                std::optional<std::string> results_url, timestamp now);

// Sets the entry of `output` among the distribution entries of the request at `ref` to `state`
// with `message`, and queues the callbacks announcing it (due at the first flush not before
// `now`). Returns false, writing nothing, if the entry already says exactly that.
result<bool> change_distribution(write_transaction& txn, const engine_options& options, std::string_view ref,
                                 std::string_view output, distribution_state state,
                                 const std::optional<std::string>& message, timestamp now);

}  // namespace opendsr::detail
