#include "outbox/forwards.hpp"

#include <opendsr/outbound_policy.hpp>

#include "common/json_text.hpp"
#include "outbox/backoff.hpp"
#include "store/codec.hpp"
#include "store/keys.hpp"
#include "store/record.hpp"

#include <algorithm>
#include <set>

namespace opendsr::detail {
namespace {

constexpr std::uint8_t output_format = 1;
constexpr std::uint8_t queued_format = 1;
constexpr std::uint8_t batch_format = 1;
constexpr std::size_t max_output_name = 200;

using due_kind = keys::forward_due_kind;

error corrupt(std::string what) { return error(errc::storage_corrupt, std::move(what)); }
error refused(std::string what) { return error(errc::invalid_request, std::move(what)); }

// ---- stored values ----

struct output_record {
  std::string workspace;
  std::string name;
  std::string partner;
  std::string domain;
  bool active = true;
  partner_settings config;
  // Derived from the configured partner when the configuration was last set.
  std::uint32_t accepted = 0;  // bit i: identity_type i
  std::uint64_t max_items = 1;
  std::chrono::microseconds max_age{0};
  std::uint64_t learned_max = 0;  // after a 413: the batch size that fits; 0 when none learned
  std::uint64_t generation = 1;
  bool circuit_open = false;
  std::string circuit_reason;
  // The queue.
  std::uint64_t queued = 0;
  std::uint64_t queued_items = 0;
  std::uint64_t next_seq = 0;  // of queued forwards and batches alike
  std::optional<timestamp> oldest;     // enqueue time of the first queued forward
  std::optional<timestamp> queue_due;  // where its Q due key is
  timestamp updated;
};

enum output_flag : std::uint8_t { is_active = 1, circuit = 2, has_endpoint = 4, has_oldest = 8, has_queue_due = 16 };

void write_map(byte_writer& w, const std::map<std::string, std::string>& m) {
  w.varint(m.size());
  for (const auto& [k, v] : m) {
    w.bytes(k);
    w.bytes(v);
  }
}

std::map<std::string, std::string> read_map(byte_reader& in) {
  std::map<std::string, std::string> m;
  const std::uint64_t n = in.varint();
  for (std::uint64_t i = 0; i < n && in.ok(); ++i) {
    std::string k(in.bytes());
    m.emplace(std::move(k), std::string(in.bytes()));
  }
  return m;
}

void write_identities(byte_writer& w, const std::vector<identity>& ids) {
  w.varint(ids.size());
  for (const identity& id : ids) {
    w.u8(static_cast<std::uint8_t>(id.type));
    w.bytes(id.value);
  }
}

std::vector<identity> read_identities(byte_reader& in, bool& bad) {
  std::vector<identity> ids;
  const std::uint64_t n = in.varint();
  for (std::uint64_t i = 0; i < n && in.ok(); ++i) {
    const std::uint8_t type = in.u8();
    if (type >= identity_type_count) bad = true;
    ids.push_back({static_cast<identity_type>(type), std::string(in.bytes())});
  }
  return ids;
}

std::string encode_output(const output_record& o) {
  std::string out;
  byte_writer w(out);
  w.u8(output_format);
  w.u8(static_cast<std::uint8_t>((o.active ? is_active : 0) | (o.circuit_open ? circuit : 0) |
                                 (o.config.endpoint ? has_endpoint : 0) | (o.oldest ? has_oldest : 0) |
                                 (o.queue_due ? has_queue_due : 0)));
  w.bytes(o.workspace);
  w.bytes(o.name);
  w.bytes(o.partner);
  w.bytes(o.domain);
  w.varint(o.accepted);
  w.varint(o.max_items);
  w.signed_varint(o.max_age.count());
  w.varint(o.learned_max);
  w.varint(o.generation);
  w.bytes(o.circuit_reason);
  write_map(w, o.config.settings);
  write_map(w, o.config.credentials);
  if (o.config.endpoint) w.bytes(*o.config.endpoint);
  w.varint(o.queued);
  w.varint(o.queued_items);
  w.varint(o.next_seq);
  if (o.oldest) w.time(*o.oldest);
  if (o.queue_due) w.time(*o.queue_due);
  w.time(o.updated);
  return out;
}

result<output_record> decode_output(std::string_view bytes) {
  byte_reader in(bytes);
  output_record o;
  const std::uint8_t format = in.u8();
  const std::uint8_t flags = in.u8();
  o.active = flags & is_active;
  o.circuit_open = flags & circuit;
  o.workspace = in.bytes();
  o.name = in.bytes();
  o.partner = in.bytes();
  o.domain = in.bytes();
  const std::uint64_t accepted = in.varint();
  o.max_items = in.varint();
  o.max_age = std::chrono::microseconds(in.signed_varint());
  o.learned_max = in.varint();
  o.generation = in.varint();
  o.circuit_reason = in.bytes();
  o.config.settings = read_map(in);
  o.config.credentials = read_map(in);
  if (flags & has_endpoint) o.config.endpoint.emplace(in.bytes());
  o.queued = in.varint();
  o.queued_items = in.varint();
  o.next_seq = in.varint();
  if (flags & has_oldest) o.oldest = in.time();
  if (flags & has_queue_due) o.queue_due = in.time();
  o.updated = in.time();
  if (!in.ok() || !in.at_end() || format != output_format || flags > 31 || accepted >> identity_type_count ||
      o.max_items == 0)
    return corrupt("A stored output is damaged.");
  o.accepted = static_cast<std::uint32_t>(accepted);
  return o;
}

struct queued_forward {
  std::string request_ref;
  timestamp enqueued;
  std::vector<identity> identities;
};

std::string encode_queued(const queued_forward& q) {
  std::string out;
  byte_writer w(out);
  w.u8(queued_format);
  w.bytes(q.request_ref);
  w.time(q.enqueued);
  write_identities(w, q.identities);
  return out;
}

result<queued_forward> decode_queued(std::string_view bytes) {
  byte_reader in(bytes);
  queued_forward q;
  bool bad = false;
  const std::uint8_t format = in.u8();
  q.request_ref = in.bytes();
  q.enqueued = in.time();
  q.identities = read_identities(in, bad);
  if (!in.ok() || !in.at_end() || bad || format != queued_format || q.identities.empty())
    return corrupt("A stored queued forward is damaged.");
  return q;
}

struct batch_member {
  std::string request_ref;
  std::vector<identity> identities;
};

struct forward_batch {
  std::vector<batch_member> members;
  std::uint32_t attempts = 0;  // failed attempts recorded
  timestamp first_due;
  timestamp retry_at;
  std::optional<timestamp> scheduled;  // where its B due key is
  std::optional<timestamp> last_attempt;
  bool dead = false;
  std::string lease;
  std::string last_error;

