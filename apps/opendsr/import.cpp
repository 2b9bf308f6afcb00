// opendsr import (docs/import.md). One pass over the input, a line at a time, in bounded memory:
// lines are gathered into batches of at most batch_lines lines (and about 8 MiB), and each batch
// goes to one of two sinks. With --data-dir only (opendsrd stopped), detail::import_lines parses,
// checks and writes it into the store in one transaction; with --url, it is the body of one
// POST {url}/v3/subject-data to the running opendsrd, which does the same there. Either way the
// batch's refused lines come back by number and are reported here, never with a value.
#include "import.hpp"

#include "common/data_dir.hpp"
#if OPENDSR_HAVE_OPENSSL
#include "daemon_client.hpp"
#endif
// Engine internals (the tool is built with opendsr's own sources, not as an embedder).
#include "subject/import_lines.hpp"

#include <opendsr/botan.hpp>
#include <opendsr/subject_data.hpp>
#include <opendsr/workspaces.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace opendsr::app {
namespace {

namespace json = boost::json;
using steady = std::chrono::steady_clock;

// A longer line is refused without being held in memory (and would not fit a request body).
constexpr std::size_t max_line_bytes = detail::max_import_line_bytes;
// A batch is written (or sent) once it holds this many bytes, whatever its line count.
constexpr std::size_t max_batch_bytes = detail::max_transaction_bytes;

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


// Where batches go. write() returns the batch's report (refused lines numbered from
// first_line), or an error that stops the import; the batch then changed nothing.
class batch_sink {
 public:
  virtual ~batch_sink() = default;
  virtual result<detail::import_report> write(std::string_view jsonl, std::uint64_t first_line) = 0;
};

// Straight into the store: one transaction per batch.
class store_sink final : public batch_sink {
 public:
  store_sink(subject_data& data, std::string_view workspace) : data_(data), workspace_(workspace) {}
  result<detail::import_report> write(std::string_view jsonl, std::uint64_t first_line) override {
    return detail::import_lines(data_, workspace_, jsonl, first_line, SIZE_MAX, SIZE_MAX);
  }

 private:
  subject_data& data_;
  std::string workspace_;
};

#if OPENDSR_HAVE_OPENSSL
// To opendsrd: one POST {url}/v3/subject-data per batch, with the workspace's Basic credentials.
class http_sink final : public batch_sink {
 public:
  explicit http_sink(daemon_client client) : client_(std::move(client)) {}

  result<detail::import_report> write(std::string_view jsonl, std::uint64_t first_line) override {
    auto r = client_.send("POST", "/v3/subject-data", "application/x-ndjson", std::string(jsonl));
    if (!r) return std::move(r).error();
    return report(*r, first_line);
  }

 private:
  static result<detail::import_report> report(const http_client_response& r, std::uint64_t first_line) {
    if (r.status != 200) return daemon_client::refusal(r);
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    const json::object* o = ec ? nullptr : v.if_object();
    const json::array* refused = o && o->contains("refused") ? o->at("refused").if_array() : nullptr;
    auto count = [&](std::string_view key) -> std::optional<std::uint64_t> {
      const json::value* n = o ? o->if_contains(key) : nullptr;
      if (!n || !n->is_int64() || n->get_int64() < 0) return std::nullopt;
      return static_cast<std::uint64_t>(n->get_int64());
    };
    const auto lines = count("lines"), profiles = count("profiles"), events = count("events");
    if (!refused || !lines || !profiles || !events)
      return error(errc::network_error, "opendsrd's answer to the import is not the report it should be");
    detail::import_report out{.lines = *lines, .profiles = *profiles, .events = *events, .refused = {}};
    for (const json::value& each : *refused) {
      const json::object* e = each.if_object();
      const json::value* line = e ? e->if_contains("line") : nullptr;
      const json::value* reason = e ? e->if_contains("reason") : nullptr;
      if (!line || !line->is_int64() || line->get_int64() < 1 || !reason || !reason->is_string())
        return error(errc::network_error, "opendsrd's answer to the import is not the report it should be");
      out.refused.push_back({first_line - 1 + static_cast<std::uint64_t>(line->get_int64()),
                             std::string(reason->get_string())});
    }
    return out;
  }

  daemon_client client_;
};
#endif

class importer {
 public:
  importer(batch_sink& sink, std::size_t batch_lines, std::FILE* in, std::optional<std::uint64_t> size)
      : sink_(sink), batch_lines_(batch_lines), reader_(in), size_(size), progress_(::isatty(STDERR_FILENO) == 1) {}

