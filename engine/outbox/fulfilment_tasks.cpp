#include "outbox/fulfilment_tasks.hpp"

#include "common/random_bytes.hpp"
#include "common/results_token.hpp"
#include "common/sha256.hpp"
#include "store/codec.hpp"
#include "store/keys.hpp"
#include "store/record.hpp"


namespace opendsr::detail {
namespace {

constexpr std::uint8_t task_format = 1;
constexpr std::size_t results_key_size = 32;

error corrupt(std::string what) { return error(errc::storage_corrupt, std::move(what)); }

std::string_view owner_of(std::string_view lease) { return lease.substr(0, lease.find('\n')); }

// Collects the parsed keys of a time-ordered index up to `now` (or all, without `now`).
template <class Parse>
result<void> scan_index(read_transaction& txn, keys::table t, std::optional<timestamp> now, std::size_t max,
                        std::string_view what, Parse&& keep) {
  bool malformed = false;
  std::size_t n = 0;
  OPENDSR_TRY(txn.scan(keys::prefix(t), {}, [&](std::string_view key, std::string_view) {
    const bool more = keep(key, now, malformed);
    return !malformed && more && ++n < max;
  }));
  if (malformed) return corrupt("A stored " + std::string(what) + " key is malformed.");
  return {};
}

}  // namespace

std::string encode_fulfilment_task(const fulfilment_task& t) {
  std::string out;
  byte_writer w(out);
  w.u8(task_format);
  w.time(t.queued);
  w.time(t.due);
  w.varint(t.attempts);
  w.bytes(t.lease);
  w.bytes(t.last_error);
  return out;
}

result<fulfilment_task> decode_fulfilment_task(std::string_view bytes) {
  byte_reader in(bytes);
  fulfilment_task t;
  const std::uint8_t format = in.u8();
  t.queued = in.time();
  t.due = in.time();
  const std::uint64_t attempts = in.varint();
  t.lease = in.bytes();
  t.last_error = in.bytes();
  if (!in.ok() || !in.at_end() || format != task_format || attempts > UINT32_MAX)
    return corrupt("A stored fulfilment task is malformed.");
  t.attempts = static_cast<std::uint32_t>(attempts);
  return t;
}

result<void> queue_fulfilment(write_transaction& txn, std::string_view ref, timestamp now) {
  const fulfilment_task t{now, now, 0, {}, {}};
  OPENDSR_TRY(txn.put(keys::fulfilment_key(ref), encode_fulfilment_task(t)));
  return txn.put(keys::fulfilment_due_key(now, ref), {});
}

result<std::optional<fulfilment_task>> load_fulfilment(read_transaction& txn, std::string_view ref) {
  auto stored = txn.get(keys::fulfilment_key(ref));
  if (!stored) return std::move(stored).error();
  if (!*stored) return std::optional<fulfilment_task>();
  auto t = decode_fulfilment_task(**stored);
  if (!t) return std::move(t).error();
  return std::optional<fulfilment_task>(std::move(*t));
}

result<void> drop_fulfilment(write_transaction& txn, std::string_view ref) {
  auto t = load_fulfilment(txn, ref);
  if (!t) return std::move(t).error();
  if (!*t) return {};
  auto erased = txn.erase(keys::fulfilment_due_key((*t)->due, ref));
  if (!erased) return std::move(erased).error();
  if (!*erased) return corrupt("A fulfilment task's due entry is missing.");
  auto removed = txn.erase(keys::fulfilment_key(ref));
  if (!removed) return std::move(removed).error();
  return {};
}

result<void> store_fulfilment(write_transaction& txn, std::string_view ref, const fulfilment_task& t, timestamp old_due) {
  if (old_due != t.due) {
    auto erased = txn.erase(keys::fulfilment_due_key(old_due, ref));
    if (!erased) return std::move(erased).error();
    if (!*erased) return corrupt("A fulfilment task's due entry is missing.");
    OPENDSR_TRY(txn.put(keys::fulfilment_due_key(t.due, ref), {}));
  }
  return txn.put(keys::fulfilment_key(ref), encode_fulfilment_task(t));
}

result<std::vector<std::string>> due_fulfilments(read_transaction& txn, timestamp now, std::size_t max) {
  std::vector<std::string> refs;
  if (max == 0) return refs;
  OPENDSR_TRY(scan_index(txn, keys::table::fulfilment_due, now, max, "fulfilment due",
                         [&](std::string_view key, std::optional<timestamp> until, bool& malformed) {
                           const auto parts = keys::parse_fulfilment_due_key(key);
                           if (!parts) return !(malformed = true);
                           if (parts->due > *until) return false;
                           refs.emplace_back(parts->ref);
                           return true;
                         }));
  return refs;
}

result<std::size_t> release_fulfilment_leases(write_transaction& txn, std::string_view owner, timestamp now) {
  std::vector<std::string> refs;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::fulfilment), {}, [&](std::string_view key, std::string_view value) {
    auto t = decode_fulfilment_task(value);
    if (!t || (!t->lease.empty() && owner_of(t->lease) == owner)) refs.emplace_back(key.substr(1));
    return true;
  }));
  for (const std::string& ref : refs) {
    auto t = load_fulfilment(txn, ref);
    if (!t) return std::move(t).error();
    const timestamp old_due = (*t)->due;
    (*t)->lease.clear();
    (*t)->due = now;
    OPENDSR_TRY(store_fulfilment(txn, ref, **t, old_due));
  }
  return refs.size();
}