  std::size_t items() const {
    std::size_t n = 0;
    for (const auto& m : members) n += m.identities.size();
    return n;
  }
};

enum batch_flag : std::uint8_t { batch_dead = 1, batch_scheduled = 2, batch_attempted = 4 };

std::string encode_batch(const forward_batch& b) {
  std::string out;
  byte_writer w(out);
  w.u8(batch_format);
  w.u8(static_cast<std::uint8_t>((b.dead ? batch_dead : 0) | (b.scheduled ? batch_scheduled : 0) |
                                 (b.last_attempt ? batch_attempted : 0)));
  w.varint(b.members.size());
  for (const auto& m : b.members) {
    w.bytes(m.request_ref);
    write_identities(w, m.identities);
  }
  w.varint(b.attempts);
  w.time(b.first_due);
  w.time(b.retry_at);
  if (b.scheduled) w.time(*b.scheduled);
  if (b.last_attempt) w.time(*b.last_attempt);
  w.bytes(b.lease);
  w.bytes(b.last_error);
  return out;
}

result<forward_batch> decode_batch(std::string_view bytes) {
  byte_reader in(bytes);
  forward_batch b;
  bool bad = false;
  const std::uint8_t format = in.u8();
  const std::uint8_t flags = in.u8();
  const std::uint64_t members = in.varint();
  for (std::uint64_t i = 0; i < members && in.ok(); ++i) {
    batch_member m;
    m.request_ref = in.bytes();
    m.identities = read_identities(in, bad);
    b.members.push_back(std::move(m));
  }
  const std::uint64_t attempts = in.varint();
  b.first_due = in.time();
  b.retry_at = in.time();
  if (flags & batch_scheduled) b.scheduled = in.time();
  if (flags & batch_attempted) b.last_attempt = in.time();
  b.dead = flags & batch_dead;
  b.lease = in.bytes();
  b.last_error = in.bytes();
  if (!in.ok() || !in.at_end() || bad || format != batch_format || flags > 7 || attempts > UINT32_MAX ||
      b.members.empty() || (b.dead && b.scheduled))
    return corrupt("A stored forward batch is damaged.");
  b.attempts = static_cast<std::uint32_t>(attempts);
  return b;
}

template <class T, class Decode>
result<std::optional<T>> load_value(read_transaction& txn, std::string_view key, Decode decode) {
  auto stored = txn.get(key);
  if (!stored) return std::move(stored).error();
  if (!*stored) return std::optional<T>();
  auto v = decode(**stored);
  if (!v) return std::move(v).error();
  return std::optional<T>(std::move(*v));
}

result<std::optional<output_record>> load_output(read_transaction& txn, std::string_view oref) {
  return load_value<output_record>(txn, keys::output_key(oref), decode_output);
}

result<output_record> load_existing_output(read_transaction& txn, std::string_view oref) {
  auto o = load_output(txn, oref);
  if (!o) return std::move(o).error();
  if (!*o) return corrupt("A forward names an output that is not stored.");
  return std::move(**o);
}

result<std::optional<forward_batch>> load_batch(read_transaction& txn, std::string_view key) {
  return load_value<forward_batch>(txn, key, decode_batch);
}

// Every (key, value) under a prefix.
result<std::vector<std::pair<std::string, std::string>>> scan_all(read_transaction& txn, std::string_view prefix) {
  std::vector<std::pair<std::string, std::string>> out;
  OPENDSR_TRY(txn.scan(prefix, {}, [&](std::string_view k, std::string_view v) {
    out.emplace_back(k, v);
    return true;
  }));
  return out;
}

// ---- the partner facts of an output ----

const partner_kind* find_kind(const distribution_policy& policy, std::string_view name) {
  for (const auto& k : policy.partners)
    if (k && k->name() == name) return k.get();
  return nullptr;
}

std::string known_kinds(const distribution_policy& policy) {
  std::string names;
  for (const auto& k : policy.partners) {
    if (!k) continue;
    if (!names.empty()) names += ", ";
    names += k->name();
  }
  return names.empty() ? "none in this build" : names;
}

// Configures o's partner from its configuration and stores what the engine needs of it.
result<void> derive_partner_facts(const engine_options& options, output_record& o) {
  const partner_kind* kind = find_kind(options.distribution, o.partner);
  if (!kind) return refused("partner: unknown partner '" + o.partner + "' (known: " + known_kinds(options.distribution) + ").");
  if (o.config.endpoint) {
    auto checked = check_url(options.request.callback_destinations, *o.config.endpoint);
    if (!checked) return refused("endpoint: " + checked.error().message());
  }
  auto p = kind->configure(o.config);
  if (!p) return refused(p.error().message());
  o.domain = (*p)->domain();
  o.accepted = 0;
  for (std::size_t t = 0; t < identity_type_count; ++t)
    if ((*p)->accepts(static_cast<identity_type>(t))) o.accepted |= std::uint32_t{1} << t;
  const partner_batching b = (*p)->batching();
  if (b.max_items == 0 || b.max_age < std::chrono::microseconds::zero())
    return error(errc::invalid_argument, "partner " + o.partner + " reports an invalid batching rule.");
  o.max_items = b.max_items;
  o.max_age = b.max_age;
  return {};
}

result<void> validate_name(std::string_view name) {
  if (name.empty() || name.size() > max_output_name || !is_valid_utf8(name))
    return refused("name: must be 1 to 200 bytes of UTF-8.");
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7F) return refused("name: must not contain control characters.");
  return {};
}

bool accepts(const output_record& o, identity_type t) { return (o.accepted >> static_cast<unsigned>(t)) & 1u; }

std::string accepted_names(const output_record& o) {
  std::string names;
  for (std::size_t t = 0; t < identity_type_count; ++t) {
    if (!accepts(o, static_cast<identity_type>(t))) continue;
    if (!names.empty()) names += ", ";
    names += opendsr_name(static_cast<identity_type>(t));
  }
  return names;
}

std::string mask(std::string_view secret) {
  if (secret.size() < 12) return "****";
  return "****" + std::string(secret.substr(secret.size() - 4));
}

// ---- the queue's schedule ----

std::uint64_t batch_limit(const output_record& o) {
  return o.learned_max ? std::min(o.learned_max, o.max_items) : o.max_items;
}

// Moves o's Q due key to where its queue is due now (none when empty or the circuit is open).
// `at_once` forces the queue due at `now` (a window that closed and still holds forwards).
result<void> schedule_queue(write_transaction& txn, std::string_view oref, output_record& o, timestamp now,
                            bool at_once = false) {
  std::optional<timestamp> due;
  if (o.queued > 0 && !o.circuit_open) {
    if (at_once || o.queued_items >= batch_limit(o))
      due = o.queue_due && *o.queue_due <= now ? *o.queue_due : now;
    else
      due = *o.oldest + o.max_age;
  }
  if (due == o.queue_due) return {};
  if (o.queue_due) {
    auto erased = txn.erase(keys::forward_due_key(*o.queue_due, due_kind::queue, oref, std::nullopt));
    if (!erased) return std::move(erased).error();
  }
  if (due) OPENDSR_TRY(txn.put(keys::forward_due_key(*due, due_kind::queue, oref, std::nullopt), {}));
  o.queue_due = due;
  return {};
}

// Stores a batch scheduled at `due` (or unscheduled when nullopt), moving its B key.
result<void> store_batch(write_transaction& txn, std::string_view oref, std::uint64_t seq, forward_batch& b,
                         std::optional<timestamp> due) {
  if (b.scheduled != due) {
    if (b.scheduled) {
      auto erased = txn.erase(keys::forward_due_key(*b.scheduled, due_kind::batch, oref, seq));
      if (!erased) return std::move(erased).error();
    }
    if (due) OPENDSR_TRY(txn.put(keys::forward_due_key(*due, due_kind::batch, oref, seq), {}));
    b.scheduled = due;
  }
  return txn.put(keys::forward_batch_key(oref, seq), encode_batch(b));
}

result<void> erase_batch(write_transaction& txn, std::string_view oref, std::uint64_t seq, forward_batch& b) {
  OPENDSR_TRY(store_batch(txn, oref, seq, b, std::nullopt));
  auto erased = txn.erase(keys::forward_batch_key(oref, seq));
  if (!erased) return std::move(erased).error();
  return {};
}

result<output_info> info_of(read_transaction& txn, const output_record& o) {
  output_info info;
  info.workspace = o.workspace;
  info.name = o.name;
  info.partner = o.partner;
  info.domain = o.domain;
  info.active = o.active;
  info.settings = o.config.settings;
  for (const auto& [k, v] : o.config.credentials) info.masked_credentials.emplace(k, mask(v));
  info.endpoint = o.config.endpoint;
  info.circuit_open = o.circuit_open;
  info.circuit_reason = o.circuit_reason;
  info.queued = o.queued;
  info.queued_items = o.queued_items;
  info.max_items = batch_limit(o);
  info.updated = o.updated;
  std::optional<error> damaged;
  OPENDSR_TRY(txn.scan(keys::forward_batches_prefix(keys::output_ref(o.workspace, o.name)), {},
                       [&](std::string_view, std::string_view v) {
                         auto b = decode_batch(v);
                         if (!b) return damaged = std::move(b).error(), false;
                         ++(b->dead ? info.dead_batches : info.batches);
                         return true;
                       }));
  if (damaged) return std::move(*damaged);
  return info;
}

claimed_forward claim_of(const output_record& o, const forward_batch& b, std::string batch_key, std::string_view lease) {
  claimed_forward c;
  c.workspace = o.workspace;
  c.output = o.name;
  c.partner = o.partner;
  c.config = o.config;
  c.generation = o.generation;
  for (const auto& m : b.members) c.subjects.push_back({m.identities});
  c.requests = b.members.size();
  c.attempt = b.attempts + 1;
  c.batch_key = std::move(batch_key);
  c.lease = lease;
  return c;
}

// Forms batches from o's queue while it is due, claiming each; at most `room` of them.
result<void> claim_queue(write_transaction& txn, std::string_view oref, output_record& o, timestamp now,
                         std::size_t room, std::string_view lease, timestamp lease_expiry,
                         std::vector<claimed_forward>& claimed) {
  const bool window_closed = o.oldest && *o.oldest + o.max_age <= now;
  std::size_t formed = 0;
  while (formed < room && o.queued > 0 && (window_closed || o.queued_items >= batch_limit(o))) {
    forward_batch b;
    std::vector<std::string> taken;
    std::size_t items = 0;
    const std::uint64_t limit = batch_limit(o);
    std::optional<error> damaged;
    OPENDSR_TRY(txn.scan(keys::forward_queue_prefix(oref), {}, [&](std::string_view k, std::string_view v) {
      auto q = decode_queued(v);
      if (!q) return damaged = std::move(q).error(), false;
      if (!b.members.empty() && items + q->identities.size() > limit) return false;
      items += q->identities.size();
      taken.emplace_back(k);
      b.members.push_back({std::move(q->request_ref), std::move(q->identities)});
      return items < limit;
    }));
    if (damaged) return std::move(*damaged);
    if (b.members.empty()) return corrupt("Output " + o.name + " counts queued forwards it does not hold.");
    for (const std::string& k : taken) {
      auto erased = txn.erase(k);
      if (!erased) return std::move(erased).error();
    }
    o.queued -= std::min<std::uint64_t>(o.queued, taken.size());
    o.queued_items -= std::min<std::uint64_t>(o.queued_items, items);
    b.first_due = now;
    b.retry_at = now;
    b.lease = lease;
    const std::uint64_t seq = o.next_seq++;
    OPENDSR_TRY(store_batch(txn, oref, seq, b, lease_expiry));
    claimed.push_back(claim_of(o, b, keys::forward_batch_key(oref, seq), lease));
    ++formed;
  }
  // The enqueue time of the first forward left, if any.
  o.oldest.reset();
  std::optional<error> damaged;
  OPENDSR_TRY(txn.scan(keys::forward_queue_prefix(oref), {}, [&](std::string_view, std::string_view v) {
    auto q = decode_queued(v);
    if (!q) return damaged = std::move(q).error(), false;
    o.oldest = q->enqueued;
    return false;
  }));
  if (damaged) return std::move(*damaged);
  if (!o.oldest && o.queued != 0) return corrupt("Output " + o.name + " counts queued forwards it does not hold.");
  OPENDSR_TRY(schedule_queue(txn, oref, o, now, window_closed && formed == room));
  return txn.put(keys::output_key(oref), encode_output(o));
}

void member_changes(const output_record& o, const forward_batch& b, distribution_state state,
                    const std::optional<std::string>& message, std::vector<entry_change>& changes) {
  for (const auto& m : b.members) changes.push_back({m.request_ref, o.name, state, message});
}

std::optional<std::string> message_or_null(const std::string& m) {
  return m.empty() ? std::nullopt : std::optional<std::string>(m);
}

// True iff o is in the scope (a hashed component matches its prefix only: compare the names).
bool in_scope(std::optional<std::string_view> workspace, std::optional<std::string_view> output, const output_record& o) {
  return (!workspace || o.workspace == *workspace) && (!output || o.name == *output);
}

std::string scope_prefix(keys::table t, std::optional<std::string_view> workspace, std::optional<std::string_view> output) {
  if (workspace && output) return keys::prefix(t) + keys::output_ref(*workspace, *output);
  if (workspace) {
    std::string p = keys::prefix(t);
    keys::append_component(p, *workspace);
    return p;
  }
  return keys::prefix(t);
}

}  // namespace