  int run() {
    started_ = steady::now();
    std::string line;
    bool overlong = false;
    while (reader_.next(line, overlong)) {
      ++lines_;
      if (overlong) {  // refused here; a blank line in the batch keeps the numbering
        overlong_.push_back({lines_, "longer than 16 MiB"});
        line.clear();
      }
      // The batch is lines joined by '\n' (no final one, so that a line of max_line_bytes fits
      // a body of that size).
      if (batch_line_count_ > 0 && batch_.size() + 1 + line.size() > max_line_bytes) {
        if (!flush()) return finish(true);
      }
      if (batch_line_count_ == 0) batch_first_ = lines_;
      if (batch_line_count_ > 0) batch_ += '\n';
      batch_ += line;
      ++batch_line_count_;
      batch_has_content_ = batch_has_content_ || line.find_first_not_of(" \t\r") != std::string::npos;
      if (batch_line_count_ >= batch_lines_ || batch_.size() >= max_batch_bytes) {
        if (!flush()) return finish(true);
      }
      show_progress();
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
  // Writes (or sends) the batch and reports its refused lines in order. Returns false on an
  // error that is no line's fault (the import stops).
  bool flush() {
    std::vector<detail::refused_line> refused = std::move(overlong_);
    overlong_.clear();
    if (batch_has_content_) {
      auto r = sink_.write(batch_, batch_first_);
      if (!r) {
        clear_progress();
        std::fprintf(stderr, "opendsr import: writing lines up to %llu failed: %s\n",
                     static_cast<unsigned long long>(lines_), r.error().message().c_str());
        reset_batch();
        return false;
      }
      profiles_ += r->profiles;
      events_ += r->events;
      refused.insert(refused.end(), std::make_move_iterator(r->refused.begin()), std::make_move_iterator(r->refused.end()));
      std::stable_sort(refused.begin(), refused.end(), [](const auto& a, const auto& b) { return a.line < b.line; });
    }
    for (const auto& each : refused) refuse(each.line, each.reason);
    reset_batch();
    return true;
  }

  void reset_batch() {
    batch_.clear();
    batch_line_count_ = 0;
    batch_has_content_ = false;
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
  void show_progress() {
    if (!progress_) return;
    const auto now = steady::now();
    if (now - last_progress_ < std::chrono::milliseconds(100)) return;
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
    return failed || refused_ > 0 ? 1 : 0;
  }

  batch_sink& sink_;
  std::size_t batch_lines_;
  line_reader reader_;
  std::optional<std::uint64_t> size_;
  bool progress_;
  bool shown_ = false;
  steady::time_point started_{};
  steady::time_point last_progress_{};
  std::string batch_;
  std::uint64_t batch_first_ = 1;
  std::size_t batch_line_count_ = 0;
  bool batch_has_content_ = false;
  std::vector<detail::refused_line> overlong_;
  std::uint64_t lines_ = 0, refused_ = 0, profiles_ = 0, events_ = 0;
};

int fail(const std::string& what) {
  std::fprintf(stderr, "opendsr import: %s\n", what.c_str());
  return 1;
}

int usage(const char* what) {
  std::fprintf(stderr, "opendsr: import: %s (see opendsr --help)\n", what);
  return 2;
}

}  // namespace

int import_command(const import_options& options) {
  const bool remote = !options.url.empty();
  if (!remote && options.workspace.empty()) {
    std::fprintf(stderr, "opendsr: import needs --workspace W (see opendsr --help)\n");
    return 2;
  }
  if (remote && !options.workspace.empty())
    return usage("with --url the workspace is the API key's: leave out --workspace");
  if (remote && (options.api_key.empty() || options.api_secret.empty()))
    return usage("--url needs --api-key and --api-secret");
  if (!remote && (!options.api_key.empty() || !options.api_secret.empty()))
    return usage("--api-key and --api-secret go with --url");
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

  if (remote) {
#if OPENDSR_HAVE_OPENSSL
    auto client = daemon_client::open({.url = options.url,
                                       .api_key = options.api_key,
                                       .api_secret = options.api_secret,
                                       .timeout = std::chrono::minutes(5),  // a 16 MiB batch committed durably
                                       // a report of 1000 refused lines is ~100 KiB
                                       .max_response_bytes = std::size_t{16} << 20});
    if (!client) return fail(client.error().message());
    http_sink sink(std::move(*client));
    // The daemon takes at most 1000 lines a request (docs/import.md).
    importer run(sink, std::min<std::size_t>(options.batch_lines, 1000), in, size);
    return run.run();
#else
    return fail("--url needs a build with the openssl feature (the HTTP client comes with it)");
#endif
  }

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
  store_sink sink(**data, options.workspace);
  importer run(sink, options.batch_lines, in, size);
  return run.run();
}

}  // namespace opendsr::app
