#include "store/keys.hpp"

#include <opendsr/storage.hpp>

namespace opendsr::detail::keys {
namespace {

constexpr std::size_t time_size = 8;
constexpr std::size_t max_component_size = 1 + max_inline_component;

// The callback due key is the longest: table, time, a ref of two components, two index bytes.
constexpr std::size_t max_ref_size = 2 * max_component_size;
static_assert(1 + time_size + max_ref_size + 2 <= storage::max_key_size, "every key must fit");
static_assert(1 + time_size + 1 + max_ref_size + 8 <= storage::max_key_size, "every key must fit");

void append_u64(std::string& key, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) key += static_cast<char>((v >> shift) & 0xFF);
}

std::uint64_t read_u64(std::string_view bytes) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[i]);
  return v;
}

// The size of the two-component reference (a request's or an output's) at the front of
// `encoded`, or 0 if it is malformed.
std::size_t ref_size(std::string_view encoded) noexcept {
  const std::size_t first = component_size(encoded);
  if (first == 0) return 0;
  const std::size_t second = component_size(encoded.substr(first));
  return second == 0 ? 0 : first + second;
}

}  // namespace

void append_component(std::string& key, std::string_view s) {
  if (s.size() <= max_inline_component) {
    key += static_cast<char>(s.size());
    key += s;
  } else {
    key += static_cast<char>(hashed_component);
    key += as_bytes(sha256(s));
  }
}

std::size_t component_size(std::string_view encoded) noexcept {
  if (encoded.empty()) return 0;
  const auto head = static_cast<unsigned char>(encoded[0]);
  const std::size_t size = head == hashed_component ? 1 + std::tuple_size_v<sha256_digest>
                           : head <= max_inline_component ? 1 + std::size_t{head}
                                                          : 0;
  return size <= encoded.size() ? size : 0;
}

std::string request_ref(std::string_view workspace, std::string_view id) {
  std::string ref;
  append_component(ref, workspace);
  append_component(ref, id);
  return ref;
}

bool is_request_ref(std::string_view ref) noexcept {
  const std::size_t size = ref_size(ref);
  return size != 0 && size == ref.size();
}

std::string output_ref(std::string_view workspace, std::string_view name) { return request_ref(workspace, name); }

std::string output_key(std::string_view output_ref) { return prefix(table::output).append(output_ref); }

std::string forward_queue_prefix(std::string_view output_ref) { return prefix(table::forward_queued).append(output_ref); }

std::string forward_batches_prefix(std::string_view output_ref) { return prefix(table::forward_batch).append(output_ref); }

std::string forward_queued_key(std::string_view output_ref, std::uint64_t seq) {
  std::string key = forward_queue_prefix(output_ref);
  append_u64(key, seq);
  return key;
}

std::string forward_batch_key(std::string_view output_ref, std::uint64_t seq) {
  std::string key = forward_batches_prefix(output_ref);
  append_u64(key, seq);
  return key;
}

std::string outputs_prefix(std::string_view workspace) {
  std::string key = prefix(table::output);
  append_component(key, workspace);
  return key;
}

std::string forward_due_key(timestamp due, forward_due_kind kind, std::string_view output_ref,
                            std::optional<std::uint64_t> seq) {
  std::string key = prefix(table::forward_due);
  append_time(key, due);
  key += static_cast<char>(kind);
  key += output_ref;
  if (seq) append_u64(key, *seq);
  return key;
}

std::optional<forward_due_parts> parse_forward_due_key(std::string_view key) noexcept {
  if (key.size() < 1 + time_size + 1 || key[0] != static_cast<char>(table::forward_due)) return std::nullopt;
  const auto kind = static_cast<forward_due_kind>(key[1 + time_size]);
  const std::string_view tail = key.substr(2 + time_size);
  const std::size_t ref = ref_size(tail);
  if (ref == 0) return std::nullopt;
  forward_due_parts parts{read_time(key.substr(1)), kind, tail.substr(0, ref), std::nullopt};
  if (kind == forward_due_kind::queue && tail.size() == ref) return parts;
  if (kind == forward_due_kind::batch && tail.size() == ref + 8) {
    parts.seq = read_u64(tail.substr(ref));
    return parts;
  }
  return std::nullopt;
}

std::optional<forward_batch_parts> parse_forward_batch_key(std::string_view key) noexcept {
  if (key.empty() || key[0] != static_cast<char>(table::forward_batch)) return std::nullopt;
  const std::string_view tail = key.substr(1);
  const std::size_t ref = ref_size(tail);
  if (ref == 0 || tail.size() != ref + 8) return std::nullopt;
  return forward_batch_parts{tail.substr(0, ref), read_u64(tail.substr(ref))};
}

std::string schema_key() { return prefix(table::meta) + "schema"; }

std::string results_key_key() { return prefix(table::meta) + "results-key"; }

std::string fulfilment_key(std::string_view ref) { return prefix(table::fulfilment).append(ref); }

std::string fulfilment_due_key(timestamp due, std::string_view ref) {
  std::string key = prefix(table::fulfilment_due);
  append_time(key, due);
  key += ref;
  return key;
}

std::string results_key(std::string_view token) { return prefix(table::results).append(token); }

std::string results_expiry_key(timestamp expires, std::string_view token) {
  std::string key = prefix(table::results_expiry);
  append_time(key, expires);
  key += token;
  return key;
}

std::string request_key(std::string_view ref) { return prefix(table::request).append(ref); }

std::string conflict_key(std::string_view workspace, request_type type, const sha256_digest& canonical_digest) {
  std::string key = prefix(table::conflict);
  append_component(key, workspace);
  key += static_cast<char>(type);
  key += as_bytes(canonical_digest);
  return key;
}

