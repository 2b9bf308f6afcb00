// Fulfilment tasks (<opendsr/fulfilment.hpp> tells the life of one): one per request in
// progress under fulfilment_mode::tasks, written with the status change that starts processing,
// claimed with a lease, and removed when the request reaches a terminal status. And the results
// index: which request a results token names, and when its package expires.
//
// Tables (store/keys.hpp):
//   f ref             -> fulfilment_task (format 1, below)
//   k due ref         -> ""   the task's next attempt, or its lease expiry while claimed
//   x token           -> expires(8) ref: the request whose results the token names (kept
//                        after expiry, so that an expired link answers 410 rather than 404)
//   y expires token   -> ""   until the package is deleted
//   m "results-key"   -> the key results tokens are an HMAC under
// Invariant: every f entry has exactly one k key, at its `due`, and its request is in_progress.
#pragma once

#include <opendsr/fulfilment.hpp>
#include <opendsr/request.hpp>
#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>
#include <opendsr/time.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr::detail {

struct fulfilment_task {
  timestamp queued;  // when processing started
  timestamp due;     // where its k key is
  std::uint32_t attempts = 0;
  std::string lease;  // the claim in flight; empty when not claimed
  std::string last_error;

  friend bool operator==(const fulfilment_task&, const fulfilment_task&) = default;
};

std::string encode_fulfilment_task(const fulfilment_task& t);
// Returns errc::storage_corrupt if bytes are not a task this version can read.
result<fulfilment_task> decode_fulfilment_task(std::string_view bytes);

// Writes the task of the request under ref, due at `now`.
result<void> queue_fulfilment(write_transaction& txn, std::string_view ref, timestamp now);

// Removes the request's task, if it has one.
result<void> drop_fulfilment(write_transaction& txn, std::string_view ref);

// The task of the request under ref, or nullopt.
result<std::optional<fulfilment_task>> load_fulfilment(read_transaction& txn, std::string_view ref);

// Stores t (changed by the caller) with its k key moved from old_due to t.due.
result<void> store_fulfilment(write_transaction& txn, std::string_view ref, const fulfilment_task& t, timestamp old_due);

// The refs of up to `max` tasks due at or before `now`, in due order.
result<std::vector<std::string>> due_fulfilments(read_transaction& txn, timestamp now, std::size_t max);

// Makes every task claimed under a lease of `owner` due at `now`. Returns how many.
result<std::size_t> release_fulfilment_leases(write_transaction& txn, std::string_view owner, timestamp now);

// Every task, in due order.
result<std::vector<fulfilment_task_info>> list_fulfilments(read_transaction& txn);

// The earliest k due time, or nullopt.
result<std::optional<timestamp>> first_fulfilment_due(read_transaction& txn);

// The store's results key, made (32 random bytes) if the store has none.
result<std::string> ensure_results_key(write_transaction& txn);

// The results token of the request under ref: the URL-safe base64 of the first 24 bytes of
// HMAC-SHA-256(results key, ref), 32 characters.
std::string results_token_of(std::string_view results_key, std::string_view ref);

// Indexes a token that names the request under ref, expiring at `expires`.
result<void> index_results(write_transaction& txn, std::string_view token, std::string_view ref, timestamp expires);

struct results_entry {
  std::string ref;
  timestamp expires;
};
// What a token names, or nullopt.
result<std::optional<results_entry>> find_results(read_transaction& txn, std::string_view token);

// Up to `max` tokens whose package expired at or before `now`, in expiry order.
result<std::vector<std::string>> expired_results(read_transaction& txn, timestamp now, std::size_t max);

// Forgets that the token's package is to be deleted (it has been). Returns true iff it was.
result<bool> forget_expiry(write_transaction& txn, std::string_view token);

// The earliest y expiry, or nullopt.
result<std::optional<timestamp>> first_results_expiry(read_transaction& txn);

}  // namespace opendsr::detail
