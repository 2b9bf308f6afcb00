// A fresh, empty directory for one store in a benchmark: under $OPENDSR_BENCH_DIR when set (a
// disk to measure), else the system's temporary directory; removed with the object.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace opendsr::bench {

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

}  // namespace opendsr::bench
