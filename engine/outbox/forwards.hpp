// Partner forwards (schema 4): outputs, their queues, batches and due index (<opendsr/
// distribution.hpp> tells the life of a forward; docs/engine.md draws the tables).
//
// Tables (store/keys.hpp), per output (output_ref = component(workspace) component(name)):
//   u output_ref                      -> output_record: configuration, derived partner facts,
//                                        circuit, and queue state (count, items, oldest, due)
//   j output_ref seq                  -> queued_forward: one request's identities for the output
//   v output_ref seq                  -> forward_batch: members (request + identities), attempts,
//                                        lease, schedule, dead flag
//   a due kind output_ref [seq]       -> "": kind Q, the queue's batch window (present iff the
//                                        queue is not empty and the circuit is closed); kind B,
//                                        a batch's next attempt or lease expiry (present iff
//                                        the batch is scheduled)
// Invariants: an output's queue count and items equal its j entries; its queue due key is
// where output_record::queue_due says; a batch is scheduled iff it is neither dead nor held by
// an open circuit; every member of a live batch and every queued forward has its request's
// entry for the output `pending`.
//
// These functions keep the queue mechanics; they never touch request records. What a change
// means for requests' distribution entries is returned as entry_change values, which the engine
// applies (each queues a status callback).
#pragma once

#include <opendsr/distribution.hpp>
#include <opendsr/engine_options.hpp>
#include <opendsr/identity.hpp>
#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>
#include <opendsr/time.hpp>

#include "store/record.hpp"

#include <map>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr::detail {

// A change of one request's distribution entry, for the engine to apply.
struct entry_change {
  std::string request_ref;
  std::string output;  // the output's name
  distribution_state state = distribution_state::pending;
  std::optional<std::string> message;
};

// What a request brings to forwarding (prepared before its admission transaction).
struct forward_source {
  std::vector<identity> identities;  // the request's, enriched from its profile
  // Why nothing may be forwarded at all (an mpid that resolves to no profile); empty if it may.
  std::string refusal;
};

// True iff `workspace` has an active output.
result<bool> has_active_output(read_transaction& txn, std::string_view workspace);

// Writes one forward per active output of `workspace` for the request at `request_ref`, at
// `now`, and returns the request's distribution entries (in name order): pending where a
// forward was queued, skipped (with the reason) where none of its identities suit the output.
// Empty if the workspace has no active output.
result<std::vector<distribution_entry>> queue_forwards(write_transaction& txn, std::string_view workspace,
                                                       std::string_view request_ref, const forward_source& source,
                                                       timestamp now);

// Output management (engine.hpp documents each).
result<output_info> add_output(write_transaction& txn, const engine_options& options, std::string_view workspace,
                               const output_definition& output, timestamp now);
result<output_info> update_output(write_transaction& txn, const engine_options& options, std::string_view workspace,
                                  std::string_view name, const output_change& change, timestamp now);
// Removes the output and its forwards; the changes fail the requests still pending for it.
result<std::vector<entry_change>> remove_output(write_transaction& txn, std::string_view workspace,
                                                std::string_view name);
result<std::vector<output_info>> list_outputs(read_transaction& txn, std::optional<std::string_view> workspace);

// Claims up to `max` batches due at or before `now` (engine::claim_forwards).
result<std::vector<claimed_forward>> claim_due_forwards(write_transaction& txn, timestamp now, std::size_t max,
                                                        std::string_view lease, timestamp lease_expiry);

// Records one batch's outcome, adding to `report` and to `changes`.
result<void> record_forward_outcome(write_transaction& txn, const distribution_policy& policy,
                                    const forward_outcome& outcome, timestamp now, forward_record_report& report,
                                    std::vector<entry_change>& changes);

result<std::size_t> release_forward_leases(write_transaction& txn, std::string_view owner, timestamp now);

result<std::vector<dead_forward>> list_dead_forwards(read_transaction& txn, std::optional<std::string_view> workspace,
                                                     std::optional<std::string_view> output);

// Queues dead batches again; the changes put their requests back to pending.
result<std::size_t> redrive_dead_forwards(write_transaction& txn, std::optional<std::string_view> workspace,
                                          std::optional<std::string_view> output, timestamp now,
                                          std::vector<entry_change>& changes);

result<forward_queue_stats> forward_stats(read_transaction& txn);

// The invariants above, over every row of the u, j, v and a tables (key -> value), with the
// stored request records by ref: one sentence per broken one (engine/check/invariants.cpp).
std::vector<std::string> check_forward_tables(const std::map<std::string, std::string>& rows,
                                              const std::map<std::string, request_record>& records);

// The earliest forward due time, or nullopt.
result<std::optional<timestamp>> first_forward_due(read_transaction& txn);

}  // namespace opendsr::detail
