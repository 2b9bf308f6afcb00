// The embedded subject-data store: <opendsr/subject_data.hpp> on the storage seam.
//
// Tables (reserved in store/keys.hpp; docs/subject-data.md draws them):
//   p ws mpid(8)                     -> profile record: varint next_seq, varint n, n x (u8 type,
//                                       bytes value as written), bytes attributes JSON
//   i ws type(1) norm_value mpid(8)  -> "" (one row per identity; unique types hold one mpid)
//   e ws mpid(8) seq(8)              -> event JSON
//   s ws                             -> identity configuration: u8 version, 3 x (varint n, n x u8)
//   h                                -> the tombstone hash key (32 random bytes), when not given
//   d ws mpid(8)                     -> the erasure receipt (tombstone) of an erased profile:
//                                       bytes key_id, varint events_erased, varint n, n x bytes hash
// ws and norm_value are key components (store/keys.hpp: inline up to 64 bytes, else SHA-256).
// mpid is 8 bytes big-endian with the sign bit flipped, seq 8 bytes big-endian, so both order.
#include <opendsr/subject_data.hpp>

#include "common/random_bytes.hpp"
#include "common/sha256.hpp"
#include "store/codec.hpp"
#include "store/keys.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <set>
#include <utility>

namespace opendsr {
namespace {

namespace keys = detail::keys;

constexpr char config_version = 1;
constexpr std::size_t tombstone_key_size = 32;

// ---- keys ----

void append_u64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xFF);
}
std::uint64_t read_u64(std::string_view bytes) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[i]);
  return v;
}
void append_mpid(std::string& out, profile_id id) {
  append_u64(out, static_cast<std::uint64_t>(id) ^ (std::uint64_t{1} << 63));
}
profile_id read_mpid(std::string_view bytes) {
  return static_cast<profile_id>(read_u64(bytes) ^ (std::uint64_t{1} << 63));
}

std::string table_prefix(keys::table t, std::string_view workspace) {
  std::string k(1, static_cast<char>(t));
  keys::append_component(k, workspace);
  return k;
}
std::string profile_key(std::string_view ws, profile_id id) {
  std::string k = table_prefix(keys::table::subject_profile, ws);
  append_mpid(k, id);
  return k;
}
// The prefix of every index row of one (type, normalised value).
std::string identity_prefix(std::string_view ws, identity_type t, std::string_view norm) {
  std::string k = table_prefix(keys::table::subject_identity, ws);
  k += static_cast<char>(t);
  keys::append_component(k, norm);
  return k;
}
std::string identity_key(std::string_view ws, identity_type t, std::string_view norm, profile_id id) {
  std::string k = identity_prefix(ws, t, norm);
  append_mpid(k, id);
  return k;
}
std::string events_prefix(std::string_view ws, profile_id id) {
  std::string k = table_prefix(keys::table::subject_event, ws);
  append_mpid(k, id);
  return k;
}
std::string event_key(std::string_view events_prefix, std::uint64_t seq) {
  std::string k(events_prefix);
  append_u64(k, seq);
  return k;
}
std::string config_key(std::string_view ws) { return table_prefix(keys::table::subject_config, ws); }
// The tombstone stays where the profile was: table d instead of p.
std::string tombstone_record_key(std::string_view ws, profile_id id) {
  std::string key = profile_key(ws, id);
  key[0] = static_cast<char>(keys::table::subject_tombstone);
  return key;
}

std::string encode_receipt(const erasure_receipt& r) {
  std::string out;
  detail::byte_writer w(out);
  w.bytes(r.key_id);
  w.varint(r.events_erased);
  w.varint(r.identity_hashes.size());
  for (const std::string& h : r.identity_hashes) w.bytes(h);
  return out;
}

std::string hash_key_key() { return std::string(1, static_cast<char>(keys::table::subject_key)); }

// ---- normalisation ----

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}
std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string normalise(identity_type t, std::string_view value) {
  using enum identity_type;
  const std::string_view v = trim(value);
  switch (t) {
    case email:
    case android_advertising_id:
    case android_id:
    case fire_advertising_id:
    case ios_advertising_id:
    case ios_vendor_id:
    case microsoft_advertising_id:
    case microsoft_publisher_id:
    case roku_advertising_id:
    case roku_publisher_id:
      return lower(v);
    case mobile_number:
    case phone_number_2:
    case phone_number_3: {
      std::string out;
      for (char c : v)
        if (c != ' ' && c != '-' && c != '.' && c != '(' && c != ')') out += c;
      return out;
    }
    default:
      return std::string(v);
  }
}

