#include "outbox/callbacks.hpp"

#include "outbox/backoff.hpp"

#include "render/documents.hpp"
#include "store/codec.hpp"

#include <algorithm>

namespace opendsr::detail {
namespace {

constexpr std::uint8_t callback_format = 2;
constexpr std::uint8_t outbox_v1_format = 1;

enum flag : std::uint8_t { has_scheduled = 1, is_dead = 2, has_last_attempt = 4 };

error corrupt(std::string what) { return error(errc::storage_corrupt, std::move(what)); }

result<std::optional<callback_entry>> load_entry(read_transaction& txn, std::string_view key) {
  auto stored = txn.get(key);
  if (!stored) return std::move(stored).error();
  if (!*stored) return std::optional<callback_entry>();
  auto e = decode_callback_entry(**stored);
  if (!e) return std::move(e).error();
  return std::optional<callback_entry>(std::move(*e));
}

// The position of the entry stored under a callback key.
result<keys::callback_position> position_of(std::string_view entry_key) {
  auto at = keys::parse_callback_key(entry_key);
  if (!at) return error(errc::invalid_argument, "Not a callback entry key.");
  return *at;
}

std::string_view owner_of(std::string_view lease) { return lease.substr(0, lease.find('\n')); }

// A chain head found through its due key, checked to be scheduled there.
struct scheduled_entry {
  keys::callback_due_parts due;  // views into the due key
  std::string entry_key;
  callback_entry entry;
};

result<scheduled_entry> load_scheduled(read_transaction& txn, std::string_view due_key) {
  const auto parts = keys::parse_callback_due_key(due_key);
  if (!parts) return corrupt("A stored callback due key is malformed.");
  std::string entry_key = keys::callback_key(parts->at);
  auto e = load_entry(txn, entry_key);
  if (!e) return std::move(e).error();
  if (!*e || (*e)->scheduled != parts->due) return corrupt("A callback due entry disagrees with its callback.");
  return scheduled_entry{*parts, std::move(entry_key), std::move(**e)};
}

// Moves a chain head's due key to `due` and stores the entry (with what the caller changed).
result<void> reschedule(write_transaction& txn, scheduled_entry& s, timestamp due) {
  OPENDSR_TRY(txn.erase(keys::callback_due_key(s.due.due, s.due.at)));
  s.entry.scheduled = due;
  OPENDSR_TRY(txn.put(keys::callback_due_key(due, s.due.at), {}));
  return txn.put(s.entry_key, encode_callback_entry(s.entry));
}

bool matches(std::string_view ref, std::optional<std::string_view> workspace, std::optional<std::string_view> id) {
  if (!workspace) return true;
  std::string want;
  keys::append_component(want, *workspace);
  if (id) keys::append_component(want, *id);
  return ref.starts_with(want);
}

// Splits a ref into its workspace and id. A component stored hashed (over 64 bytes) cannot be
// read back; the record holds the real strings.
result<request_record> record_of(read_transaction& txn, std::string_view ref) {
  auto stored = txn.get(keys::request_key(ref));
  if (!stored) return std::move(stored).error();
  if (!*stored) return corrupt("A callback names a request that is not stored.");
  return decode_record(**stored);
}

std::string_view status_in(std::string_view body) {
  for (request_status s : {request_status::pending, request_status::in_progress, request_status::completed,
                           request_status::cancelled}) {
    std::string needle = "\"request_status\":\"";
    needle += to_string(s);
    needle += '"';
    if (body.find(needle) != std::string_view::npos) return to_string(s);
  }
  return "unknown";
}

}  // namespace

std::string encode_callback_entry(const callback_entry& e) {
  std::string out;
  out.reserve(48 + e.url.size() + e.body.size() + e.signature.size() + e.lease.size() + e.last_error.size());
  byte_writer w(out);
  w.u8(callback_format);
  w.u8(static_cast<std::uint8_t>((e.scheduled ? has_scheduled : 0) | (e.dead ? is_dead : 0) |
                                 (e.last_attempt ? has_last_attempt : 0)));
  w.time(e.first_due);
  w.time(e.retry_at);
  if (e.scheduled) w.time(*e.scheduled);
  if (e.last_attempt) w.time(*e.last_attempt);
  w.varint(e.attempts);
  w.bytes(e.url);
  w.bytes(e.lease);
  w.bytes(e.signature);
  w.bytes(e.last_error);
  w.fixed(e.body);
  return out;
}

result<callback_entry> decode_callback_entry(std::string_view bytes) {
  byte_reader in(bytes);
  callback_entry e;
  const std::uint8_t format = in.u8();
  const std::uint8_t flags = in.u8();
  e.first_due = in.time();
  e.retry_at = in.time();
  if (flags & has_scheduled) e.scheduled = in.time();
  if (flags & has_last_attempt) e.last_attempt = in.time();
  e.dead = flags & is_dead;
  const std::uint64_t attempts = in.varint();
  e.url = in.bytes();
  e.lease = in.bytes();
  e.signature = in.bytes();
  e.last_error = in.bytes();
  e.body = in.rest();
  if (!in.ok() || format != callback_format || flags > 7 || attempts > UINT32_MAX || (e.dead && e.scheduled))
    return corrupt("A stored callback entry is damaged.");
  e.attempts = static_cast<std::uint32_t>(attempts);
  return e;
}

result<void> queue_callbacks(write_transaction& txn, const request_record& r, std::string_view ref,
                             std::uint8_t history_index, timestamp due, std::string_view processor_domain) {
  for (std::size_t i = 0; i < r.callback_urls.size(); ++i) {
    const auto url_index = static_cast<std::uint8_t>(i);
    const keys::callback_position at{ref, url_index, history_index};
    const std::string key = keys::callback_key(at);
    if (history_index == UINT8_MAX) {  // the numbering is spent: the newest body replaces the last
      auto replaced = load_entry(txn, key);
      if (!replaced) return std::move(replaced).error();
      if (*replaced && (*replaced)->scheduled) OPENDSR_TRY(txn.erase(keys::callback_due_key(*(*replaced)->scheduled, at)));
      if (*replaced && (*replaced)->dead) OPENDSR_TRY(txn.erase(keys::callback_dead_key(at)));
    }
    callback_entry e;
    e.url = r.callback_urls[i];
    e.body = render_callback(r, e.url, processor_domain);
    e.first_due = due;
    OPENDSR_TRY(txn.put(key, encode_callback_entry(e)));
    OPENDSR_TRY(settle_chain(txn, ref, url_index, due));
  }
  return {};
}

result<void> settle_chain(write_transaction& txn, std::string_view ref, std::uint8_t url_index, timestamp now) {
  std::vector<std::pair<std::string, callback_entry>> chain;
  std::optional<error> damaged;
  OPENDSR_TRY(txn.scan(keys::callback_chain_prefix(ref, url_index), {}, [&](std::string_view key, std::string_view value) {
    auto e = decode_callback_entry(value);
    if (!e) return damaged = std::move(e).error(), false;
    chain.emplace_back(std::string(key), std::move(*e));
    return true;
  }));
  if (damaged) return std::move(*damaged);
  bool head_seen = false;
  for (auto& [key, e] : chain) {
    if (e.dead) continue;
    const bool head = !head_seen;
    head_seen = true;
    if (head == e.scheduled.has_value()) continue;
    const auto at = keys::parse_callback_key(key);
    if (!at) return corrupt("A stored callback key is malformed.");
    if (head) {
      e.scheduled = std::max({e.first_due, e.retry_at, now});
      OPENDSR_TRY(txn.put(keys::callback_due_key(*e.scheduled, *at), {}));
    } else {
      auto erased = txn.erase(keys::callback_due_key(*e.scheduled, *at));
      if (!erased) return std::move(erased).error();
      e.scheduled.reset();
    }
    OPENDSR_TRY(txn.put(key, encode_callback_entry(e)));
  }
  return {};
}

result<std::vector<claimed_callback>> claim_due_callbacks(write_transaction& txn, timestamp now, std::size_t max,
                                                          std::string_view lease, timestamp lease_expiry) {
  std::vector<std::string> due;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::callback_due), {}, [&](std::string_view key, std::string_view) {
    const auto parts = keys::parse_callback_due_key(key);
    if (parts && parts->due > now) return false;
    due.emplace_back(key);  // a malformed key is reported below
    return due.size() < max;
  }));
  std::vector<claimed_callback> claimed;
  claimed.reserve(due.size());
  for (const std::string& due_key : due) {
    auto s = load_scheduled(txn, due_key);
    if (!s) return std::move(s).error();
    s->entry.lease = lease;
    OPENDSR_TRY(reschedule(txn, *s, lease_expiry));
    auto r = record_of(txn, s->due.at.ref);
    if (!r) return std::move(r).error();
    callback_entry& entry = s->entry;
    claimed.push_back({std::move(r->workspace), std::move(r->subject_request_id), std::move(entry.url),
                       std::move(entry.body), std::move(entry.signature), entry.attempts + 1, std::move(s->entry_key),
                       std::string(lease)});
  }
  return claimed;
}

