#include "check/invariants.hpp"

#include "lifecycle/machine.hpp"
#include "outbox/callbacks.hpp"
#include "outbox/forwards.hpp"
#include "outbox/fulfilment_tasks.hpp"
#include "store/codec.hpp"
#include "store/keys.hpp"
#include "store/record.hpp"

#include <boost/json/parse.hpp>

#include <map>
#include <set>
#include <tuple>

namespace opendsr::detail {
namespace {

namespace json = boost::json;

// Everything in the store, sorted into its tables.
struct store_index {
  std::optional<std::string> schema;
  std::map<std::string, request_record> records;  // by ref
  std::map<std::string, std::string> conflicts;   // key -> id
  std::map<std::string, std::string> members;     // key -> id
  std::map<std::string, std::string> counts;      // key -> value
  std::map<std::string, std::string> timers;      // key -> event byte
  // (ref, url index, history index) -> the callback entry's value
  std::map<std::tuple<std::string, std::uint8_t, std::uint8_t>, std::string> callbacks;
  std::set<std::tuple<timestamp, std::string, std::uint8_t, std::uint8_t>> callback_due;  // (due, ref, url, history)
  std::set<std::tuple<std::string, std::uint8_t, std::uint8_t>> callback_dead;            // (ref, url, history)
  std::map<std::string, std::string> tasks;           // ref -> fulfilment task value
  std::set<std::pair<timestamp, std::string>> task_due;  // (due, ref)
  std::map<std::string, std::string> results;         // token -> expires(8) ref
  std::set<std::pair<timestamp, std::string>> results_expiry;  // (expires, token)
  std::map<std::string, std::string> forward_rows;  // the u, j, v and a tables: key -> value
};

class checker {
 public:
  std::vector<std::string> problems;

  void add(std::string problem) { problems.push_back(std::move(problem)); }

  void index_key(store_index& s, std::string_view key, std::string_view value) {
    const std::string k(key), v(value);
    switch (static_cast<keys::table>(key[0])) {
      case keys::table::meta:
        if (k == keys::schema_key()) s.schema = v;
        else if (k != keys::results_key_key()) add("unknown meta key");
        return;
      case keys::table::request: {
        const std::string ref = k.substr(1);
        auto r = decode_record(value);
        if (!r) add("record " + printable(ref) + ": " + r.error().message());
        else if (!keys::is_request_ref(ref) || keys::request_ref(r->workspace, r->subject_request_id) != ref)
          add("record " + r->subject_request_id + " is stored under a key that is not its own");
        else s.records.emplace(ref, std::move(*r));
        return;
      }
      case keys::table::conflict: s.conflicts.emplace(k, v); return;
      case keys::table::group_member: s.members.emplace(k, v); return;
      case keys::table::group_count: s.counts.emplace(k, v); return;
      case keys::table::timer:
        if (keys::parse_timer_key(key)) s.timers.emplace(k, v);
        else add("malformed timer key");
        return;
      case keys::table::workspace: return;  // the workspace directory's: no request invariant
      case keys::table::subject_profile:    // the subject-data store's: no request invariant
      case keys::table::subject_identity:
      case keys::table::subject_event:
      case keys::table::subject_config:
      case keys::table::subject_key:
      case keys::table::subject_tombstone: return;
      case keys::table::callback:
        if (auto at = keys::parse_callback_key(key))
          s.callbacks.emplace(std::tuple(std::string(at->ref), at->url_index, at->history_index), v);
        else
          add("malformed callback key");
        return;
      case keys::table::callback_due:
        if (auto parts = keys::parse_callback_due_key(key))
          s.callback_due.emplace(parts->due, std::string(parts->at.ref), parts->at.url_index, parts->at.history_index);
        else
          add("malformed callback due key");
        return;
      case keys::table::callback_dead:
        if (auto at = keys::parse_callback_dead_key(key))
          s.callback_dead.emplace(std::string(at->ref), at->url_index, at->history_index);
        else
          add("malformed dead-letter key");
        return;
      case keys::table::fulfilment: s.tasks.emplace(k.substr(1), v); return;
      case keys::table::fulfilment_due:
        if (auto parts = keys::parse_fulfilment_due_key(key)) s.task_due.emplace(parts->due, std::string(parts->ref));
        else add("malformed fulfilment due key");
        return;
      case keys::table::results: s.results.emplace(k.substr(1), v); return;
      case keys::table::results_expiry:
        if (auto parts = keys::parse_results_expiry_key(key))
          s.results_expiry.emplace(parts->expires, std::string(parts->token));
        else
          add("malformed results expiry key");
        return;
      case keys::table::output:
      case keys::table::forward_queued:
      case keys::table::forward_batch:
      case keys::table::forward_due: s.forward_rows.emplace(k, v); return;
      case keys::table::outbox_v1: add("a schema-1 outbox entry in a schema-4 store"); return;
    }
    add("key of unknown table " + std::to_string(static_cast<unsigned char>(key[0])));
  }

