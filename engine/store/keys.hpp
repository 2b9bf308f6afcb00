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
  outbox = 'o',        // o due(8) ref history_index url_index -> a callback to send
  // Not the engine's own: the protocol layer's workspace directory (engine/api/workspaces.cpp)
  // shares the store, and its table is reserved here so no engine table ever takes its byte.
  workspace = 'w',     // w api_key                           -> the workspace's id and secret hash
};

// The version of the key schema and value formats, stored under schema_key(). A store holding
// another version is refused.
inline constexpr char schema_version = 1;

// Strings up to this many bytes are stored in keys as they are; longer ones as their SHA-256.
inline constexpr std::size_t max_inline_component = 64;
inline constexpr unsigned char hashed_component = 0xFF;

void append_component(std::string& key, std::string_view s);

// The encoded size of the component at the front of `encoded`, or 0 if it is malformed.
std::size_t component_size(std::string_view encoded) noexcept;

// A request's reference: component(workspace) component(subject_request_id). The suffix of its
// record, timer and outbox keys.
std::string request_ref(std::string_view workspace, std::string_view id);

// True iff ref is exactly two well-formed components.
bool is_request_ref(std::string_view ref) noexcept;

std::string schema_key();
std::string request_key(std::string_view ref);
std::string conflict_key(std::string_view workspace, request_type type, const sha256_digest& canonical_digest);
std::string group_count_key(std::string_view workspace, std::string_view group_id);
// The prefix of every member key of one group; member keys order by seq (submission order).
std::string group_members_prefix(std::string_view workspace, std::string_view group_id);
std::string group_member_key(std::string_view members_prefix, std::uint16_t seq);
std::string timer_key(timestamp due, std::string_view ref);
std::string outbox_key(timestamp due, std::string_view ref, std::uint8_t history_index, std::uint8_t url_index);

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

struct outbox_key_parts {
  timestamp due;
  std::string_view ref;
  std::uint8_t history_index;
  std::uint8_t url_index;
};
// Splits an outbox key; nullopt iff it is not one.
std::optional<outbox_key_parts> parse_outbox_key(std::string_view key) noexcept;

}  // namespace opendsr::detail::keys
