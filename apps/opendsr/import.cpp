// opendsr import (docs/import.md). One pass over the input, a line at a time: each line is parsed
// and checked here, then the good ones are written through subject_data::write in batches of at
// most batch_lines lines (and about 8 MiB), one transaction each. A batch the store refuses (a
// unique identity another profile holds, events for a profile that does not exist) names the
// write at fault (subject_data.hpp: "writes[3].events[0]: ..."): that line is reported and left
// out, and the rest of the batch is written again.
#include "import.hpp"

#include "common/data_dir.hpp"

#include <opendsr/botan.hpp>
#include <opendsr/identity.hpp>
#include <opendsr/subject_data.hpp>
#include <opendsr/workspaces.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr::app {
namespace {

namespace json = boost::json;
using steady = std::chrono::steady_clock;

// A longer line is refused without being held in memory.
constexpr std::size_t max_line_bytes = std::size_t{16} << 20;
// A batch is written once it holds this many bytes of JSON, whatever its line count.
constexpr std::size_t max_batch_bytes = std::size_t{8} << 20;

// Reads lines (without '\n', and without a '\r' before it) in bounded memory.
class line_reader {
 public:
  explicit line_reader(std::FILE* in) : in_(in), buffer_(1 << 16) {}

  // Returns false at the end of the input (or on a read error: see failed()). `overlong` is set
  // when the line was longer than max_line_bytes; `line` then holds only its beginning.
  bool next(std::string& line, bool& overlong) {
    line.clear();
    overlong = false;
    bool any = false;
    for (;;) {
      if (pos_ == end_) {
        if (!fill()) {
          if (any && !overlong && !line.empty() && line.back() == '\r') line.pop_back();
          return any;
        }
      }
      any = true;
      const char* begin = buffer_.data() + pos_;
      const void* nl = std::memchr(begin, '\n', end_ - pos_);
      const std::size_t n = nl ? static_cast<const char*>(nl) - begin : end_ - pos_;
      if (!overlong) {
        if (line.size() + n > max_line_bytes)
          overlong = true;
        else
          line.append(begin, n);
      }
      bytes_ += n;
      pos_ += n;
      if (nl) {
        ++pos_;
        ++bytes_;
        if (!overlong && !line.empty() && line.back() == '\r') line.pop_back();
        return true;
      }
    }
  }
  std::uint64_t bytes() const noexcept { return bytes_; }
  bool failed() const noexcept { return failed_; }

 private:
  bool fill() {
    pos_ = 0;
    end_ = std::fread(buffer_.data(), 1, buffer_.size(), in_);
    if (end_ == 0 && std::ferror(in_)) failed_ = true;
    return end_ > 0;
  }
  std::FILE* in_;
  std::vector<char> buffer_;
  std::size_t pos_ = 0, end_ = 0;
  std::uint64_t bytes_ = 0;
  bool failed_ = false;
};

// A name from the input (a field or identity type) is shown only when it looks like one, so that
// a value pasted where a name belongs is never echoed.
std::string shown_name(std::string_view name) {
  const bool plain = !name.empty() && name.size() <= 40 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
  return plain ? "\"" + std::string(name) + "\"" : "(name not shown)";
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

// A write of the batch and the lines it came from (consecutive lines of one mpid share a write).
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
  rest = message.substr(r.ptr + 1 - message.data());
  e.reset();
  constexpr std::string_view events = ".events[";
  if (rest.starts_with(events)) {
    std::size_t index = 0;
    const char* q = rest.data() + events.size();
    const char* rest_end = rest.data() + rest.size();
    auto s = std::from_chars(q, rest_end, index);
    if (s.ec != std::errc() || s.ptr == rest_end || *s.ptr != ']') return false;
    e = index;
    rest = rest.substr(s.ptr + 1 - rest.data());
  }
  if (rest.starts_with(": ")) rest.remove_prefix(2);
  else if (rest.starts_with(".")) rest.remove_prefix(1);
  return true;
}

class importer {
 public:
  importer(subject_data& data, const import_options& options, std::FILE* in, std::optional<std::uint64_t> size)
      : data_(data), options_(options), reader_(in), size_(size), progress_(::isatty(STDERR_FILENO) == 1) {}