result<void> record_callback_outcome(write_transaction& txn, const callback_delivery_policy& policy,
                                     const callback_outcome& outcome, timestamp now, callback_record_report& report) {
  auto at = position_of(outcome.entry_key);
  if (!at) return std::move(at).error();
  auto loaded = load_entry(txn, outcome.entry_key);
  if (!loaded) return std::move(loaded).error();
  if (!*loaded || (*loaded)->lease != outcome.lease || outcome.lease.empty()) {
    ++report.stale;  // delivered or reclaimed by another dispatcher after this lease expired
    return {};
  }
  callback_entry& e = **loaded;
  // A redrive of an earlier callback of its chain may have unscheduled it while it was in flight.
  if (e.scheduled) OPENDSR_TRY(txn.erase(keys::callback_due_key(*e.scheduled, *at)));
  e.scheduled.reset();
  e.lease.clear();
  if (outcome.delivered) {
    OPENDSR_TRY(txn.erase(outcome.entry_key));
    ++report.delivered;
    return settle_chain(txn, at->ref, at->url_index, now);
  }
  ++e.attempts;
  e.last_attempt = now;
  e.last_error = outcome.error.empty() ? "failed" : outcome.error;
  if (!outcome.signature.empty()) e.signature = outcome.signature;
  if (e.attempts >= policy.max_attempts || now - e.first_due >= policy.max_age) {
    e.dead = true;
    OPENDSR_TRY(txn.put(keys::callback_dead_key(*at), {}));
    OPENDSR_TRY(txn.put(outcome.entry_key, encode_callback_entry(e)));
    ++report.dead_lettered;
    return settle_chain(txn, at->ref, at->url_index, now);
  }
  e.retry_at = now + backoff({policy.min_retry_delay, policy.first_retry_delay, policy.max_retry_delay}, outcome.entry_key, e.attempts);
  OPENDSR_TRY(txn.put(outcome.entry_key, encode_callback_entry(e)));
  ++report.retried;
  return settle_chain(txn, at->ref, at->url_index, now);
}

