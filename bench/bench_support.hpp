// What the benchmarks share: ending a run on a broken setup (die, must), and where their stores
// live (a fresh, empty directory for one store, under $OPENDSR_BENCH_DIR when set, a disk to
// measure, else the system's temporary directory).
#pragma once

#include <opendsr/result.hpp>

#include <errno.h>

#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

namespace opendsr::bench {

// Prints "<program>: what" and exits 1: a benchmark whose setup failed measures nothing.
[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}

// The value of r, or die() naming `what`.
template <class T>
T must(result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message());
  return std::move(r).value();
}

class scratch_dir {
 public:
  // `name` tells whose directory it is ("intake", "callback").
  explicit scratch_dir(std::string_view name) {
    static int serial = 0;
    const char* root = std::getenv("OPENDSR_BENCH_DIR");
    path_ = (root ? std::filesystem::path(root) : std::filesystem::temp_directory_path()) /
            ("opendsr-" + std::string(name) + "-bench-" + std::to_string(::getpid()) + "-" + std::to_string(serial++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~scratch_dir() { std::filesystem::remove_all(path_); }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// Warns on stderr when the stores would live on a tmpfs, where durable figures measure no fsync.
inline void warn_if_tmpfs() {
  const char* root = std::getenv("OPENDSR_BENCH_DIR");
  const std::filesystem::path dir = root ? std::filesystem::path(root) : std::filesystem::temp_directory_path();
  constexpr long tmpfs_magic = 0x01021994;
  struct statfs info {};
  if (statfs(dir.c_str(), &info) == 0 && info.f_type == tmpfs_magic)
    std::fprintf(stderr, "%s: WARNING: %s is a tmpfs; the durable figures measure no fsync. "
                         "Set OPENDSR_BENCH_DIR to a directory on a disk.\n", program_invocation_short_name, dir.c_str());
}

}  // namespace opendsr::bench
