// The engine's key schema: every storage key the engine writes is built here (docs/engine.md
// draws the whole schema).
//
// A key is one table byte followed by components. A string component is self-delimiting: a
// length byte 0..64 followed by that many bytes, or, for longer strings (workspace and group ids
// may be long; a group id may take 1024 bytes), the byte 0xFF followed by the string's SHA-256.
// So components never run into each other, a prefix of whole components selects exactly the keys
// under it, and every key stays far below storage::max_key_size (the longest is 141 bytes).
// Times are 8 bytes big-endian with the sign bit flipped, so keys order by time.
#pragma once

#include <opendsr/request.hpp>
#include <opendsr/time.hpp>

#include "common/sha256.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace opendsr::detail::keys {

// The first byte of a key: its table.
enum class table : char {
  meta = 'm',          // m "schema"                          -> schema version
  request = 'r',       // r ref                               -> request record
  conflict = 'c',      // c ws type sha256(canonical_key)     -> id of the non-terminal request
  group_member = 'g',  // g ws group seq(2 bytes)             -> id of the seq-th request of the group
  group_count = 'n',   // n ws group                          -> number of requests in the group
  timer = 't',         // t due(8) ref                        -> the lifecycle event due then
  callback = 'b',      // b ref url_index history_index          -> a callback entry (outbox/callbacks.hpp)
  callback_due = 'q',  // q due(8) ref url_index history_index   -> "" for each chain head to send then
  callback_dead = 'l', // l ref url_index history_index          -> "" for each dead-lettered callback
  fulfilment = 'f',      // f ref                             -> fulfilment task (outbox/fulfilment_tasks.hpp)
  fulfilment_due = 'k',  // k due(8) ref                      -> "" (next attempt, or lease expiry)
  results = 'x',         // x token                           -> expires(8) ref of the request it names
  results_expiry = 'y',  // y expires(8) token                -> "" until the package is deleted
  // Distribution (outbox/forwards.hpp). An output_ref is component(workspace) component(name).
  output = 'u',          // u output_ref                      -> the output (configuration and queue state)
  forward_queued = 'j',  // j output_ref seq(8)               -> a forward waiting for its batch
  forward_batch = 'v',   // v output_ref seq(8)               -> a batch (claimed, retrying or dead)
  forward_due = 'a',     // a due(8) kind(1) output_ref [seq(8)] -> "" (a queue's batch window; a
                         //                                      batch's attempt or lease expiry)
  // Schema 1's outbox (o due(8) ref history_index url_index -> url, body): engine::open moves it
  // to the three tables above; a schema-2 store holds none.
  outbox_v1 = 'o',
  // Not the engine's own: the protocol layer's workspace directory (engine/api/workspaces.cpp)
  // shares the store, and its table is reserved here so no engine table ever takes its byte.
  workspace = 'w',     // w api_key                           -> the workspace's id and secret hash
  // Not the engine's own either: the subject-data store (engine/subject/, docs/subject-data.md)
  // may share the store, and its tables are reserved here for the same reason.
  subject_profile = 'p',   // p ws mpid(8)                    -> the profile (attributes, identities)
  subject_identity = 'i',  // i ws type(1) norm_value mpid(8) -> "" (the identity index)
  subject_event = 'e',     // e ws mpid(8) seq(8)             -> one event (JSON)
  subject_config = 's',    // s ws                            -> the workspace's identity configuration
  subject_key = 'h',       // h                               -> the erasure receipts' hash key
  subject_tombstone = 'd', // d ws mpid(8)                    -> the erasure receipt of an erased profile
};

// The version of the key schema and value formats, stored under schema_key(). engine::open
// upgrades a store of version 1 (outbox_v1), 2 (before fulfilment tasks) or 3 (before
// distribution) in place; any other version is refused.
inline constexpr char schema_version = 4;
inline constexpr char schema_version_3 = 3;
inline constexpr char schema_version_2 = 2;
inline constexpr char schema_version_1 = 1;

// Strings up to this many bytes are stored in keys as they are; longer ones as their SHA-256.
inline constexpr std::size_t max_inline_component = 64;
inline constexpr unsigned char hashed_component = 0xFF;

void append_component(std::string& key, std::string_view s);

// The encoded size of the component at the front of `encoded`, or 0 if it is malformed.
std::size_t component_size(std::string_view encoded) noexcept;

// A request's reference: component(workspace) component(subject_request_id). The suffix of its
// record and timer keys, and part of its callback keys.
std::string request_ref(std::string_view workspace, std::string_view id);

// True iff ref is exactly two well-formed components.
bool is_request_ref(std::string_view ref) noexcept;