result<bool> has_active_output(read_transaction& txn, std::string_view workspace) {
  bool active = false;
  std::optional<error> damaged;
  OPENDSR_TRY(txn.scan(keys::outputs_prefix(workspace), {}, [&](std::string_view, std::string_view v) {
    auto o = decode_output(v);
    if (!o) return damaged = std::move(o).error(), false;
    active = o->active && o->workspace == workspace;
    return !active;
  }));
  if (damaged) return std::move(*damaged);
  return active;
}

result<std::vector<distribution_entry>> queue_forwards(write_transaction& txn, std::string_view workspace,
                                                       std::string_view request_ref, const forward_source& source,
                                                       timestamp now) {
  auto stored = scan_all(txn, keys::outputs_prefix(workspace));
  if (!stored) return std::move(stored).error();
  std::vector<distribution_entry> entries;
  for (const auto& [key, value] : *stored) {
    auto o = decode_output(value);
    if (!o) return std::move(o).error();
    if (!o->active || o->workspace != workspace) continue;  // a hashed workspace component matched by prefix only
    distribution_entry entry{o->domain, o->name, distribution_state::skipped, std::nullopt};
    queued_forward q{std::string(request_ref), now, {}};
    for (const identity& id : source.identities)
      if (accepts(*o, id.type)) q.identities.push_back(id);
    if (!source.refusal.empty()) {
      entry.status_message = source.refusal;
    } else if (q.identities.empty()) {
      entry.status_message = "No identity of a type this output takes (" + accepted_names(*o) +
                             ") is on the request or its profile.";
    } else {
      entry.status = distribution_state::pending;
      const std::string oref = key.substr(1);
      OPENDSR_TRY(txn.put(keys::forward_queued_key(oref, o->next_seq++), encode_queued(q)));
      ++o->queued;
      o->queued_items += q.identities.size();
      if (!o->oldest) o->oldest = now;
      OPENDSR_TRY(schedule_queue(txn, oref, *o, now));
      OPENDSR_TRY(txn.put(key, encode_output(*o)));
    }
    entries.push_back(std::move(entry));
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return entries;
}

result<output_info> add_output(write_transaction& txn, const engine_options& options, std::string_view workspace,
                               const output_definition& def, timestamp now) {
  OPENDSR_TRY(validate_name(def.name));
  const std::string oref = keys::output_ref(workspace, def.name);
  auto existing = load_output(txn, oref);
  if (!existing) return std::move(existing).error();
  if (*existing) return refused("name: an output named '" + def.name + "' already exists in this workspace.");
  output_record o;
  o.workspace = workspace;
  o.name = def.name;
  o.partner = def.partner;
  o.active = def.active;
  o.config = def.config;
  o.updated = now;
  OPENDSR_TRY(derive_partner_facts(options, o));
  OPENDSR_TRY(txn.put(keys::output_key(oref), encode_output(o)));
  return info_of(txn, o);
}

result<output_info> update_output(write_transaction& txn, const engine_options& options, std::string_view workspace,
                                  std::string_view name, const output_change& change, timestamp now) {
  const std::string oref = keys::output_ref(workspace, name);
  auto loaded = load_output(txn, oref);
  if (!loaded) return std::move(loaded).error();
  if (!*loaded) return error(errc::not_found, "There is no output of that name in this workspace.");
  output_record& o = **loaded;
  if (change.active) o.active = *change.active;
  if (change.settings) o.config.settings = *change.settings;
  if (change.credentials) o.config.credentials = *change.credentials;
  if (change.endpoint) o.config.endpoint = *change.endpoint;
  OPENDSR_TRY(derive_partner_facts(options, o));
  if (change.settings) o.learned_max = 0;
  ++o.generation;
  o.circuit_open = false;
  o.circuit_reason.clear();
  o.updated = now;
  OPENDSR_TRY(schedule_queue(txn, oref, o, now));
  // Batches an open circuit held fall due again.
  auto batches = scan_all(txn, keys::forward_batches_prefix(oref));
  if (!batches) return std::move(batches).error();
  for (const auto& [key, value] : *batches) {
    auto b = decode_batch(value);
    if (!b) return std::move(b).error();
    if (b->dead || b->scheduled) continue;
    const auto parts = keys::parse_forward_batch_key(key);
    if (!parts) return corrupt("A stored forward batch key is malformed.");
    OPENDSR_TRY(store_batch(txn, oref, parts->seq, *b, std::max(b->retry_at, now)));
  }
  OPENDSR_TRY(txn.put(keys::output_key(oref), encode_output(o)));
  return info_of(txn, o);
}

result<std::vector<entry_change>> remove_output(write_transaction& txn, std::string_view workspace, std::string_view name) {
  const std::string oref = keys::output_ref(workspace, name);
  auto loaded = load_output(txn, oref);
  if (!loaded) return std::move(loaded).error();
  if (!*loaded) return error(errc::not_found, "There is no output of that name in this workspace.");
  output_record& o = **loaded;
  const std::optional<std::string> removed = "The output was removed before this request was forwarded.";
  std::vector<entry_change> changes;
  auto queued = scan_all(txn, keys::forward_queue_prefix(oref));
  if (!queued) return std::move(queued).error();
  for (const auto& [key, value] : *queued) {
    auto q = decode_queued(value);
    if (!q) return std::move(q).error();
    changes.push_back({q->request_ref, o.name, distribution_state::failed, removed});
    auto erased = txn.erase(key);
    if (!erased) return std::move(erased).error();
  }
  auto batches = scan_all(txn, keys::forward_batches_prefix(oref));
  if (!batches) return std::move(batches).error();
  for (const auto& [key, value] : *batches) {
    auto b = decode_batch(value);
    if (!b) return std::move(b).error();
    const auto parts = keys::parse_forward_batch_key(key);
    if (!parts) return corrupt("A stored forward batch key is malformed.");
    if (!b->dead) member_changes(o, *b, distribution_state::failed, removed, changes);
    OPENDSR_TRY(erase_batch(txn, oref, parts->seq, *b));
  }
  o.queued = 0;
  OPENDSR_TRY(schedule_queue(txn, oref, o, timestamp{}));
  auto erased = txn.erase(keys::output_key(oref));
  if (!erased) return std::move(erased).error();
  return changes;
}

result<std::vector<output_info>> list_outputs(read_transaction& txn, std::optional<std::string_view> workspace) {
  auto stored = scan_all(txn, workspace ? keys::outputs_prefix(*workspace) : keys::prefix(keys::table::output));
  if (!stored) return std::move(stored).error();
  std::vector<output_info> out;
  for (const auto& [key, value] : *stored) {
    auto o = decode_output(value);
    if (!o) return std::move(o).error();
    if (workspace && o->workspace != *workspace) continue;
    auto info = info_of(txn, *o);
    if (!info) return std::move(info).error();
    out.push_back(std::move(*info));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return std::tie(a.workspace, a.name) < std::tie(b.workspace, b.name); });
  return out;
}