bool valid_type(identity_type t) { return static_cast<std::size_t>(t) < identity_type_count; }

std::optional<profile_id> parse_mpid(std::string_view text) {
  profile_id id = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, id);
  if (ec != std::errc() || p != end || text.empty() || text.front() == '+') return std::nullopt;
  return id;
}

bool is_json_object(std::string_view text) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  return !ec && v.is_object();
}

// ---- values ----

struct profile_record {
  std::uint64_t next_seq = 0;
  std::vector<identity> identities;  // as written
  std::string attributes;
};

std::string encode(const profile_record& r) {
  std::string out;
  detail::byte_writer w(out);
  w.varint(r.next_seq);
  w.varint(r.identities.size());
  for (const auto& i : r.identities) {
    w.u8(static_cast<std::uint8_t>(i.type));
    w.bytes(i.value);
  }
  w.bytes(r.attributes);
  return out;
}

result<profile_record> decode_profile(std::string_view bytes) {
  detail::byte_reader r(bytes);
  profile_record p;
  p.next_seq = r.varint();
  const std::uint64_t n = r.varint();
  for (std::uint64_t i = 0; r.ok() && i < n; ++i) {
    const auto t = static_cast<identity_type>(r.u8());
    std::string value(r.bytes());
    if (!valid_type(t)) return error(errc::storage_corrupt, "subject profile record: unknown identity type");
    p.identities.push_back({t, std::move(value)});
  }
  p.attributes = std::string(r.bytes());
  if (!r.ok() || !r.at_end()) return error(errc::storage_corrupt, "subject profile record does not decode");
  return p;
}

void encode_types(detail::byte_writer& w, const std::vector<identity_type>& types) {
  w.varint(types.size());
  for (auto t : types) w.u8(static_cast<std::uint8_t>(t));
}
bool decode_types(detail::byte_reader& r, std::vector<identity_type>& out) {
  const std::uint64_t n = r.varint();
  if (n > identity_type_count) return false;
  for (std::uint64_t i = 0; r.ok() && i < n; ++i) {
    const auto t = static_cast<identity_type>(r.u8());
    if (!valid_type(t)) return false;
    out.push_back(t);
  }
  return r.ok();
}

std::string encode(const identity_config& c) {
  std::string out;
  detail::byte_writer w(out);
  w.u8(config_version);
  encode_types(w, c.priority);
  encode_types(w, c.unique);
  encode_types(w, c.login);
  return out;
}

result<identity_config> decode_config(std::string_view bytes) {
  detail::byte_reader r(bytes);
  identity_config c;
  if (r.u8() != config_version || !decode_types(r, c.priority) || !decode_types(r, c.unique) ||
      !decode_types(r, c.login) || !r.at_end())
    return error(errc::storage_corrupt, "subject identity configuration does not decode");
  return c;
}

bool contains(const std::vector<identity_type>& v, identity_type t) {
  return std::find(v.begin(), v.end(), t) != v.end();
}

result<void> validate(const identity_config& c) {
  std::set<identity_type> seen;
  for (auto t : c.priority) {
    if (!valid_type(t)) return error(errc::invalid_argument, "identity_config.priority: an unknown identity type");
    if (t == identity_type::mpid)
      return error(errc::invalid_argument, "identity_config.priority: mpid short-circuits and takes no rank");
    if (!seen.insert(t).second)
      return error(errc::invalid_argument,
                   "identity_config.priority: " + std::string(opendsr_name(t)) + " appears twice");
  }
  for (auto [name, list] : {std::pair{"unique", &c.unique}, std::pair{"login", &c.login}})
    for (auto t : *list)
      if (!valid_type(t) || !seen.contains(t))
        return error(errc::invalid_argument,
                     std::string("identity_config.") + name + ": a type absent from priority");
  return {};
}

// ---- hashing ----

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 0xF];
  }
  return out;
}

// ---- the store ----

class storage_subject_data final : public subject_data {
 public:
  storage_subject_data(storage& store, subject_store_options options)
      : store_(store), options_(std::move(options)) {}