std::string schema_key();
// m "results-key" -> the 32 random bytes results tokens are an HMAC under.
std::string results_key_key();
std::string request_key(std::string_view ref);
std::string conflict_key(std::string_view workspace, request_type type, const sha256_digest& canonical_digest);
std::string group_count_key(std::string_view workspace, std::string_view group_id);
// The prefix of every member key of one group; member keys order by seq (submission order).
std::string group_members_prefix(std::string_view workspace, std::string_view group_id);
std::string group_member_key(std::string_view members_prefix, std::uint16_t seq);
std::string timer_key(timestamp due, std::string_view ref);
// A callback's position: the request, the index of its URL in status_callback_urls, and the
// index of the status it announces on the request's path (pending 0, in_progress/cancelled 1,
// completed 2). The entries of one (ref, url_index), its chain, sort in status order.
struct callback_position {
  std::string_view ref;
  std::uint8_t url_index;
  std::uint8_t history_index;
};
std::string callback_key(const callback_position& at);
std::string callback_chain_prefix(std::string_view ref, std::uint8_t url_index);
std::string callback_due_key(timestamp due, const callback_position& at);
std::string callback_dead_key(const callback_position& at);
// Schema 1 only (the migration reads it; tests write it).
std::string outbox_v1_key(timestamp due, std::string_view ref, std::uint8_t history_index, std::uint8_t url_index);

std::string fulfilment_key(std::string_view ref);
std::string fulfilment_due_key(timestamp due, std::string_view ref);
std::string results_key(std::string_view token);
std::string results_expiry_key(timestamp expires, std::string_view token);

// The first byte of every key of a table, as a scan prefix.
std::string prefix(table t);

void append_time(std::string& key, timestamp t);
// REQUIRES: bytes.size() >= 8.
timestamp read_time(std::string_view bytes) noexcept;

struct timer_key_parts {
  timestamp due;
  std::string_view ref;
};
// Splits a timer key; nullopt iff it is not one.
std::optional<timer_key_parts> parse_timer_key(std::string_view key) noexcept;

// Split a callback, callback_due or callback_dead key (the views point into `key`); nullopt iff
// it is not one of that table.
std::optional<callback_position> parse_callback_key(std::string_view key) noexcept;
std::optional<callback_position> parse_callback_dead_key(std::string_view key) noexcept;
struct callback_due_parts {
  timestamp due;
  callback_position at;
};
std::optional<callback_due_parts> parse_callback_due_key(std::string_view key) noexcept;

// An output's reference: the suffix of its output, queue, batch and due keys.
std::string output_ref(std::string_view workspace, std::string_view name);
std::string output_key(std::string_view output_ref);
std::string forward_queued_key(std::string_view output_ref, std::uint64_t seq);
std::string forward_batch_key(std::string_view output_ref, std::uint64_t seq);
// Every queued forward, or every batch, of one output, in seq order (scan prefixes).
std::string forward_queue_prefix(std::string_view output_ref);
std::string forward_batches_prefix(std::string_view output_ref);
// The outputs of one workspace (a scan prefix).
std::string outputs_prefix(std::string_view workspace);
enum class forward_due_kind : char { queue = 'Q', batch = 'B' };
// REQUIRES: seq present iff kind == batch.
std::string forward_due_key(timestamp due, forward_due_kind kind, std::string_view output_ref,
                            std::optional<std::uint64_t> seq);
struct forward_due_parts {
  timestamp due;
  forward_due_kind kind;
  std::string_view output_ref;
  std::optional<std::uint64_t> seq;
};
std::optional<forward_due_parts> parse_forward_due_key(std::string_view key) noexcept;
struct forward_batch_parts {
  std::string_view output_ref;
  std::uint64_t seq;
};
std::optional<forward_batch_parts> parse_forward_batch_key(std::string_view key) noexcept;

// Split a fulfilment_due or results_expiry key (the views point into `key`); nullopt iff it is
// not one.
struct fulfilment_due_parts {
  timestamp due;
  std::string_view ref;
};
std::optional<fulfilment_due_parts> parse_fulfilment_due_key(std::string_view key) noexcept;
struct results_expiry_parts {
  timestamp expires;
  std::string_view token;
};
std::optional<results_expiry_parts> parse_results_expiry_key(std::string_view key) noexcept;

struct outbox_v1_key_parts {
  timestamp due;
  std::string_view ref;
  std::uint8_t history_index;
  std::uint8_t url_index;
};
// Splits a schema-1 outbox key; nullopt iff it is not one.
std::optional<outbox_v1_key_parts> parse_outbox_v1_key(std::string_view key) noexcept;

}  // namespace opendsr::detail::keys