result<std::size_t> release_callback_leases(write_transaction& txn, std::string_view owner, timestamp now) {
  std::vector<std::string> future;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::callback_due), {}, [&](std::string_view key, std::string_view) {
    const auto parts = keys::parse_callback_due_key(key);
    if (!parts || parts->due > now) future.emplace_back(key);
    return true;
  }));
  std::size_t released = 0;
  for (const std::string& due_key : future) {
    auto s = load_scheduled(txn, due_key);
    if (!s) return std::move(s).error();
    if (s->entry.lease.empty() || owner_of(s->entry.lease) != owner) continue;
    s->entry.lease.clear();
    OPENDSR_TRY(reschedule(txn, *s, now));
    ++released;
  }
  return released;
}

result<std::vector<dead_callback>> list_dead_callbacks(read_transaction& txn, std::optional<std::string_view> workspace,
                                                       std::optional<std::string_view> subject_request_id) {
  std::vector<std::string> dead_keys;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::callback_dead), {}, [&](std::string_view key, std::string_view) {
    dead_keys.emplace_back(key);
    return true;
  }));
  std::vector<dead_callback> out;
  for (const std::string& key : dead_keys) {
    const auto at = keys::parse_callback_dead_key(key);
    if (!at) return corrupt("A stored dead-letter key is malformed.");
    if (!matches(at->ref, workspace, subject_request_id)) continue;
    auto e = load_entry(txn, keys::callback_key(*at));
    if (!e) return std::move(e).error();
    if (!*e || !(*e)->dead) return corrupt("A dead letter names a callback that is not dead.");
    auto r = record_of(txn, at->ref);
    if (!r) return std::move(r).error();
    if (workspace && r->workspace != *workspace) continue;  // a hashed component matched by prefix only
    if (subject_request_id && r->subject_request_id != *subject_request_id) continue;
    out.push_back({std::move(r->workspace), std::move(r->subject_request_id), std::string(status_in((*e)->body)),
                   std::move((*e)->url), (*e)->attempts, std::move((*e)->last_error), (*e)->first_due,
                   (*e)->last_attempt.value_or((*e)->first_due)});
  }
  return out;
}

