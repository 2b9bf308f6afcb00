// import_lines (import_lines.hpp): moved from apps/opendsr/import.cpp so that opendsr import and
// opendsrd's POST /v3/subject-data parse, check and write lines the same way.
#include "subject/import_lines.hpp"

#include <opendsr/identity.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <charconv>
#include <optional>
#include <utility>

namespace opendsr::detail {
namespace {

namespace json = boost::json;

// A name from the input (a field or identity type) is shown only when it looks like one, so that
// a value pasted where a name belongs is never echoed.
std::string shown_name(std::string_view name) {
  const bool plain = !name.empty() && name.size() <= 40 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
  if (!plain) return "(name not shown)";
  std::string shown(1, '"');  // appended: GCC 12 at -O3 reports a false -Wrestrict on "\"" + ...
  shown += name;
  shown += '"';
  return shown;
}

// One line, checked. Either a profile (attributes set) or an event.
struct parsed_line {
  profile_id id = 0;
  std::optional<std::string> attributes;
  std::vector<identity> identities;
  std::optional<std::string> event;
};

// Returns the reason the line is refused, or nullopt and fills `out`.
std::optional<std::string> parse_line(std::string_view text, parsed_line& out) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return "not JSON (" + ec.message() + ")";
  if (!v.is_object()) return std::string("not a JSON object");
  const json::object& o = v.get_object();
  for (const auto& kv : o)
    if (kv.key() != "mpid" && kv.key() != "identities" && kv.key() != "attributes" && kv.key() != "event")
      return "unknown field " + shown_name(kv.key());

  const json::value* mpid = o.if_contains("mpid");
  if (!mpid) return std::string("missing mpid");
  if (mpid->is_int64()) {
    out.id = mpid->get_int64();
  } else if (mpid->is_string()) {
    const json::string& s = mpid->get_string();
    const char* end = s.data() + s.size();
    auto [at, err] = std::from_chars(s.data(), end, out.id);
    if (s.empty() || err != std::errc() || at != end)
      return std::string("mpid: not the decimal text of a signed 64-bit integer");
  } else {
    return std::string("mpid: not a string or an integer (a signed 64-bit integer)");
  }

  const json::value* identities = o.if_contains("identities");
  const json::value* attributes = o.if_contains("attributes");
  if (const json::value* event = o.if_contains("event")) {
    if (identities || attributes) return std::string("an event line has no identities or attributes");
    if (!event->is_object()) return std::string("event: not a JSON object");
    out.event = json::serialize(*event);
    return std::nullopt;
  }
  if (attributes && !attributes->is_object()) return std::string("attributes: not a JSON object");
  out.attributes = attributes ? json::serialize(*attributes) : std::string("{}");
  if (!identities) return std::nullopt;
  if (!identities->is_object()) return std::string("identities: not a JSON object");
  for (const auto& kv : identities->get_object()) {
    const auto type = identity_type_from_opendsr_name(kv.key());
    if (!type) return "identities: unknown identity type " + shown_name(kv.key());
    const std::string field = "identities." + std::string(opendsr_name(*type));
    if (*type == identity_type::mpid) return field + ": the profile's mpid goes in \"mpid\"";
    auto add = [&](const json::value& value) -> std::optional<std::string> {
      if (!value.is_string()) return field + ": not a string or an array of strings";
      if (value.get_string().empty()) return field + ": an empty value";
      out.identities.push_back({*type, std::string(value.get_string())});
      return std::nullopt;
    };
    if (kv.value().is_array()) {
      if (kv.value().get_array().empty()) return field + ": an empty array";
      for (const json::value& each : kv.value().get_array())
        if (auto bad = add(each)) return bad;
    } else if (auto bad = add(kv.value())) {
      return bad;
    }
  }
  return std::nullopt;
}

// A write of the transaction and the lines it came from (consecutive lines of one mpid share a
// write).
struct pending_write {
  profile_write write;
  std::uint64_t attributes_line = 0;  // 0: no profile line
  std::vector<std::uint64_t> event_lines;
};

// Where a refusal of subject_data::write points: "writes[W]..." and, for an event,
// "writes[W].events[E]...". Returns false if the message names no write.
bool refused_write(std::string_view message, std::size_t& w, std::optional<std::size_t>& e, std::string_view& rest) {
  constexpr std::string_view head = "writes[";
  if (!message.starts_with(head)) return false;
  const char* p = message.data() + head.size();
  const char* end = message.data() + message.size();
  auto r = std::from_chars(p, end, w);
  if (r.ec != std::errc() || r.ptr == end || *r.ptr != ']') return false;
  rest = message.substr(static_cast<std::size_t>(r.ptr + 1 - message.data()));
  e.reset();
  constexpr std::string_view events = ".events[";
  if (rest.starts_with(events)) {
    std::size_t index = 0;
    const char* q = rest.data() + events.size();
    const char* rest_end = rest.data() + rest.size();
    auto s = std::from_chars(q, rest_end, index);
    if (s.ec != std::errc() || s.ptr == rest_end || *s.ptr != ']') return false;
    e = index;
    rest = rest.substr(static_cast<std::size_t>(s.ptr + 1 - rest.data()));
  }
  if (rest.starts_with(": ")) rest.remove_prefix(2);
  else if (rest.starts_with(".")) rest.remove_prefix(1);
  return true;
}

class transaction_writer {
 public:
  transaction_writer(subject_data& data, std::string_view workspace, import_report& report)
      : data_(data), workspace_(workspace), report_(report) {}

