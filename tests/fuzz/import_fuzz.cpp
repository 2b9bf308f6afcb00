// libFuzzer target for the JSON Lines import of POST /v3/subject-data
// (detail::import_subject_data over detail::import_lines), run on a fresh memory-storage subject
// store per input. Beyond "no crash, no hang, no sanitizer report", each input checks:
// - the call fails (errc::invalid_request) iff the body is empty, not UTF-8 or holds more than
//   max_subject_import_lines lines; otherwise the answer is a JSON object
//   {"lines","imported","profiles","events","refused":[{"line","reason"}]} with nothing else;
// - lines is the number of lines (a final '\n' ends the last one), imported = profiles + events,
//   refused line numbers are strictly ascending in [1, lines] and name no blank line, and every
//   line that is not blank is either imported or refused: imported + refused = lines - blank;
// - no reason holds 6 bytes in a row of a JSON string value of its line, unless those bytes are
//   also in a key of that line (a field or identity type name, shown when it looks like a name)
//   or in the fixed text reasons are made of (so a value such as "identities" does not count);
// - the store afterwards holds what the imported lines say, applied in order: for each mpid of an
//   imported profile line, the last such line's attributes, identities (each type present, each
//   value one of the line's, at most as many) and the events of the imported event lines, in
//   order; resolve() of its mpid finds it, of its controller_customer_id (unique and login by
//   default) finds it, and of any of its identities finds either nothing or a profile the
//   imported lines made.
#include <opendsr/identity.hpp>
#include <opendsr/memory_storage.hpp>
#include <opendsr/subject_data.hpp>