  int run() {
    started_ = steady::now();
    std::string line;
    bool overlong = false;
    while (reader_.next(line, overlong)) {
      ++lines_;
      if (overlong) {
        refuse(lines_, "longer than 16 MiB");
      } else if (line.find_first_not_of(" \t\r") == std::string::npos) {
        // a blank line: skipped
      } else {
        parsed_line p;
        if (auto bad = parse_line(line, p))
          refuse(lines_, *bad);
        else
          add(lines_, std::move(p));
      }
      if (batch_lines_ >= options_.batch_lines || batch_bytes_ >= max_batch_bytes) {
        if (!flush()) return finish(true);
      }
      show_progress(false);
    }
    if (reader_.failed()) {
      clear_progress();
      std::fprintf(stderr, "opendsr import: reading the input failed after line %llu\n",
                   static_cast<unsigned long long>(lines_));
      flush();
      return finish(true);
    }
    if (!flush()) return finish(true);
    return finish(false);
  }

 private:
  void add(std::uint64_t line, parsed_line p) {
    batch_bytes_ += (p.attributes ? p.attributes->size() : 0) + (p.event ? p.event->size() : 0) + 64;
    ++batch_lines_;
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

  // Writes the batch, leaving out the lines the store refuses. Returns false on a store error
  // that is no line's fault (the import stops).
  bool flush() {
    int conflicts = 0;
    while (!batch_.empty()) {
      std::vector<profile_write> writes;
      writes.reserve(batch_.size());
      for (auto& p : batch_) writes.push_back(std::move(p.write));
      auto r = data_.write(options_.workspace, writes);
      for (std::size_t i = 0; i < batch_.size(); ++i) batch_[i].write = std::move(writes[i]);
      if (r) {
        for (const auto& p : batch_) {
          profiles_ += p.attributes_line != 0;
          events_ += p.event_lines.size();
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
        clear_progress();
        std::fprintf(stderr, "opendsr import: writing lines up to %llu failed: %s\n",
                     static_cast<unsigned long long>(lines_), message.c_str());
        fatal_ = true;
        batch_.clear();
        return false;
      }
      std::string why(reason);
      if (why.starts_with("identities[")) why.erase(10, why.find(']') - 10 + 1);  // the index is ours, not the file's
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
    batch_lines_ = 0;
    batch_bytes_ = 0;
    return true;
  }

  void refuse(std::uint64_t line, const std::string& reason) {
    ++refused_;
    clear_progress();
    std::fprintf(stderr, "opendsr import: line %llu: %s\n", static_cast<unsigned long long>(line), reason.c_str());
  }

  static std::string with_unit(double bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
    char out[32];
    std::snprintf(out, sizeof out, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
    return out;
  }

  // At most ten times a second, on a terminal only.
  void show_progress(bool force) {
    if (!progress_) return;
    const auto now = steady::now();
    if (!force && now - last_progress_ < std::chrono::milliseconds(100)) return;
    last_progress_ = now;
    const double s = std::chrono::duration<double>(now - started_).count();
    const double rate = s > 0 ? lines_ / s : 0;
    std::string text = std::to_string(lines_) + " lines, " + with_unit(static_cast<double>(reader_.bytes()));
    if (size_ && *size_ > 0) {
      char pct[16];
      std::snprintf(pct, sizeof pct, " (%.0f%%)", 100.0 * reader_.bytes() / *size_);
      text += " of " + with_unit(static_cast<double>(*size_)) + pct;
    }
    char tail[96];
    std::snprintf(tail, sizeof tail, ", %.0f lines/s", rate);
    text += tail;
    if (size_ && s > 0 && reader_.bytes() > 0 && reader_.bytes() < *size_) {
      const double eta = (*size_ - reader_.bytes()) / (reader_.bytes() / s);
      std::snprintf(tail, sizeof tail, ", ETA %.0f s", eta);
      text += tail;
    }
    if (refused_ > 0) text += ", " + std::to_string(refused_) + " refused";
    std::fprintf(stderr, "\r\033[K%s", text.c_str());
    std::fflush(stderr);
    shown_ = true;
  }

  void clear_progress() {
    if (!shown_) return;
    std::fprintf(stderr, "\r\033[K");
    shown_ = false;
  }

  int finish(bool failed) {
    clear_progress();
    const double s = std::chrono::duration<double>(steady::now() - started_).count();
    std::printf("imported %llu profile%s and %llu event%s from %llu line%s in %.1f s; %llu line%s refused\n",
                static_cast<unsigned long long>(profiles_), profiles_ == 1 ? "" : "s",
                static_cast<unsigned long long>(events_), events_ == 1 ? "" : "s",
                static_cast<unsigned long long>(lines_), lines_ == 1 ? "" : "s", s,
                static_cast<unsigned long long>(refused_), refused_ == 1 ? "" : "s");
    std::fflush(stdout);
    return failed || fatal_ || refused_ > 0 ? 1 : 0;
  }

  subject_data& data_;
  const import_options& options_;
  line_reader reader_;
  std::optional<std::uint64_t> size_;
  bool progress_;
  bool shown_ = false;
  bool fatal_ = false;
  steady::time_point started_{};
  steady::time_point last_progress_{};
  std::vector<pending_write> batch_;
  std::size_t batch_lines_ = 0;
  std::size_t batch_bytes_ = 0;
  std::uint64_t lines_ = 0, refused_ = 0, profiles_ = 0, events_ = 0;
};

int fail(const std::string& what) {
  std::fprintf(stderr, "opendsr import: %s\n", what.c_str());
  return 1;
}

}  // namespace

int import_command(const import_options& options) {
  if (options.workspace.empty()) {
    std::fprintf(stderr, "opendsr: import needs --workspace W (see opendsr --help)\n");
    return 2;
  }
  if (options.batch_lines == 0) {
    std::fprintf(stderr, "opendsr: import: the batch size must be > 0\n");
    return 2;
  }
  const bool from_stdin = options.file.empty() || options.file == "-";
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(nullptr, std::fclose);
  if (!from_stdin) {
    file.reset(std::fopen(options.file.c_str(), "rb"));
    if (!file) return fail(options.file + ": " + std::strerror(errno));
  }
  std::FILE* in = from_stdin ? stdin : file.get();
  std::optional<std::uint64_t> size;
  struct stat st {};
  if (::fstat(::fileno(in), &st) == 0 && S_ISREG(st.st_mode)) size = static_cast<std::uint64_t>(st.st_size);

  if (!std::filesystem::exists(store_path(options.data_dir)))
    return fail(store_path(options.data_dir).string() + ": no store here (run opendsrd once, or pass --data-dir)");
  auto store = open_store(options.data_dir, sync_mode::durable);
  if (!store) return fail(store.error().message());
  {
    auto hasher = botan::make_secret_hasher();
    if (!hasher) return fail(hasher.error().message());
    workspace_directory workspaces(**store, **hasher);
    auto keys = workspaces.list();
    if (!keys) return fail(keys.error().message());
    if (std::none_of(keys->begin(), keys->end(), [&](const workspace_key& k) { return k.workspace_id == options.workspace; }))
      return fail("no workspace " + options.workspace + " in " + options.data_dir.string() +
                  " (add it with opendsr workspace add)");
  }
  auto data = open_subject_store(**store);
  if (!data) return fail(data.error().message());
  importer run(**data, options, in, size);
  return run.run();
}

}  // namespace opendsr::app
