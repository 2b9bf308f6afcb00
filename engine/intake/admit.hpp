// Intake: admitting a parsed request into the store, with the checks of spec §1.6.
#pragma once

#include <opendsr/engine_options.hpp>
#include <opendsr/request.hpp>
#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>
#include <opendsr/time.hpp>

#include "outbox/forwards.hpp"
#include "store/record.hpp"

#include <string_view>

namespace opendsr::detail {

// The record of a new request, pending, with its schedule and conflict digest: everything of
// its admission that reads no storage (so it may run on any thread, before the transaction).
request_record new_record(const engine_options& options, std::string_view workspace, const request& req,
                          std::string_view body, timestamp received);

// In txn: refuses a duplicate id (errc::duplicate_request_id), a full group (errc::group_full) or
// an identity conflict with a pending or in_progress request (errc::identity_conflict, naming
// it), checked in that order and before anything is written; else writes the request record, its
// conflict index entry, its group membership, its first timer, its partner forwards (an erasure
// with `forwards`: one per active output of its workspace) and its creation callbacks.
// REQUIRES: r came from new_record() with these options.
result<void> admit(write_transaction& txn, const engine_options& options, const request_record& r,
                   const forward_source* forwards);

// The number of requests stored in a group, as its count entry says (0 when absent).
result<std::size_t> group_size(read_transaction& txn, std::string_view count_key);

}  // namespace opendsr::detail