#include "api/subject_import.hpp"
#include "common/json_text.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr {
namespace {

namespace json = boost::json;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

// The fixed text of every reason (import_lines.cpp's parse_line and the store's write messages
// as import_lines passes them on). A window of a value found here is not a leak.
constexpr std::string_view vocabulary =
    "not JSON ( not a JSON object | unknown field (name not shown) | missing mpid | "
    "mpid: not the decimal text of a signed 64-bit integer | "
    "mpid: not a string or an integer (a signed 64-bit integer) | an event line has no identities or attributes | "
    "event: not a JSON object | attributes: not a JSON object | identities: not a JSON object | "
    "identities: unknown identity type | identities.: the profile's mpid goes in \"mpid\" | "
    ": not a string or an array of strings | : an empty value | : an empty array | longer than 16 MiB | "
    "identities: a value is empty once normalised | identities: another profile holds this , a unique identity type | "
    "no such profile in the workspace | identities: given without attributes | "
    "identities: an unknown identity type | identities: a profile's mpid is its id, not one of its identities | "
    "events: not a JSON object | (reason not shown) | identities: unknown identity type (name not shown) | "
    "unknown field (name not shown)";

void collect(const json::value& v, std::vector<std::string_view>& values, std::vector<std::string_view>& keys) {
  if (v.is_string()) {
    values.push_back(v.get_string());
  } else if (v.is_array()) {
    for (const auto& e : v.get_array()) collect(e, values, keys);
  } else if (v.is_object()) {
    for (const auto& kv : v.get_object()) {
      keys.push_back(kv.key());
      collect(kv.value(), values, keys);
    }
  }
}

void check_reason(std::string_view line, std::string_view reason) {
  boost::system::error_code ec;
  const json::value v = json::parse(line, ec);
  if (ec) return;  // no values to look for
  std::vector<std::string_view> values, keys;
  collect(v, values, keys);
  constexpr std::size_t window = 6;
  for (std::string_view s : values) {
    for (std::size_t i = 0; i + window <= s.size(); ++i) {
      const std::string_view w = s.substr(i, window);
      if (reason.find(w) == std::string_view::npos) continue;
      if (vocabulary.find(w) != std::string_view::npos) continue;
      if (std::any_of(keys.begin(), keys.end(), [&](std::string_view k) { return k.find(w) != std::string_view::npos; }))
        continue;
      std::fprintf(stderr, "reason \"%.*s\" holds input bytes \"%.*s\"\n", static_cast<int>(reason.size()),
                   reason.data(), static_cast<int>(w.size()), w.data());
      require(false, "no reason holds a value of its line");
    }
  }
}

bool blank(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

std::vector<std::string_view> split_lines(std::string_view body) {
  std::vector<std::string_view> out;
  while (!body.empty()) {
    const std::size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    out.push_back(line);
  }
  return out;
}

struct expected_profile {
  std::string attributes;
  std::map<identity_type, std::vector<std::string>> identities;  // as written, in line order
  std::vector<std::string> events;
};

profile_id mpid_of(const json::object& o) {
  const json::value& m = o.at("mpid");
  if (m.is_int64()) return m.get_int64();
  require(m.is_string(), "an imported line's mpid is a string or an integer");
  return std::stoll(std::string(m.get_string()));
}

// Applies the imported lines to a model and compares the store with it.
void check_store(subject_data& data, std::string_view ws, const std::vector<std::string_view>& lines,
                 const std::set<std::uint64_t>& refused) {
  std::map<profile_id, expected_profile> model;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (blank(lines[i]) || refused.count(i + 1)) continue;
    boost::system::error_code ec;
    const json::value v = json::parse(lines[i], ec);
    require(!ec && v.is_object(), "an imported line is a JSON object");
    const json::object& o = v.get_object();
    const profile_id id = mpid_of(o);
    if (const json::value* event = o.if_contains("event")) {
      auto it = model.find(id);
      require(it != model.end(), "an imported event's profile was imported before it");
      it->second.events.push_back(json::serialize(*event));
      continue;
    }
    expected_profile& p = model[id];
    const json::value* attributes = o.if_contains("attributes");
    p.attributes = attributes ? json::serialize(*attributes) : "{}";
    p.identities.clear();
    if (const json::value* ids = o.if_contains("identities")) {
      for (const auto& kv : ids->get_object()) {
        const auto type = identity_type_from_opendsr_name(kv.key());
        require(type.has_value(), "an imported identity type is known");
        auto& values = p.identities[*type];
        if (kv.value().is_array())
          for (const auto& e : kv.value().get_array()) values.emplace_back(e.get_string());
        else
          values.emplace_back(kv.value().get_string());
      }
    }
  }

  for (const auto& [id, p] : model) {
    const identity by_mpid{identity_type::mpid, std::to_string(id)};
    auto r = data.resolve(ws, std::span(&by_mpid, 1));
    require(r && *r && **r == id, "the mpid resolves to its profile");

    std::vector<std::string> records;
    auto walked = data.records(ws, id, [&](const subject_record& rec) {
      records.emplace_back(rec.json);
      return true;
    });
    require(walked.has_value(), "records() of an imported profile");
    require(!records.empty() && records[0] == p.attributes, "the last imported profile line's attributes");
    require(std::equal(records.begin() + 1, records.end(), p.events.begin(), p.events.end()),
            "the imported events, in order");

    auto held = data.identities(ws, id);
    require(held.has_value(), "identities() of an imported profile");
    std::map<identity_type, std::size_t> count;
    for (const identity& i : *held) {
      ++count[i.type];
      auto it = p.identities.find(i.type);
      require(it != p.identities.end(), "a held identity's type is in the last imported profile line");
      require(std::find(it->second.begin(), it->second.end(), i.value) != it->second.end(),
              "a held identity's value is in the last imported profile line");
    }
    for (const auto& [type, values] : p.identities)
      require(count[type] >= 1 && count[type] <= values.size(), "each type of the line is held, at most as often");

    for (const identity& i : *held) {
      auto found = data.resolve(ws, std::span(&i, 1));
      require(found.has_value(), "resolve() of a held identity succeeds");
      if (i.type == identity_type::controller_customer_id)
        require(*found && **found == id, "a unique login identity resolves to its one holder");
      if (*found) require(model.count(**found) == 1, "resolve() finds only profiles the import made");
    }
  }
}

void check(std::string_view body) {
  memory_storage storage;
  auto data = open_subject_store(storage);
  require(data.has_value(), "open_subject_store on memory storage");
  constexpr std::string_view ws = "ws-fuzz";

  const std::vector<std::string_view> lines = split_lines(body);
  auto answer = detail::import_subject_data(**data, ws, body);
  const bool invalid = body.empty() || !detail::is_valid_utf8(body) || lines.size() > detail::max_subject_import_lines;
  if (!answer) {
    require(invalid, "only an empty, non-UTF-8 or too long body fails");
    require(answer.error() == errc::invalid_request, "a bad body is invalid_request");
    return;
  }
  require(!invalid, "an empty, non-UTF-8 or too long body fails");

  boost::system::error_code ec;
  const json::value v = json::parse(*answer, ec);
  require(!ec && v.is_object(), "the report is a JSON object");
  const json::object& o = v.get_object();
  require(o.size() == 5, "the report has five fields");
  for (const char* k : {"lines", "imported", "profiles", "events"})
    require(o.contains(k) && o.at(k).is_number() && (o.at(k).is_uint64() || o.at(k).is_int64()), "counts are integers");
  const auto count = [&](const char* k) { return o.at(k).to_number<std::uint64_t>(); };
  require(o.contains("refused") && o.at("refused").is_array(), "refused is an array");
  const json::array& refused = o.at("refused").get_array();

  require(count("lines") == lines.size(), "lines counts every line");
  require(count("imported") == count("profiles") + count("events"), "imported = profiles + events");
  const auto blanks = static_cast<std::uint64_t>(std::count_if(lines.begin(), lines.end(), blank));
  require(count("imported") + refused.size() == lines.size() - blanks, "each line not blank is imported or refused");

  std::set<std::uint64_t> refused_lines;
  std::uint64_t last = 0;
  for (const json::value& r : refused) {
    require(r.is_object() && r.get_object().size() == 2, "a refusal is {line, reason}");
    const json::object& ro = r.get_object();
    require(ro.contains("line") && (ro.at("line").is_uint64() || ro.at("line").is_int64()), "a refusal's line");
    require(ro.contains("reason") && ro.at("reason").is_string(), "a refusal's reason");
    const auto n = ro.at("line").to_number<std::uint64_t>();
    require(n > last && n <= lines.size(), "refused lines ascend within the body");
    require(!blank(lines[n - 1]), "a blank line is never refused");
    last = n;
    refused_lines.insert(n);
    const json::string& reason = ro.at("reason").get_string();
    require(!reason.empty(), "a reason says something");
    check_reason(lines[n - 1], reason);
  }

  std::uint64_t profile_lines = 0, event_lines = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (blank(lines[i]) || refused_lines.count(i + 1)) continue;
    const json::value line = json::parse(lines[i], ec);
    require(!ec && line.is_object(), "an imported line is a JSON object");
    (line.get_object().contains("event") ? event_lines : profile_lines) += 1;
  }
  require(profile_lines == count("profiles") && event_lines == count("events"), "profiles and events by kind");
  check_store(**data, ws, lines, refused_lines);
}

}  // namespace
}  // namespace opendsr

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  opendsr::check(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