result<std::vector<claimed_forward>> claim_due_forwards(write_transaction& txn, timestamp now, std::size_t max,
                                                        std::string_view lease, timestamp lease_expiry) {
  std::vector<std::string> due;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::forward_due), {}, [&](std::string_view key, std::string_view) {
    const auto parts = keys::parse_forward_due_key(key);
    if (parts && parts->due > now) return false;
    due.emplace_back(key);  // a malformed key is reported below
    return due.size() < max;
  }));
  std::vector<claimed_forward> claimed;
  for (const std::string& key : due) {
    if (claimed.size() >= max) break;
    const auto parts = keys::parse_forward_due_key(key);
    if (!parts) return corrupt("A stored forward due key is malformed.");
    const std::string oref(parts->output_ref);
    auto o = load_existing_output(txn, oref);
    if (!o) return std::move(o).error();
    if (parts->kind == due_kind::queue) {
      if (o->queue_due != parts->due) return corrupt("The queue due key of output " + o->name + " disagrees with it.");
      OPENDSR_TRY(claim_queue(txn, oref, *o, now, max - claimed.size(), lease, lease_expiry, claimed));
      continue;
    }
    const std::string batch_key = keys::forward_batch_key(oref, *parts->seq);
    auto b = load_batch(txn, batch_key);
    if (!b) return std::move(b).error();
    if (!*b || (*b)->scheduled != parts->due) return corrupt("A forward due key disagrees with its batch.");
    if (o->circuit_open) {  // held until the output's configuration changes
      OPENDSR_TRY(store_batch(txn, oref, *parts->seq, **b, std::nullopt));
      continue;
    }
    (*b)->lease = lease;
    OPENDSR_TRY(store_batch(txn, oref, *parts->seq, **b, lease_expiry));
    claimed.push_back(claim_of(*o, **b, batch_key, lease));
  }
  return claimed;
}