result<std::vector<fulfilment_task_info>> list_fulfilments(read_transaction& txn) {
  std::vector<std::string> refs;
  OPENDSR_TRY(scan_index(txn, keys::table::fulfilment_due, std::nullopt, SIZE_MAX, "fulfilment due",
                         [&](std::string_view key, std::optional<timestamp>, bool& malformed) {
                           const auto parts = keys::parse_fulfilment_due_key(key);
                           if (!parts) return !(malformed = true);
                           refs.emplace_back(parts->ref);
                           return true;
                         }));
  std::vector<fulfilment_task_info> out;
  for (const std::string& ref : refs) {
    auto t = load_fulfilment(txn, ref);
    if (!t) return std::move(t).error();
    if (!*t) return corrupt("A fulfilment due entry names no task.");
    auto stored = txn.get(keys::request_key(ref));
    if (!stored) return std::move(stored).error();
    if (!*stored) return corrupt("A fulfilment task names a request that is not stored.");
    auto r = decode_record(**stored);
    if (!r) return std::move(r).error();
    out.push_back({r->workspace, r->subject_request_id, r->type, (*t)->queued, (*t)->due, !(*t)->lease.empty(),
                   (*t)->attempts, (*t)->last_error});
  }
  return out;
}

result<std::optional<timestamp>> first_fulfilment_due(read_transaction& txn) {
  std::optional<timestamp> due;
  OPENDSR_TRY(scan_index(txn, keys::table::fulfilment_due, std::nullopt, 1, "fulfilment due",
                         [&](std::string_view key, std::optional<timestamp>, bool& malformed) {
                           const auto parts = keys::parse_fulfilment_due_key(key);
                           if (!parts) return !(malformed = true);
                           due = parts->due;
                           return false;
                         }));
  return due;
}

result<std::string> ensure_results_key(write_transaction& txn) {
  auto stored = txn.get(keys::results_key_key());
  if (!stored) return std::move(stored).error();
  if (*stored) {
    if ((*stored)->size() != results_key_size) return corrupt("The stored results key is malformed.");
    return std::string(**stored);
  }
  const std::string key = random_bytes(results_key_size);
  OPENDSR_TRY(txn.put(keys::results_key_key(), key));
  return key;
}

std::string results_token_of(std::string_view results_key, std::string_view ref) {
  const sha256_digest mac = hmac_sha256(results_key, ref);
  return encode_results_token(std::span(mac).first<results_token_bytes>());
}

result<void> index_results(write_transaction& txn, std::string_view token, std::string_view ref, timestamp expires) {
  std::string value;
  keys::append_time(value, expires);
  value += ref;
  OPENDSR_TRY(txn.put(keys::results_key(token), value));
  return txn.put(keys::results_expiry_key(expires, token), {});
}

result<std::optional<results_entry>> find_results(read_transaction& txn, std::string_view token) {
  auto stored = txn.get(keys::results_key(token));
  if (!stored) return std::move(stored).error();
  if (!*stored) return std::optional<results_entry>();
  const std::string_view value = **stored;
  if (value.size() < 8 || !keys::is_request_ref(value.substr(8))) return corrupt("A stored results entry is malformed.");
  return std::optional<results_entry>(results_entry{std::string(value.substr(8)), keys::read_time(value)});
}

result<std::vector<std::string>> expired_results(read_transaction& txn, timestamp now, std::size_t max) {
  std::vector<std::string> tokens;
  if (max == 0) return tokens;
  OPENDSR_TRY(scan_index(txn, keys::table::results_expiry, now, max, "results expiry",
                         [&](std::string_view key, std::optional<timestamp> until, bool& malformed) {
                           const auto parts = keys::parse_results_expiry_key(key);
                           if (!parts) return !(malformed = true);
                           if (parts->expires > *until) return false;
                           tokens.emplace_back(parts->token);
                           return true;
                         }));
  return tokens;
}

result<bool> forget_expiry(write_transaction& txn, std::string_view token) {
  auto entry = find_results(txn, token);
  if (!entry) return std::move(entry).error();
  if (!*entry) return false;
  return txn.erase(keys::results_expiry_key((*entry)->expires, token));
}

result<std::optional<timestamp>> first_results_expiry(read_transaction& txn) {
  std::optional<timestamp> due;
  OPENDSR_TRY(scan_index(txn, keys::table::results_expiry, std::nullopt, 1, "results expiry",
                         [&](std::string_view key, std::optional<timestamp>, bool& malformed) {
                           const auto parts = keys::parse_results_expiry_key(key);
                           if (!parts) return !(malformed = true);
                           due = parts->expires;
                           return false;
                         }));
  return due;
}

}  // namespace opendsr::detail
