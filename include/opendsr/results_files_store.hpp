// results_files_store: the results store seam on files in one directory, the default.
//
// It meets the whole contract of <opendsr/results_store.hpp> with the standard library and POSIX
// only (no Meson feature: it is always built). docs/results-store.md draws the layout.
//
// Decisions
// - Layout: a committed package is the file <directory>/<token>, mode 0600. A package being
//   written is <directory>/.partial-<token>-<16 hex random>, created with O_CREAT|O_EXCL, mode
//   0600; appends go straight to it with write(2) (no buffer beyond the caller's chunk).
// - commit(): fsync the temporary file, close it, rename(2) it onto <token> (atomic, replacing any
//   previous package), then fsync the directory so the rename itself survives a power loss.
// - open_directory(): creates the directory (mode 0700; missing parents get the umask) if absent,
//   takes an exclusive flock(2) on <directory>/.lock (a second owner, in this process or
//   another, is errc::storage_locked), then removes every .partial-* file, the leftovers of
//   writers a crash interrupted, and fsyncs the directory. partials_removed() says how many.
// - Other files in the directory (not tokens, not .partial-*, not .lock) are left alone and never
//   listed: give the store a directory of its own.
// - Readers hold an open file descriptor, so a package removed or replaced while read is read to
//   its end (POSIX unlink semantics); its disk space is freed when the last reader closes.
// - Errors: ENOSPC and EDQUOT are errc::storage_full, other system errors errc::storage_io, with a
//   message naming the path, the operation and strerror(errno).
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/results_store.hpp>

#include <cstddef>
#include <filesystem>
#include <memory>

namespace opendsr {

struct results_files_options {
  // The directory that holds the packages; created when absent (itself mode 0700, missing parents
  // with the umask).
  // REQUIRES: not empty. No default.
  std::filesystem::path directory;
};

class results_files_store final : public results_store {
 public:
  // Opens (creating when absent) the store in options.directory and removes the leftovers of
  // interrupted writers. Errors: invalid_argument (empty directory), storage_io (the directory
  // cannot be created, opened or written), storage_locked (another owner holds it).
  static result<std::unique_ptr<results_files_store>> open_directory(results_files_options options);

  ~results_files_store() override;

  result<std::unique_ptr<results_writer>> begin(std::string_view token) override;
  result<std::unique_ptr<results_reader>> open(std::string_view token) override;
  result<bool> remove(std::string_view token) override;
  result<std::vector<std::string>> list() override;

  // How many temporary files of interrupted writers open_directory() removed.
  std::size_t partials_removed() const noexcept { return partials_removed_; }

  const std::filesystem::path& directory() const noexcept { return directory_; }

 private:
  results_files_store(std::filesystem::path directory, int dir_fd, int lock_fd);

  std::filesystem::path directory_;
  int dir_fd_;
  int lock_fd_;
  std::size_t partials_removed_ = 0;
};

}  // namespace opendsr