result<void> record_forward_outcome(write_transaction& txn, const distribution_policy& policy,
                                    const forward_outcome& outcome, timestamp now, forward_record_report& report,
                                    std::vector<entry_change>& changes) {
  const auto parts = keys::parse_forward_batch_key(outcome.batch_key);
  if (!parts) return error(errc::invalid_argument, "Not a forward batch key.");
  const std::string oref(parts->output_ref);
  auto loaded = load_batch(txn, outcome.batch_key);
  if (!loaded) return std::move(loaded).error();
  if (!*loaded || outcome.lease.empty() || (*loaded)->lease != outcome.lease) {
    ++report.stale;  // recorded, redriven or reclaimed after this lease expired
    return {};
  }
  forward_batch& b = **loaded;
  auto o = load_existing_output(txn, oref);
  if (!o) return std::move(o).error();
  b.lease.clear();
  const forward_verdict& v = outcome.verdict;

  auto kill = [&](std::string message) -> result<void> {
    b.dead = true;
    b.last_error = message;
    b.last_attempt = now;
    member_changes(*o, b, distribution_state::failed, message, changes);
    ++report.failed;
    return store_batch(txn, oref, parts->seq, b, std::nullopt);
  };

  switch (v.kind) {
    case forward_verdict_kind::sent:
      member_changes(*o, b, distribution_state::sent, message_or_null(v.message), changes);
      ++report.sent;
      report.requests_sent += b.members.size();
      return erase_batch(txn, oref, parts->seq, b);
    case forward_verdict_kind::retry: {
      ++b.attempts;
      b.last_attempt = now;
      b.last_error = v.message.empty() ? "failed" : v.message;
      if (b.attempts >= policy.max_attempts || now - b.first_due >= policy.max_age)
        return kill("Gave up after " + std::to_string(b.attempts) + " attempts: " + b.last_error);
      const auto delay = v.retry_after ? std::clamp(*v.retry_after, policy.min_retry_delay, policy.max_retry_after)
                                       : backoff({policy.min_retry_delay, policy.first_retry_delay, policy.max_retry_delay},
                                                 outcome.batch_key, b.attempts);
      b.retry_at = now + delay;
      ++report.retried;
      return store_batch(txn, oref, parts->seq, b, o->circuit_open ? std::nullopt : std::optional(b.retry_at));
    }
    case forward_verdict_kind::too_large: {
      if (b.members.size() < 2)
        return kill(v.message.empty() ? "The partner refused a single request as too large." : v.message);
      const std::size_t items = b.items();
      o->learned_max = std::max<std::uint64_t>(1, items / 2);
      const std::size_t half = b.members.size() / 2;
      for (auto [from, to] : {std::pair{std::size_t{0}, half}, std::pair{half, b.members.size()}}) {
        forward_batch part;
        part.members.assign(b.members.begin() + static_cast<std::ptrdiff_t>(from),
                            b.members.begin() + static_cast<std::ptrdiff_t>(to));
        part.first_due = b.first_due;
        part.retry_at = now;
        OPENDSR_TRY(store_batch(txn, oref, o->next_seq++, part, o->circuit_open ? std::nullopt : std::optional(now)));
      }
      ++report.split;
      OPENDSR_TRY(erase_batch(txn, oref, parts->seq, b));
      OPENDSR_TRY(schedule_queue(txn, oref, *o, now));  // the smaller size may fill a batch now
      return txn.put(keys::output_key(oref), encode_output(*o));
    }
    case forward_verdict_kind::bad_credentials: {
      o->circuit_open = true;
      o->circuit_reason = v.message.empty() ? "The partner refused the credentials." : v.message;
      OPENDSR_TRY(schedule_queue(txn, oref, *o, now));
      OPENDSR_TRY(txn.put(keys::output_key(oref), encode_output(*o)));
      return kill(o->circuit_reason);
    }
    case forward_verdict_kind::failed:
      return kill(v.message.empty() ? "The partner refused the request." : v.message);
  }
  return error(errc::invalid_argument, "Unknown forward verdict.");
}