std::string group_count_key(std::string_view workspace, std::string_view group_id) {
  std::string key = prefix(table::group_count);
  append_component(key, workspace);
  append_component(key, group_id);
  return key;
}

std::string group_members_prefix(std::string_view workspace, std::string_view group_id) {
  std::string key = prefix(table::group_member);
  append_component(key, workspace);
  append_component(key, group_id);
  return key;
}

std::string group_member_key(std::string_view members_prefix, std::uint16_t seq) {
  std::string key(members_prefix);
  key += static_cast<char>(seq >> 8);
  key += static_cast<char>(seq & 0xFF);
  return key;
}

void append_time(std::string& key, timestamp t) {
  const auto u = static_cast<std::uint64_t>(t.time_since_epoch().count()) ^ (std::uint64_t{1} << 63);
  for (int shift = 56; shift >= 0; shift -= 8) key += static_cast<char>(u >> shift);
}

timestamp read_time(std::string_view bytes) noexcept {
  std::uint64_t u = 0;
  for (std::size_t i = 0; i < time_size; ++i) u = u << 8 | static_cast<unsigned char>(bytes[i]);
  return timestamp(std::chrono::microseconds(static_cast<std::int64_t>(u ^ (std::uint64_t{1} << 63))));
}

std::string timer_key(timestamp due, std::string_view ref) {
  std::string key = prefix(table::timer);
  append_time(key, due);
  key += ref;
  return key;
}

namespace {

std::string position_key(table t, std::optional<timestamp> due, const callback_position& at) {
  std::string key = prefix(t);
  if (due) append_time(key, *due);
  key += at.ref;
  key += static_cast<char>(at.url_index);
  key += static_cast<char>(at.history_index);
  return key;
}

// Splits "ref url_index history_index" (the tail of the callback keys).
std::optional<callback_position> parse_position(std::string_view tail) noexcept {
  if (tail.size() < 2) return std::nullopt;
  const std::string_view ref = tail.substr(0, tail.size() - 2);
  if (!is_request_ref(ref)) return std::nullopt;
  return callback_position{ref, static_cast<std::uint8_t>(tail[tail.size() - 2]),
                           static_cast<std::uint8_t>(tail[tail.size() - 1])};
}

}  // namespace

std::string callback_key(const callback_position& at) { return position_key(table::callback, std::nullopt, at); }

std::string callback_chain_prefix(std::string_view ref, std::uint8_t url_index) {
  std::string key = prefix(table::callback);
  key += ref;
  key += static_cast<char>(url_index);
  return key;
}

std::string callback_due_key(timestamp due, const callback_position& at) {
  return position_key(table::callback_due, due, at);
}

std::string callback_dead_key(const callback_position& at) {
  return position_key(table::callback_dead, std::nullopt, at);
}

std::optional<callback_position> parse_callback_key(std::string_view key) noexcept {
  if (key.empty() || key[0] != static_cast<char>(table::callback)) return std::nullopt;
  return parse_position(key.substr(1));
}

std::optional<callback_position> parse_callback_dead_key(std::string_view key) noexcept {
  if (key.empty() || key[0] != static_cast<char>(table::callback_dead)) return std::nullopt;
  return parse_position(key.substr(1));
}

std::optional<callback_due_parts> parse_callback_due_key(std::string_view key) noexcept {
  if (key.size() < 1 + time_size || key[0] != static_cast<char>(table::callback_due)) return std::nullopt;
  auto at = parse_position(key.substr(1 + time_size));
  if (!at) return std::nullopt;
  return callback_due_parts{read_time(key.substr(1)), *at};
}

std::string outbox_v1_key(timestamp due, std::string_view ref, std::uint8_t history_index, std::uint8_t url_index) {
  std::string key = prefix(table::outbox_v1);
  append_time(key, due);
  key += ref;
  key += static_cast<char>(history_index);
  key += static_cast<char>(url_index);
  return key;
}

std::string prefix(table t) { return std::string(1, static_cast<char>(t)); }

std::optional<timer_key_parts> parse_timer_key(std::string_view key) noexcept {
  if (key.size() < 1 + time_size || key[0] != static_cast<char>(table::timer)) return std::nullopt;
  std::string_view ref = key.substr(1 + time_size);
  if (!is_request_ref(ref)) return std::nullopt;
  return timer_key_parts{read_time(key.substr(1)), ref};
}

std::optional<fulfilment_due_parts> parse_fulfilment_due_key(std::string_view key) noexcept {
  if (key.size() < 1 + time_size || key[0] != static_cast<char>(table::fulfilment_due)) return std::nullopt;
  std::string_view ref = key.substr(1 + time_size);
  if (!is_request_ref(ref)) return std::nullopt;
  return fulfilment_due_parts{read_time(key.substr(1)), ref};
}

std::optional<results_expiry_parts> parse_results_expiry_key(std::string_view key) noexcept {
  if (key.size() <= 1 + time_size || key[0] != static_cast<char>(table::results_expiry)) return std::nullopt;
  return results_expiry_parts{read_time(key.substr(1)), key.substr(1 + time_size)};
}

std::optional<outbox_v1_key_parts> parse_outbox_v1_key(std::string_view key) noexcept {
  if (key.size() < 1 + time_size + 2 || key[0] != static_cast<char>(table::outbox_v1)) return std::nullopt;
  std::string_view ref = key.substr(1 + time_size, key.size() - 1 - time_size - 2);
  if (!is_request_ref(ref)) return std::nullopt;
  return outbox_v1_key_parts{read_time(key.substr(1)), ref, static_cast<std::uint8_t>(key[key.size() - 2]),
                          static_cast<std::uint8_t>(key[key.size() - 1])};
}

}  // namespace opendsr::detail::keys
