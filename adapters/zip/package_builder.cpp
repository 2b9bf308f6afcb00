// The package builder on libzip (contract in include/opendsr/package_builder.hpp).
//
// One pass over records() writes each entry to a scratch file while hashing it; libzip then
// builds the archive from those files (zip_close streams them through deflate into its own
// temporary file beside the archive and renames it), and the archive is copied into the writer
// in chunks. Nothing holds more than a page of events, a file buffer or a chunk.
#include <opendsr/package_builder.hpp>

#include "common/sha256.hpp"

#include <zip.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace opendsr {
namespace {

namespace fs = std::filesystem;

error io_error(int err, const fs::path& path, std::string_view what) {
  const errc code = (err == ENOSPC || err == EDQUOT) ? errc::storage_full : errc::storage_io;
  return error(code, "package builder: " + std::string(what) + " " + path.string() + ": " + strerror(err));
}

std::string hex(const detail::sha256_digest& d) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(d.size() * 2);
  for (unsigned char c : d) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

// A JSON string literal of s (the processor domain in the manifest).
std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      static constexpr char digits[] = "0123456789abcdef";
      out += "\\u00";
      out.push_back(digits[(c >> 4) & 15]);
      out.push_back(digits[c & 15]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

// The scratch directory of one build, removed with everything in it when destroyed.
class scratch_dir {
 public:
  static result<scratch_dir> make(const fs::path& parent) {
    std::error_code ec;
    fs::path base = parent.empty() ? fs::temp_directory_path(ec) : parent;
    if (ec) return error(errc::storage_io, "package builder: no temporary directory: " + ec.message());
    std::string pattern = (base / "opendsr-package-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) return io_error(errno, base, "mkdtemp in");
    return scratch_dir(fs::path(pattern));
  }
  scratch_dir(scratch_dir&& o) noexcept : path_(std::exchange(o.path_, {})) {}
  scratch_dir& operator=(scratch_dir&&) = delete;
  ~scratch_dir() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const noexcept { return path_; }

 private:
  explicit scratch_dir(fs::path p) : path_(std::move(p)) {}
  fs::path path_;
};

// A file of the package being written: its bytes go to a scratch file and through SHA-256.
struct entry {
  std::string name;
  std::uint64_t size = 0;
  std::string sha256;  // hex, once finished
};

class entry_writer {
 public:
  entry_writer() = default;
  entry_writer(const entry_writer&) = delete;
  entry_writer& operator=(const entry_writer&) = delete;
  ~entry_writer() {
    if (file_ != nullptr) std::fclose(file_);
  }

  result<void> open(const fs::path& dir, std::string name) {
    path_ = dir / name;
    name_ = std::move(name);
    size_ = 0;
    hasher_ = detail::sha256_hasher();
    file_ = std::fopen(path_.c_str(), "wbx");
    if (file_ == nullptr) return io_error(errno, path_, "create");
    return {};
  }

  bool is_open() const noexcept { return file_ != nullptr; }
  std::uint64_t size() const noexcept { return size_; }

  result<void> write(std::string_view bytes) {
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
      return io_error(errno, path_, "write");
    }
    hasher_.update(bytes);
    size_ += bytes.size();
    return {};
  }

  // One JSON value as a line: raw CR and LF (whitespace between tokens, never inside a valid
  // string) become spaces, so the line holds the same value.
  result<void> write_line(std::string_view json) {
    std::size_t start = 0;
    for (std::size_t i = 0; i < json.size(); ++i) {
      if (json[i] == '\n' || json[i] == '\r') {
        if (auto r = write(json.substr(start, i - start)); !r) return r;
        if (auto r = write(" "); !r) return r;
        start = i + 1;
      }
    }
    if (auto r = write(json.substr(start)); !r) return r;
    return write("\n");
  }

  // Closes the file and returns its entry.
  result<entry> finish() {
    std::FILE* f = std::exchange(file_, nullptr);
    if (std::fclose(f) != 0) return io_error(errno, path_, "close");
    return entry{name_, size_, hex(hasher_.finish())};
  }

 private:
  std::FILE* file_ = nullptr;
  fs::path path_;
  std::string name_;
  std::uint64_t size_ = 0;
  detail::sha256_hasher hasher_;
};

result<entry> write_whole(const fs::path& dir, std::string name, std::string_view bytes) {
  entry_writer w;
  if (auto r = w.open(dir, std::move(name)); !r) return r.error();
  if (auto r = w.write(bytes); !r) return r.error();
  return w.finish();
}

bool is_empty_object(std::string_view json) {
  std::string compact;
  for (char c : json) {
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') compact.push_back(c);
    if (compact.size() > 2) return false;
  }
  return compact == "{}";
}

std::string manifest_text(std::string_view domain, std::uint64_t events, const std::vector<entry>& files) {
  std::string m = "{\n  \"format\": \"opendsr-package/1\",\n  \"processor_domain\": " + json_string(domain) +
                  ",\n  \"signature\": \"manifest.sig: RSASSA-PKCS1-v1_5 SHA-256, base64\",\n  \"events\": " +
                  std::to_string(events) + ",\n  \"files\": [";
  for (std::size_t i = 0; i < files.size(); ++i) {
    m += i == 0 ? "\n" : ",\n";
    m += "    {\"name\": " + json_string(files[i].name) + ", \"size\": " + std::to_string(files[i].size) +
         ", \"sha256\": \"" + files[i].sha256 + "\"}";
  }
  m += "\n  ]\n}\n";
  return m;
}

error zip_failure(zip_t* za, std::string_view what) {
  return error(errc::storage_io, "package builder: libzip: " + std::string(what) + ": " + zip_strerror(za));
}

// Builds the archive at `archive` from the scratch files named by `entries` in `dir`.
result<void> build_zip(const fs::path& dir, const fs::path& archive, const std::vector<std::string>& entries) {
  int err = 0;
  zip_t* za = zip_open(archive.c_str(), ZIP_CREATE | ZIP_EXCL, &err);
  if (za == nullptr) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    error e(errc::storage_io, "package builder: libzip: open " + archive.string() + ": " + zip_error_strerror(&ze));
    zip_error_fini(&ze);
    return e;
  }
  for (const std::string& name : entries) {
    const fs::path file = dir / name;
    zip_source_t* src = zip_source_file(za, file.c_str(), 0, -1);
    if (src == nullptr) {
      error e = zip_failure(za, "source " + name);
      zip_discard(za);
      return e;
    }
    if (zip_file_add(za, name.c_str(), src, ZIP_FL_ENC_UTF_8) < 0) {
      zip_source_free(src);
      error e = zip_failure(za, "add " + name);
      zip_discard(za);
      return e;
    }
  }
  if (zip_close(za) != 0) {
    error e = zip_failure(za, "write " + archive.string());
    zip_discard(za);
    return e;
  }
  return {};
}

result<std::uint64_t> copy_into(const fs::path& archive, results_writer& out, std::size_t chunk) {
  const int fd = ::open(archive.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error(errno, archive, "open");
  std::vector<char> buffer(chunk);
  std::uint64_t total = 0;
  result<std::uint64_t> outcome = std::uint64_t{0};
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      outcome = io_error(errno, archive, "read");
      break;
    }
    if (n == 0) {
      outcome = total;
      break;
    }
    if (auto r = out.append(std::string_view(buffer.data(), static_cast<std::size_t>(n))); !r) {
      outcome = r.error();
      break;
    }
    total += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  return outcome;
}

}  // namespace