result<std::size_t> redrive_dead_callbacks(write_transaction& txn, std::optional<std::string_view> workspace,
                                           std::optional<std::string_view> subject_request_id, timestamp now) {
  std::vector<std::string> dead_keys;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::callback_dead), {}, [&](std::string_view key, std::string_view) {
    dead_keys.emplace_back(key);
    return true;
  }));
  std::size_t redriven = 0;
  for (const std::string& key : dead_keys) {
    const auto at = keys::parse_callback_dead_key(key);
    if (!at || !matches(at->ref, workspace, subject_request_id)) continue;
    auto r = record_of(txn, at->ref);
    if (!r) return std::move(r).error();
    if ((workspace && r->workspace != *workspace) || (subject_request_id && r->subject_request_id != *subject_request_id))
      continue;
    const std::string entry_key = keys::callback_key(*at);
    auto e = load_entry(txn, entry_key);
    if (!e) return std::move(e).error();
    if (!*e) return corrupt("A dead letter names a callback that is not stored.");
    (*e)->dead = false;
    (*e)->attempts = 0;
    (*e)->first_due = now;
    (*e)->retry_at = now;
    OPENDSR_TRY(txn.erase(key));
    OPENDSR_TRY(txn.put(entry_key, encode_callback_entry(**e)));
    OPENDSR_TRY(settle_chain(txn, at->ref, at->url_index, now));
    ++redriven;
  }
  return redriven;
}

result<callback_queue_stats> callback_stats(read_transaction& txn) {
  callback_queue_stats s;
  std::optional<error> damaged;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::callback), {}, [&](std::string_view, std::string_view value) {
    auto e = decode_callback_entry(value);
    if (!e) return damaged = std::move(e).error(), false;
    ++(e->dead ? s.dead : s.queued);
    return true;
  }));
  if (damaged) return std::move(*damaged);
  auto first = first_callback_due(txn);
  if (!first) return std::move(first).error();
  s.oldest_due = *first;
  return s;
}

result<std::optional<timestamp>> first_callback_due(read_transaction& txn) {
  std::optional<timestamp> due;
  bool malformed = false;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::callback_due), {}, [&](std::string_view key, std::string_view) {
    const auto parts = keys::parse_callback_due_key(key);
    if (parts) due = parts->due;
    malformed = !parts;
    return false;
  }));
  if (malformed) return corrupt("A stored callback due key is malformed.");
  return due;
}

std::string make_lease(std::string_view owner, std::uint64_t nonce) {
  std::string lease(owner);
  lease += '\n';
  lease += std::to_string(nonce);
  return lease;
}

result<std::size_t> migrate_outbox_v1(write_transaction& txn) {
  std::vector<std::pair<std::string, std::string>> old;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::outbox_v1), {}, [&](std::string_view key, std::string_view value) {
    old.emplace_back(key, value);
    return true;
  }));
  std::vector<std::pair<std::string, std::uint8_t>> chains;
  for (const auto& [key, value] : old) {
    const auto parts = keys::parse_outbox_v1_key(key);
    byte_reader in(value);
    const std::uint8_t format = in.u8();
    const std::string_view url = in.bytes();
    const std::string_view body = in.rest();
    if (!parts || !in.ok() || format != outbox_v1_format) return corrupt("A schema-1 outbox entry is damaged.");
    callback_entry e;
    e.url = url;
    e.body = body;
    e.first_due = parts->due;
    OPENDSR_TRY(txn.put(keys::callback_key({parts->ref, parts->url_index, parts->history_index}), encode_callback_entry(e)));
    OPENDSR_TRY(txn.erase(key));
    chains.emplace_back(std::string(parts->ref), parts->url_index);
  }
  std::sort(chains.begin(), chains.end());
  chains.erase(std::unique(chains.begin(), chains.end()), chains.end());
  for (const auto& [ref, url_index] : chains)
    OPENDSR_TRY(settle_chain(txn, ref, url_index, timestamp::min()));
  return old.size();
}

}  // namespace opendsr::detail