result<std::size_t> release_forward_leases(write_transaction& txn, std::string_view owner, timestamp now) {
  std::vector<std::string> future;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::forward_due), {}, [&](std::string_view key, std::string_view) {
    const auto parts = keys::parse_forward_due_key(key);
    if (!parts || (parts->due > now && parts->kind == due_kind::batch)) future.emplace_back(key);
    return true;
  }));
  std::size_t released = 0;
  for (const std::string& key : future) {
    const auto parts = keys::parse_forward_due_key(key);
    if (!parts) return corrupt("A stored forward due key is malformed.");
    const std::string oref(parts->output_ref);
    auto b = load_batch(txn, keys::forward_batch_key(oref, *parts->seq));
    if (!b) return std::move(b).error();
    if (!*b) return corrupt("A forward due key names no batch.");
    const std::string_view lease = (*b)->lease;
    if (lease.empty() || lease.substr(0, lease.find('\n')) != owner) continue;
    (*b)->lease.clear();
    OPENDSR_TRY(store_batch(txn, oref, *parts->seq, **b, now));
    ++released;
  }
  return released;
}

result<std::vector<dead_forward>> list_dead_forwards(read_transaction& txn, std::optional<std::string_view> workspace,
                                                     std::optional<std::string_view> output) {
  auto batches = scan_all(txn, scope_prefix(keys::table::forward_batch, workspace, output));
  if (!batches) return std::move(batches).error();
  std::vector<dead_forward> out;
  for (const auto& [key, value] : *batches) {
    auto b = decode_batch(value);
    if (!b) return std::move(b).error();
    if (!b->dead) continue;
    const auto parts = keys::parse_forward_batch_key(key);
    if (!parts) return corrupt("A stored forward batch key is malformed.");
    auto o = load_existing_output(txn, parts->output_ref);
    if (!o) return std::move(o).error();
    if (!in_scope(workspace, output, *o)) continue;
    dead_forward d{o->workspace, o->name, std::to_string(parts->seq), {}, b->attempts, b->last_error, b->first_due,
                   b->last_attempt.value_or(b->first_due)};
    for (const auto& m : b->members) {
      auto stored = txn.get(keys::request_key(m.request_ref));
      if (!stored) return std::move(stored).error();
      if (!*stored) return corrupt("A forward batch names a request that is not stored.");
      auto r = decode_record(**stored);
      if (!r) return std::move(r).error();
      d.subject_request_ids.push_back(std::move(r->subject_request_id));
    }
    out.push_back(std::move(d));
  }
  return out;
}