result<package_summary> build_package(subject_data& data, std::string_view workspace,
                                      std::optional<profile_id> profile, const signer& signer,
                                      results_writer& out, const package_options& options) {
  if (options.max_events_per_file == 0) {
    return error(errc::invalid_argument, "package_options.max_events_per_file: must be > 0");
  }
  if (options.max_bytes_per_file == 0) {
    return error(errc::invalid_argument, "package_options.max_bytes_per_file: must be > 0");
  }
  if (options.copy_chunk_bytes == 0) {
    return error(errc::invalid_argument, "package_options.copy_chunk_bytes: must be > 0");
  }
  auto scratch = scratch_dir::make(options.scratch_directory);
  if (!scratch) return std::move(scratch).error();
  const fs::path files_dir = scratch->path() / "files";
  if (::mkdir(files_dir.c_str(), 0700) != 0) return io_error(errno, files_dir, "mkdir");

  package_summary summary;
  std::vector<entry> entries;
  bool attributes_empty = true;

  if (profile) {
    entry_writer current;
    std::optional<error> failed;
    auto fail = [&](result<void> r) {
      if (r) return true;
      failed = std::move(r).error();
      return false;
    };
    auto finish_current = [&]() -> result<void> {
      auto e = current.finish();
      if (!e) return std::move(e).error();
      entries.push_back(std::move(*e));
      return {};
    };
    std::uint64_t in_file = 0;
    auto walked = data.records(workspace, *profile, [&](const subject_record& rec) {
      if (rec.what == subject_record::kind::attributes) {
        attributes_empty = is_empty_object(rec.json);
        return fail(current.open(files_dir, "profile.jsonl")) && fail(current.write_line(rec.json)) &&
               fail(finish_current());
      }
      if (current.is_open() && (in_file >= options.max_events_per_file ||
                                current.size() + rec.json.size() + 1 > options.max_bytes_per_file)) {
        if (!fail(finish_current())) return false;
      }
      if (!current.is_open()) {
        ++summary.event_files;
        in_file = 0;
        if (!fail(current.open(files_dir, "events-" + std::to_string(summary.event_files) + ".jsonl"))) return false;
      }
      ++in_file;
      ++summary.events;
      return fail(current.write_line(rec.json));
    });
    if (failed) return std::move(*failed);
    if (!walked) return std::move(walked).error();
    if (current.is_open()) {
      if (auto r = finish_current(); !r) return std::move(r).error();
    }
  }

  summary.empty = !profile || (attributes_empty && summary.events == 0);
  if (summary.empty) {
    entries.clear();  // a profile.jsonl of "{}" is not data
    auto e = write_whole(files_dir, "empty.txt",
                         profile ? "The profile found for this request holds no data.\n"
                                 : "No profile matched the identities of this request.\n");
    if (!e) return std::move(e).error();
    entries.push_back(std::move(*e));
  }

  const std::string manifest = manifest_text(signer.processor_domain(), summary.events, entries);
  auto signature = signer.sign(manifest);
  if (!signature) return std::move(signature).error();

  std::vector<std::string> names;
  names.reserve(entries.size() + 2);
  for (const entry& e : entries) names.push_back(e.name);
  for (auto [name, bytes] : {std::pair<const char*, std::string_view>{"manifest.json", manifest},
                             std::pair<const char*, std::string_view>{"manifest.sig", *signature}}) {
    auto e = write_whole(files_dir, name, bytes);
    if (!e) return std::move(e).error();
    names.push_back(e->name);
  }

  const fs::path archive = scratch->path() / "package.zip";
  if (auto r = build_zip(files_dir, archive, names); !r) return std::move(r).error();
  auto copied = copy_into(archive, out, options.copy_chunk_bytes);
  if (!copied) return std::move(copied).error();
  summary.bytes = *copied;
  return summary;
}

}  // namespace opendsr