  result<std::optional<profile_id>> resolve(std::string_view ws, std::span<const identity> ids) override {
    // Validate everything first, so a bad identity fails the same way wherever it sits.
    std::map<identity_type, std::set<std::string>> wanted;  // type -> normalised values
    std::optional<profile_id> mpid;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const std::string field = "identities[" + std::to_string(i) + "]";
      if (!valid_type(ids[i].type)) return error(errc::invalid_argument, field + ": an unknown identity type");
      if (ids[i].type == identity_type::mpid) {
        auto id = parse_mpid(ids[i].value);
        if (!id)
          return error(errc::invalid_argument, field + ": an mpid must be the decimal text of a signed 64-bit integer");
        if (!mpid) mpid = id;
        continue;
      }
      std::string norm = normalise(ids[i].type, ids[i].value);
      if (norm.empty())
        return error(errc::invalid_argument,
                     field + ": a " + std::string(opendsr_name(ids[i].type)) + " value is empty once normalised");
      wanted[ids[i].type].insert(std::move(norm));
    }

    auto txn = store_.begin_read();
    if (!txn) return std::move(txn).error();
    read_transaction& t = **txn;

    if (mpid) {  // rule 1
      auto got = t.get(profile_key(ws, *mpid));
      if (!got) return std::move(got).error();
      return got->has_value() ? std::optional<profile_id>(*mpid) : std::nullopt;
    }

    auto cfg = read_config(t, ws);
    if (!cfg) return std::move(cfg).error();

    // Rule 3's login gate, per candidate (cached: a profile is decoded at most once).
    std::map<profile_id, bool> eligible;
    auto is_eligible = [&](profile_id id) -> result<bool> {
      if (auto it = eligible.find(id); it != eligible.end()) return it->second;
      auto got = t.get(profile_key(ws, id));
      if (!got) return std::move(got).error();
      if (!*got) return error(errc::storage_corrupt, "an identity index row names a missing profile");
      auto p = decode_profile(**got);
      if (!p) return std::move(p).error();
      bool has_login = false, matched = false;
      for (const auto& i : p->identities) {
        if (!contains(cfg->login, i.type)) continue;
        has_login = true;
        if (auto w = wanted.find(i.type); w != wanted.end() && w->second.contains(normalise(i.type, i.value)))
          matched = true;
      }
      return eligible[id] = !has_login || matched;
    };