  void check_conflicts(const store_index& s) {
    std::set<std::string> claimed;
    for (const auto& [ref, r] : s.records) {
      const std::string key = keys::conflict_key(r.workspace, r.type, r.conflict_digest);
      const auto it = s.conflicts.find(key);
      if (is_terminal(r.status)) {
        if (it != s.conflicts.end() && it->second == r.subject_request_id)
          add("terminal request " + r.subject_request_id + " still holds its conflict index entry");
        continue;
      }
      if (it == s.conflicts.end())
        add("non-terminal request " + r.subject_request_id + " has no conflict index entry");
      else if (it->second != r.subject_request_id)
        add("non-terminal request " + r.subject_request_id + " shares its conflict key with " + it->second);
      else
        claimed.insert(key);
    }
    for (const auto& [key, id] : s.conflicts)
      if (!claimed.contains(key)) add("conflict index entry naming " + id + " belongs to no non-terminal request");
  }

  void check_groups(const store_index& s) {
    // members prefix -> seq -> id
    std::map<std::string, std::map<std::uint16_t, std::string>> groups;
    for (const auto& [key, id] : s.members) {
      const std::string prefix = key.substr(0, key.size() - 2);
      const auto seq = static_cast<std::uint16_t>(static_cast<unsigned char>(key[key.size() - 2]) << 8 |
                                                  static_cast<unsigned char>(key[key.size() - 1]));
      groups[prefix][seq] = id;
    }
    std::set<std::string> counted;
    for (const auto& [prefix, members] : groups) {
      const std::string count_key = std::string(1, static_cast<char>(keys::table::group_count)) + prefix.substr(1);
      counted.insert(count_key);
      const auto count = s.counts.find(count_key);
      std::uint64_t n = 0;
      if (count == s.counts.end()) {
        add("a group with " + std::to_string(members.size()) + " members has no count");
      } else {
        byte_reader in(count->second);
        n = in.varint();
        if (!in.ok() || !in.at_end()) add("a group count is damaged");
      }
      if (n != members.size())
        add("a group count says " + std::to_string(n) + " but the group has " + std::to_string(members.size()) +
            " members");
      std::uint16_t expected_seq = 0;
      for (const auto& [seq, id] : members) {
        if (seq != expected_seq++) add("group member sequence numbers have a gap before " + id);
        const request_record* r = find(s, prefix, id);
        if (!r) add("group member " + id + " is not a stored request");
        else if (!r->group_id || keys::group_members_prefix(r->workspace, *r->group_id) != prefix)
          add("group member " + id + " belongs to another group");
      }
    }
    for (const auto& [key, value] : s.counts)
      if (!counted.contains(key)) add("a group count has no members");
    for (const auto& [ref, r] : s.records) {
      if (!r.group_id) continue;
      const auto g = groups.find(keys::group_members_prefix(r.workspace, *r.group_id));
      bool listed = false;
      if (g != groups.end())
        for (const auto& [seq, id] : g->second) listed = listed || id == r.subject_request_id;
      if (!listed) add("request " + r.subject_request_id + " is missing from its group");
    }
  }

  void check_timers(const store_index& s) {
    std::set<std::string> claimed;
    for (const auto& [ref, r] : s.records) {
      const auto due = timer_due(r);
      if (!due) continue;
      const std::string key = keys::timer_key(*due, ref);
      const auto it = s.timers.find(key);
      if (it == s.timers.end()) {
        add("request " + r.subject_request_id + " (" + std::string(to_string(r.status)) + ") has no timer at " +
            format_rfc3339(*due));
        continue;
      }
      claimed.insert(key);
      if (it->second != std::string(1, static_cast<char>(*timed_event(r.status))))
        add("the timer of request " + r.subject_request_id + " names the wrong event");
    }
    for (const auto& [key, event] : s.timers)
      if (!claimed.contains(key)) add("a timer belongs to no request in a timed status");
  }

  // Rule 6: callbacks not yet delivered, each for a status on its request's path and a URL of it,
  // announcing that status to that URL; per (request, URL) exactly the first live one scheduled
  // (with its due key), dead letters indexed.
  void check_outbox(const store_index& s) {
    std::set<std::tuple<timestamp, std::string, std::uint8_t, std::uint8_t>> scheduled;
    std::set<std::tuple<std::string, std::uint8_t, std::uint8_t>> dead;
    std::optional<std::pair<std::string, std::uint8_t>> chain;  // the chain being walked
    bool head_seen = false;
    for (const auto& [position, value] : s.callbacks) {
      const auto& [ref, u, h] = position;
      const auto it = s.records.find(ref);
      if (it == s.records.end()) {
        add("a callback belongs to no stored request");
        continue;
      }
      const request_record& r = it->second;
      std::vector<request_status> path{r.status};
      while (path.back() != request_status::pending) path.push_back(previous_status(path.back()));
      std::reverse(path.begin(), path.end());
      const std::string what = "callback " + std::to_string(h) + "/" + std::to_string(u) + " of request " +
                               r.subject_request_id;
      // A forwarded request numbers its callbacks in order (status and distribution changes).
      const bool numbered = !r.distribution.empty();
      if ((numbered ? h > r.callback_seq : h >= path.size()) || u >= r.callback_urls.size()) {
        add(what + " is for a status or URL the request does not have");
        continue;
      }
      auto e = decode_callback_entry(value);
      if (!e) {
        add(what + ": " + e.error().message());
        continue;
      }
      check_callback(what, r, numbered ? path : std::vector{path[h]}, r.callback_urls[u], *e);
      if (chain != std::pair(ref, u)) chain = std::pair(ref, u), head_seen = false;
      if (e->dead) {
        dead.emplace(ref, u, h);
        continue;
      }
      if (e->scheduled.has_value() == head_seen)
        add(what + (head_seen ? " is scheduled behind an earlier callback" : " heads its chain but is not scheduled"));
      head_seen = true;
      if (e->scheduled) scheduled.emplace(*e->scheduled, ref, u, h);
    }
    if (scheduled != s.callback_due) add("the callback due index disagrees with the scheduled callbacks");
    if (dead != s.callback_dead) add("the dead-letter index disagrees with the dead callbacks");
  }