result<std::size_t> redrive_dead_forwards(write_transaction& txn, std::optional<std::string_view> workspace,
                                          std::optional<std::string_view> output, timestamp now,
                                          std::vector<entry_change>& changes) {
  auto batches = scan_all(txn, scope_prefix(keys::table::forward_batch, workspace, output));
  if (!batches) return std::move(batches).error();
  std::size_t redriven = 0;
  for (const auto& [key, value] : *batches) {
    auto b = decode_batch(value);
    if (!b) return std::move(b).error();
    if (!b->dead) continue;
    const auto parts = keys::parse_forward_batch_key(key);
    if (!parts) return corrupt("A stored forward batch key is malformed.");
    const std::string oref(parts->output_ref);
    auto o = load_existing_output(txn, oref);
    if (!o) return std::move(o).error();
    if (!in_scope(workspace, output, *o)) continue;
    b->dead = false;
    b->attempts = 0;
    b->first_due = now;
    b->retry_at = now;
    b->last_error.clear();
    member_changes(*o, *b, distribution_state::pending, std::nullopt, changes);
    OPENDSR_TRY(store_batch(txn, oref, parts->seq, *b, o->circuit_open ? std::nullopt : std::optional(now)));
    ++redriven;
  }
  return redriven;
}

result<forward_queue_stats> forward_stats(read_transaction& txn) {
  forward_queue_stats s;
  std::optional<error> damaged;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::output), {}, [&](std::string_view, std::string_view v) {
    auto o = decode_output(v);
    if (!o) return damaged = std::move(o).error(), false;
    s.queued += o->queued;
    s.circuits_open += o->circuit_open ? 1 : 0;
    return true;
  }));
  if (damaged) return std::move(*damaged);
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::forward_batch), {}, [&](std::string_view, std::string_view v) {
    auto b = decode_batch(v);
    if (!b) return damaged = std::move(b).error(), false;
    ++(b->dead ? s.dead_batches : s.batches);
    return true;
  }));
  if (damaged) return std::move(*damaged);
  auto first = first_forward_due(txn);
  if (!first) return std::move(first).error();
  s.oldest_due = *first;
  return s;
}