    std::optional<std::set<profile_id>> running;
    for (identity_type type : cfg->priority) {  // rule 2: only configured types
      auto w = wanted.find(type);
      if (w == wanted.end()) continue;
      std::set<profile_id> candidates;
      for (const std::string& norm : w->second) {
        std::vector<profile_id> found;
        OPENDSR_TRY(t.scan(identity_prefix(ws, type, norm), {}, [&](std::string_view key, std::string_view) {
          found.push_back(read_mpid(key.substr(key.size() - 8)));
          return true;
        }));
        for (profile_id id : found) {
          auto ok = is_eligible(id);
          if (!ok) return std::move(ok).error();
          if (*ok) candidates.insert(id);
        }
      }
      if (candidates.empty()) continue;
      if (!running) {
        running = std::move(candidates);
      } else {
        std::set<profile_id> both;
        std::set_intersection(running->begin(), running->end(), candidates.begin(), candidates.end(),
                              std::inserter(both, both.end()));
        if (both.empty()) continue;  // rule 4: skip an identity that would empty the set
        running = std::move(both);
      }
      if (running->size() == 1) break;
    }
    if (!running || running->size() != 1) return std::optional<profile_id>();  // rule 5
    return std::optional<profile_id>(*running->begin());
  }

  result<std::vector<identity>> identities(std::string_view ws, profile_id id) override {
    auto txn = store_.begin_read();
    if (!txn) return std::move(txn).error();
    auto p = read_profile(**txn, ws, id);
    if (!p) return std::move(p).error();
    std::vector<identity> out = std::move(p->identities);
    std::sort(out.begin(), out.end(), [](const identity& a, const identity& b) {
      return std::pair(a.type, std::string_view(a.value)) < std::pair(b.type, std::string_view(b.value));
    });
    return out;
  }

  result<void> records(std::string_view ws, profile_id id, const subject_record_visitor& visit) override {
    std::uint64_t end = 0;
    {
      std::string attributes;
      {
        auto txn = store_.begin_read();
        if (!txn) return std::move(txn).error();
        auto p = read_profile(**txn, ws, id);
        if (!p) return std::move(p).error();
        end = p->next_seq;
        attributes = std::move(p->attributes);
      }
      if (!visit({subject_record::kind::attributes, 0, attributes})) return {};
    }
    const std::string prefix = events_prefix(ws, id);
    const std::string pkey = profile_key(ws, id);
    std::vector<std::pair<std::uint64_t, std::string>> page;
    page.reserve(options_.page_events);
    for (std::uint64_t next = 0; next < end;) {
      page.clear();
      {
        auto txn = store_.begin_read();
        if (!txn) return std::move(txn).error();
        auto alive = (*txn)->get(pkey);
        if (!alive) return std::move(alive).error();
        if (!*alive) return error(errc::not_found, "the profile was erased during the walk");
        OPENDSR_TRY((*txn)->scan(prefix, event_key(prefix, next), [&](std::string_view key, std::string_view value) {
          const std::uint64_t seq = read_u64(key.substr(prefix.size()));
          if (seq >= end) return false;
          page.emplace_back(seq, std::string(value));
          return page.size() < options_.page_events;
        }));
      }
      if (page.empty()) break;
      for (const auto& [seq, json] : page)
        if (!visit({subject_record::kind::event, seq, json})) return {};
      next = page.back().first + 1;
    }
    return {};
  }

  result<erasure_receipt> erase(std::string_view ws, profile_id id) override {
    auto txn = store_.begin_write();
    if (!txn) return std::move(txn).error();
    write_transaction& t = **txn;
    auto p = read_profile(t, ws, id);
    if (!p) return std::move(p).error();
    auto key = tombstone_key(t);
    if (!key) return std::move(key).error();

    erasure_receipt receipt;
    receipt.key_id = hex(detail::as_bytes(detail::sha256(*key)).substr(0, 8));
    receipt.identity_hashes.push_back(
        hex(detail::as_bytes(detail::hmac_sha256(*key, "mpid:" + std::to_string(id)))));
    for (const auto& i : p->identities) {
      const std::string norm = normalise(i.type, i.value);
      OPENDSR_TRY(t.erase(identity_key(ws, i.type, norm, id)));
      receipt.identity_hashes.push_back(
          hex(detail::as_bytes(detail::hmac_sha256(*key, std::string(internal_name(i.type)) + ":" + norm))));
    }
    std::sort(receipt.identity_hashes.begin(), receipt.identity_hashes.end());
    receipt.identity_hashes.erase(std::unique(receipt.identity_hashes.begin(), receipt.identity_hashes.end()),
                                  receipt.identity_hashes.end());
    const std::string prefix = events_prefix(ws, id);
    for (std::uint64_t seq = 0; seq < p->next_seq; ++seq) {
      auto gone = t.erase(event_key(prefix, seq));
      if (!gone) return std::move(gone).error();
      if (*gone) ++receipt.events_erased;
    }
    OPENDSR_TRY(t.erase(profile_key(ws, id)));
    OPENDSR_TRY(t.put(tombstone_record_key(ws, id), encode_receipt(receipt)));
    OPENDSR_TRY(t.commit());
    return receipt;
  }

  result<void> write(std::string_view ws, std::span<const profile_write> writes) override {
    auto txn = store_.begin_write();
    if (!txn) return std::move(txn).error();
    write_transaction& t = **txn;
    std::optional<identity_config> cfg;
    for (std::size_t wi = 0; wi < writes.size(); ++wi) {
      const profile_write& w = writes[wi];
      const std::string field = "writes[" + std::to_string(wi) + "]";
      const std::string pkey = profile_key(ws, w.id);
      auto got = t.get(pkey);
      if (!got) return std::move(got).error();
      std::optional<profile_record> current;
      if (*got) {
        auto p = decode_profile(**got);
        if (!p) return std::move(p).error();
        current = std::move(*p);
      }
      if (w.attributes) {
        if (!is_json_object(*w.attributes))
          return error(errc::invalid_argument, field + ".attributes: not a JSON object");
        if (!cfg) {
          auto c = read_config(t, ws);
          if (!c) return std::move(c).error();
          cfg = std::move(*c);
        }
        profile_record next;
        next.next_seq = current ? current->next_seq : 0;
        next.attributes = *w.attributes;
        if (current)  // the old identity set goes; the new one replaces it
          for (const auto& i : current->identities)
            OPENDSR_TRY(t.erase(identity_key(ws, i.type, normalise(i.type, i.value), w.id)));
        std::set<std::pair<identity_type, std::string>> seen;
        for (std::size_t ii = 0; ii < w.identities.size(); ++ii) {
          const identity& i = w.identities[ii];
          const std::string f = field + ".identities[" + std::to_string(ii) + "]";
          if (!valid_type(i.type)) return error(errc::invalid_argument, f + ": an unknown identity type");
          if (i.type == identity_type::mpid)
            return error(errc::invalid_argument, f + ": a profile's mpid is its id, not one of its identities");
          std::string norm = normalise(i.type, i.value);
          if (norm.empty())
            return error(errc::invalid_argument,
                         f + ": a " + std::string(opendsr_name(i.type)) + " value is empty once normalised");
          if (!seen.emplace(i.type, norm).second) continue;  // the same identity twice: kept once
          if (contains(cfg->unique, i.type)) {
            bool taken = false;
            OPENDSR_TRY(t.scan(identity_prefix(ws, i.type, norm), {}, [&](std::string_view key, std::string_view) {
              taken = read_mpid(key.substr(key.size() - 8)) != w.id;
              return !taken;
            }));
            if (taken)
              return error(errc::invalid_argument, f + ": another profile holds this " +
                                                       std::string(opendsr_name(i.type)) +
                                                       ", a unique identity type");
          }
          OPENDSR_TRY(t.put(identity_key(ws, i.type, norm, w.id), {}));
          next.identities.push_back(i);
        }
        current = std::move(next);
      } else if (!w.identities.empty()) {
        return error(errc::invalid_argument, field + ".identities: given without attributes");
      }
      if (!current) return error(errc::not_found, field + ": no such profile in the workspace");
      const std::string prefix = events_prefix(ws, w.id);
      for (std::size_t ei = 0; ei < w.events.size(); ++ei) {
        if (!is_json_object(w.events[ei]))
          return error(errc::invalid_argument, field + ".events[" + std::to_string(ei) + "]: not a JSON object");
        OPENDSR_TRY(t.put(event_key(prefix, current->next_seq++), w.events[ei]));
      }
      OPENDSR_TRY(t.put(pkey, encode(*current)));
    }
    return t.commit();
  }

  result<identity_config> config(std::string_view ws) override {
    auto txn = store_.begin_read();
    if (!txn) return std::move(txn).error();
    return read_config(**txn, ws);
  }

  result<void> configure(std::string_view ws, const identity_config& c) override {
    OPENDSR_TRY(validate(c));
    auto txn = store_.begin_write();
    if (!txn) return std::move(txn).error();
    OPENDSR_TRY((*txn)->put(config_key(ws), encode(c)));
    return (*txn)->commit();
  }

 private:
  static result<identity_config> read_config(read_transaction& t, std::string_view ws) {
    auto got = t.get(config_key(ws));
    if (!got) return std::move(got).error();
    if (!*got) return default_identity_config();
    return decode_config(**got);
  }

  static result<profile_record> read_profile(read_transaction& t, std::string_view ws, profile_id id) {
    auto got = t.get(profile_key(ws, id));
    if (!got) return std::move(got).error();
    if (!*got) return error(errc::not_found, "no such profile in the workspace");
    return decode_profile(**got);
  }

  // The configured key, or the store's own, made now if it has none.
  result<std::string> tombstone_key(write_transaction& t) {
    if (!options_.tombstone_key.empty()) return options_.tombstone_key;
    auto got = t.get(hash_key_key());
    if (!got) return std::move(got).error();
    if (*got) return std::string(**got);
    const std::string key = detail::random_bytes(tombstone_key_size);
    OPENDSR_TRY(t.put(hash_key_key(), key));
    return key;
  }

  storage& store_;
  const subject_store_options options_;
};

}  // namespace

std::vector<identity_type> default_identity_priority() {
  using enum identity_type;
  return {controller_customer_id, mobile_number, phone_number_2, phone_number_3, email,
          other, other2, other3, other4, other5, other6, other7, other8, other9, other10,
          ios_advertising_id, ios_vendor_id, android_advertising_id, android_id, fire_advertising_id,
          roku_advertising_id, roku_publisher_id, microsoft_publisher_id, microsoft_advertising_id};
}

identity_config default_identity_config() {
  return {.priority = default_identity_priority(),
          .unique = {identity_type::controller_customer_id},
          .login = {identity_type::controller_customer_id}};
}

result<std::unique_ptr<subject_data>> open_subject_store(storage& store, subject_store_options options) {
  if (!options.tombstone_key.empty() && options.tombstone_key.size() < tombstone_key_size)
    return error(errc::invalid_argument, "subject_store_options.tombstone_key: shorter than 32 bytes");
  if (options.page_events == 0)
    return error(errc::invalid_argument, "subject_store_options.page_events: must be > 0");
  return std::unique_ptr<subject_data>(std::make_unique<storage_subject_data>(store, std::move(options)));
}

}  // namespace opendsr