  // Rule 7: a fulfilment task per request at most, only while it is in progress, indexed at its
  // due time; results tokens name completed requests, and only those names expire; an ended
  // request keeps neither its body nor its identity digest.
  void check_fulfilment(const store_index& s) {
    std::set<std::pair<timestamp, std::string>> due;
    for (const auto& [ref, value] : s.tasks) {
      const auto r = s.records.find(ref);
      auto t = decode_fulfilment_task(value);
      if (r == s.records.end()) add("a fulfilment task belongs to no stored request");
      else if (r->second.status != request_status::in_progress)
        add("request " + r->second.subject_request_id + " has a fulfilment task but is " + std::string(to_string(r->second.status)));
      if (!t) add("a fulfilment task: " + t.error().message());
      else due.emplace(t->due, ref);
    }
    if (due != s.task_due) add("the fulfilment due index disagrees with the tasks");
    std::set<std::pair<timestamp, std::string>> expiring;
    for (const auto& [token, value] : s.results) {
      const std::string ref = value.size() > 8 ? value.substr(8) : std::string();
      const auto r = s.records.find(ref);
      if (r == s.records.end()) add("a results token names no stored request");
      else if (r->second.status != request_status::completed) add("a results token names a request that is not completed");
      if (value.size() > 8) expiring.emplace(keys::read_time(value), token);
    }
    for (const auto& e : s.results_expiry)
      if (!expiring.contains(e)) add("a results expiry entry disagrees with its token");
    for (const auto& [ref, r] : s.records)
      if (is_terminal(r.status) && (!r.body.empty() || r.conflict_digest != sha256_digest{}))
        add("ended request " + r.subject_request_id + " still holds its body or its identity digest");
  }

  // The callback announces one of `statuses` (the one its position names, or, for a forwarded
  // request, any on its path).
  void check_callback(const std::string& what, const request_record& r, const std::vector<request_status>& statuses,
                      const std::string& url, const callback_entry& entry) {
    if (entry.url != url) add(what + " goes to the wrong URL");
    boost::system::error_code ec;
    json::value body = json::parse(entry.body, ec);
    if (ec || !body.is_object()) return add(what + " has a body that is not a JSON object");
    const json::object& o = body.get_object();
    auto is = [&](const char* key, std::string_view expected) {
      const json::value* v = o.if_contains(key);
      return v && v->is_string() && v->get_string() == expected;
    };
    const bool announced = std::any_of(statuses.begin(), statuses.end(),
                                       [&](request_status st) { return is("request_status", to_string(st)); });
    if (!announced || !is("status_callback_url", url) ||
        !is("subject_request_id", r.subject_request_id) || !is("controller_id", r.workspace))
      add(what + " has a body that does not announce it");
  }

 private:
  static std::string printable(std::string_view bytes) {
    std::string out;
    for (char c : bytes) out += (c >= 0x20 && c < 0x7F) ? c : '.';
    return out;
  }

  static const request_record* find(const store_index& s, std::string_view members_prefix, const std::string& id) {
    // members_prefix is: table, component(workspace), component(group).
    const std::size_t ws_size = keys::component_size(members_prefix.substr(1));
    std::string ref(members_prefix.substr(1, ws_size));
    keys::append_component(ref, id);
    const auto it = s.records.find(ref);
    return it == s.records.end() ? nullptr : &it->second;
  }
};

}  // namespace

result<std::vector<std::string>> check_invariants(read_transaction& txn) {
  checker c;
  store_index s;
  OPENDSR_TRY(txn.scan({}, {}, [&](std::string_view key, std::string_view value) {
    c.index_key(s, key, value);
    return true;
  }));
  if (s.schema != std::string(1, keys::schema_version)) c.add("the schema version entry is missing or unknown");
  c.check_conflicts(s);
  c.check_groups(s);
  c.check_timers(s);
  c.check_outbox(s);
  c.check_fulfilment(s);
  // Rule 8: the forwarding tables (outbox/forwards.hpp states them).
  for (std::string& p : check_forward_tables(s.forward_rows, s.records)) c.add(std::move(p));
  return std::move(c.problems);
}

}  // namespace opendsr::detail