  void add(std::uint64_t line, parsed_line p) {
    bytes_ += (p.attributes ? p.attributes->size() : 0) + (p.event ? p.event->size() : 0) + 64;
    if (p.event && !batch_.empty() && batch_.back().write.id == p.id) {
      batch_.back().write.events.push_back(std::move(*p.event));
      batch_.back().event_lines.push_back(line);
      return;
    }
    pending_write w;
    w.write.id = p.id;
    if (p.event) {
      w.write.events.push_back(std::move(*p.event));
      w.event_lines.push_back(line);
    } else {
      w.write.attributes = std::move(p.attributes);
      w.write.identities = std::move(p.identities);
      w.attributes_line = line;
    }
    batch_.push_back(std::move(w));
  }

  std::size_t bytes() const noexcept { return bytes_; }

  // Writes the transaction, leaving out the lines the store refuses. Returns the store's error
  // that is no line's fault.
  result<void> flush() {
    int conflicts = 0;
    while (!batch_.empty()) {
      std::vector<profile_write> writes;
      writes.reserve(batch_.size());
      for (auto& p : batch_) writes.push_back(std::move(p.write));
      auto r = data_.write(workspace_, writes);
      for (std::size_t i = 0; i < batch_.size(); ++i) batch_[i].write = std::move(writes[i]);
      if (r) {
        for (const auto& p : batch_) {
          report_.profiles += p.attributes_line != 0;
          report_.events += p.event_lines.size();
        }
        break;
      }
      if (r.error() == errc::storage_conflict && ++conflicts < 10) continue;
      std::size_t w = 0;
      std::optional<std::size_t> e;
      std::string_view reason;
      const std::string message = r.error().message();
      const bool line_fault = (r.error() == errc::invalid_argument || r.error() == errc::not_found) &&
                              refused_write(message, w, e, reason) && w < batch_.size();
      if (!line_fault) {
        batch_.clear();
        bytes_ = 0;
        return std::move(r).error();
      }
      std::string why(reason);
      if (why.starts_with("identities[")) why.erase(10, why.find(']') - 10 + 1);  // the index is ours, not the input's
      pending_write& p = batch_[w];
      if (e && *e < p.event_lines.size()) {  // one event
        refuse(p.event_lines[*e], why);
        p.write.events.erase(p.write.events.begin() + static_cast<std::ptrdiff_t>(*e));
        p.event_lines.erase(p.event_lines.begin() + static_cast<std::ptrdiff_t>(*e));
      } else if (p.attributes_line != 0) {  // the profile line (its events may follow it again)
        refuse(p.attributes_line, why);
        p.write.attributes.reset();
        p.write.identities.clear();
        p.attributes_line = 0;
      } else {  // events of a profile that does not exist: each of their lines
        for (std::uint64_t l : p.event_lines) refuse(l, why);
        p.event_lines.clear();
        p.write.events.clear();
      }
      if (p.attributes_line == 0 && p.event_lines.empty()) batch_.erase(batch_.begin() + static_cast<std::ptrdiff_t>(w));
    }
    batch_.clear();
    bytes_ = 0;
    return {};
  }

  void refuse(std::uint64_t line, std::string reason) { report_.refused.push_back({line, std::move(reason)}); }

 private:
  subject_data& data_;
  std::string_view workspace_;
  import_report& report_;
  std::vector<pending_write> batch_;
  std::size_t bytes_ = 0;
};

}  // namespace

result<import_report> import_lines(subject_data& data, std::string_view workspace, std::string_view jsonl,
                                   std::uint64_t first_line_number, std::size_t batch_lines, std::size_t batch_bytes) {
  if (batch_lines == 0) return error(errc::invalid_argument, "import_lines: batch_lines must be > 0");
  import_report report;
  transaction_writer writer(data, workspace, report);
  std::size_t in_transaction = 0;
  while (!jsonl.empty()) {
    const std::size_t nl = jsonl.find('\n');
    std::string_view line = jsonl.substr(0, nl);
    jsonl.remove_prefix(nl == std::string_view::npos ? jsonl.size() : nl + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    const std::uint64_t number = first_line_number + report.lines;
    ++report.lines;
    if (line.size() > max_import_line_bytes) {
      writer.refuse(number, "longer than 16 MiB");
    } else if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
      // a blank line: skipped
    } else {
      parsed_line p;
      if (auto bad = parse_line(line, p))
        writer.refuse(number, std::move(*bad));
      else
        writer.add(number, std::move(p)), ++in_transaction;
    }
    if (in_transaction >= batch_lines || writer.bytes() >= batch_bytes) {
      if (auto w = writer.flush(); !w) return std::move(w).error();
      in_transaction = 0;
    }
  }
  if (auto w = writer.flush(); !w) return std::move(w).error();
  std::stable_sort(report.refused.begin(), report.refused.end(),
                   [](const refused_line& a, const refused_line& b) { return a.line < b.line; });
  return report;
}

}  // namespace opendsr::detail
