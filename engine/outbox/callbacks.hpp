// The callback outbox (schema 2): one entry per (request, callback URL, status on the request's
// path), written in the same transaction as the status change it announces, then claimed,
// sent and recorded by a dispatcher (<opendsr/callback_delivery.hpp> tells the life of one).
//
// Tables (store/keys.hpp):
//   b ref url_index history_index -> callback_entry (format 2, below)
//   q due ref url_index history_index -> ""   the chain head's next attempt, or its lease expiry
//   l ref url_index history_index -> ""       a dead letter
// Chain invariant: for each (ref, url_index), the entry with the lowest history_index that is not
// dead, and only it, is scheduled: it holds `scheduled` and its q key. settle_chain() restores
// this after any change to a chain, so callbacks of one request and URL go out in status order.
#pragma once

#include <opendsr/callback_delivery.hpp>
#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>
#include <opendsr/time.hpp>

#include "store/keys.hpp"
#include "store/record.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr::detail {

struct callback_entry {
  std::string url;
  std::string body;       // the exact bytes to send (and sign)
  timestamp first_due;    // when it first fell due; max_age counts from here
  // Not sent before this (the backoff after a failure); the epoch when it never failed.
  timestamp retry_at{};
  // Where its q key is (the head of its chain: next attempt or lease expiry); nullopt while it
  // waits behind an earlier callback, and once dead.
  std::optional<timestamp> scheduled;
  std::uint32_t attempts = 0;
  bool dead = false;
  std::string lease;      // the claim in flight ("owner\nnonce"); empty when not claimed
  std::string signature;  // base64, from the first attempt on
  std::string last_error;
  std::optional<timestamp> last_attempt;

  friend bool operator==(const callback_entry&, const callback_entry&) = default;
};

std::string encode_callback_entry(const callback_entry& e);

// Returns errc::storage_corrupt if bytes are not an entry this version can read.
result<callback_entry> decode_callback_entry(std::string_view bytes);

// Queues the callbacks announcing r's current state, the history_index-th of the request, one per
// callback URL, first due at `due`. `ref` is keys::request_ref(r.workspace, r.subject_request_id);
// `processor_domain` keys the extension of r's distribution entries. An entry already at that
// position (a request whose numbering reached 255) is replaced: its receiver gets the newer body.
result<void> queue_callbacks(write_transaction& txn, const request_record& r, std::string_view ref,
                             std::uint8_t history_index, timestamp due, std::string_view processor_domain);

// Restores the chain invariant of (ref, url_index): its head is scheduled at max(first_due,
// retry_at, `now`) unless already scheduled, and no other entry is.
result<void> settle_chain(write_transaction& txn, std::string_view ref, std::uint8_t url_index, timestamp now);

// Claims up to `max` callbacks whose q due time is at or before `now`, in due order: each gets
// the lease `lease` and moves to `lease_expiry`.
result<std::vector<claimed_callback>> claim_due_callbacks(write_transaction& txn, timestamp now, std::size_t max,
                                                          std::string_view lease, timestamp lease_expiry);

// Records one outcome (see callback_delivery.hpp). Returns which of the report's counters it adds
// to, by adding to `report`.
result<void> record_callback_outcome(write_transaction& txn, const callback_delivery_policy& policy,
                                     const callback_outcome& outcome, timestamp now, callback_record_report& report);

// Makes every callback claimed under a lease of `owner` due at `now` (its owner restarted, so
// nothing of it is in flight). Returns how many.
result<std::size_t> release_callback_leases(write_transaction& txn, std::string_view owner, timestamp now);

// The dead letters, optionally of one workspace (and one request of it).
result<std::vector<dead_callback>> list_dead_callbacks(read_transaction& txn, std::optional<std::string_view> workspace,
                                                       std::optional<std::string_view> subject_request_id);

// Queues dead letters again (attempts reset, first due at `now`), with the same filter as
// list_dead_callbacks. Returns how many.
result<std::size_t> redrive_dead_callbacks(write_transaction& txn, std::optional<std::string_view> workspace,
                                           std::optional<std::string_view> subject_request_id, timestamp now);

result<callback_queue_stats> callback_stats(read_transaction& txn);

// The earliest q due time, or nullopt.
result<std::optional<timestamp>> first_callback_due(read_transaction& txn);

// The lease string of a claim by `owner`; owners may not contain '\n'.
std::string make_lease(std::string_view owner, std::uint64_t nonce);

// Moves a schema-1 outbox (keys::table::outbox_v1) into the schema-2 tables, removing it.
// Returns how many callbacks moved.
result<std::size_t> migrate_outbox_v1(write_transaction& txn);

}  // namespace opendsr::detail