std::vector<std::string> check_forward_tables(const std::map<std::string, std::string>& rows,
                                              const std::map<std::string, request_record>& records) {
  std::vector<std::string> problems;
  auto add = [&](std::string p) { problems.push_back(std::move(p)); };
  std::map<std::string, output_record> outputs;  // by output_ref
  std::set<std::string> expected_due;            // the a keys the outputs and batches call for
  std::map<std::pair<std::string, std::string>, int> forwards;  // (request ref, output name) -> live forwards
  auto member = [&](const std::string& ref, const output_record& o, const char* what) {
    ++forwards[{ref, o.name}];
    const auto r = records.find(ref);
    if (r == records.end()) return add(std::string(what) + " of output " + o.name + " names no stored request");
    const auto& entries = r->second.distribution;
    const auto e = std::find_if(entries.begin(), entries.end(), [&](const auto& d) { return d.name == o.name; });
    if (e == entries.end() || e->status != distribution_state::pending)
      add("request " + r->second.subject_request_id + " has a " + what + " for output " + o.name +
          " but its entry is not pending");
  };
  for (const auto& [key, value] : rows) {
    if (key[0] != static_cast<char>(keys::table::output)) continue;
    auto o = decode_output(value);
    if (!o) add(o.error().message());
    else if (keys::output_ref(o->workspace, o->name) != key.substr(1)) add("output " + o->name + " is stored under another key");
    else outputs.emplace(key.substr(1), std::move(*o));
  }
  for (auto& [oref, o] : outputs) {
    std::uint64_t queued = 0, items = 0;
    std::optional<timestamp> oldest;
    const std::string queue_prefix = keys::forward_queue_prefix(oref);
    for (auto it = rows.lower_bound(queue_prefix); it != rows.end() && it->first.starts_with(queue_prefix); ++it) {
      auto q = decode_queued(it->second);
      if (!q) {
        add(q.error().message());
        continue;
      }
      if (!oldest) oldest = q->enqueued;
      ++queued;
      items += q->identities.size();
      member(q->request_ref, o, "queued forward");
    }
    if (queued != o.queued || items != o.queued_items || oldest != o.oldest)
      add("output " + o.name + " counts its queue wrongly");
    if (o.queue_due.has_value() != (queued > 0 && !o.circuit_open))
      add("output " + o.name + (o.queue_due ? " has a queue due without a queue to send" : " has a queue that is never due"));
    if (o.queue_due) expected_due.insert(keys::forward_due_key(*o.queue_due, due_kind::queue, oref, std::nullopt));
    const std::string batch_prefix = keys::forward_batches_prefix(oref);
    for (auto it = rows.lower_bound(batch_prefix); it != rows.end() && it->first.starts_with(batch_prefix); ++it) {
      auto b = decode_batch(it->second);
      const auto parts = keys::parse_forward_batch_key(it->first);
      if (!b || !parts) {
        add("a forward batch of output " + o.name + " is damaged");
        continue;
      }
      if (b->scheduled) expected_due.insert(keys::forward_due_key(*b->scheduled, due_kind::batch, oref, parts->seq));
      else if (!b->dead && !o.circuit_open) add("a live batch of output " + o.name + " is never due");
      if (!b->dead)
        for (const auto& m : b->members) member(m.request_ref, o, "batch");
    }
  }
  for (const auto& [key, value] : rows) {
    const char t = key[0];
    if (t == static_cast<char>(keys::table::forward_due) && !expected_due.contains(key))
      add("a forward due key names nothing due then");
    if (t != static_cast<char>(keys::table::forward_queued) && t != static_cast<char>(keys::table::forward_batch)) continue;
    const std::string_view tail = std::string_view(key).substr(1);
    if (tail.size() < 8 || !outputs.contains(std::string(tail.substr(0, tail.size() - 8))))
      add("a forward belongs to no stored output");
  }
  for (const std::string& key : expected_due)
    if (!rows.contains(key)) add("a queue or batch that is due has no forward due key");
  for (const auto& [ref, r] : records)
    for (const auto& d : r.distribution) {
      const auto n = forwards.find({ref, d.name});
      const int live = n == forwards.end() ? 0 : n->second;
      if (live != (d.status == distribution_state::pending ? 1 : 0))
        add("request " + r.subject_request_id + " has " + std::to_string(live) + " live forwards for its " +
            std::string(to_string(d.status)) + " entry of output " + d.name);
    }
  return problems;
}

result<std::optional<timestamp>> first_forward_due(read_transaction& txn) {
  std::optional<timestamp> due;
  bool malformed = false;
  OPENDSR_TRY(txn.scan(keys::prefix(keys::table::forward_due), {}, [&](std::string_view key, std::string_view) {
    const auto parts = keys::parse_forward_due_key(key);
    if (parts) due = parts->due;
    malformed = !parts;
    return false;
  }));
  if (malformed) return corrupt("A stored forward due key is malformed.");
  return due;
}

}  // namespace opendsr::detail
