// results_files_store: packages as files in one directory; see <opendsr/results_files_store.hpp>.
#include <opendsr/results_files_store.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

namespace opendsr {
namespace {

constexpr std::string_view partial_prefix = ".partial-";
constexpr const char* lock_name = ".lock";

// An errc for a failed system call, with a message that names the path and the operation.
error system_error(int cause, const std::filesystem::path& path, std::string_view operation) {
  const errc code = (cause == ENOSPC || cause == EDQUOT) ? errc::storage_full : errc::storage_io;
  return error(code, path.string() + ": " + std::string(operation) + ": " + std::strerror(cause));
}

error bad_token() {
  return error(errc::invalid_argument, "results token: must be " + std::to_string(results_token_size) +
                                           " characters of URL-safe base64 (A-Z a-z 0-9 - _)");
}

result<std::string> random_suffix() {
  std::array<unsigned char, 8> raw{};
  std::size_t done = 0;
  while (done < raw.size()) {
    ssize_t n = ::getrandom(raw.data() + done, raw.size() - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return error(errc::internal, "getrandom(2) gave no random bytes for a temporary name");
    done += static_cast<std::size_t>(n);
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : raw) {
    hex.push_back(digits[c >> 4]);
    hex.push_back(digits[c & 15]);
  }
  return hex;
}

result<void> sync_directory(int dir_fd, const std::filesystem::path& directory) {
  if (::fsync(dir_fd) != 0) return system_error(errno, directory, "fsync of the directory");
  return {};
}

class files_writer final : public results_writer {
 public:
  files_writer(int dir_fd, std::filesystem::path directory, std::string temporary, std::string token, int fd)
      : dir_fd_(dir_fd), directory_(std::move(directory)), temporary_(std::move(temporary)), token_(std::move(token)), fd_(fd) {}

  ~files_writer() override { abandon(); }

  result<void> append(std::string_view bytes) override {
    OPENDSR_TRY(check_open());
    while (!bytes.empty()) {
      ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail(system_error(errno, directory_ / temporary_, "write"));
      bytes.remove_prefix(static_cast<std::size_t>(n));
      size_ += static_cast<std::uint64_t>(n);
    }
    return {};
  }

  result<std::uint64_t> commit() override {
    OPENDSR_TRY(check_open());
    if (::fsync(fd_) != 0) return fail(system_error(errno, directory_ / temporary_, "fsync"));
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) return fail(system_error(errno, directory_ / temporary_, "close"));
    if (::renameat(dir_fd_, temporary_.c_str(), dir_fd_, token_.c_str()) != 0)
      return fail(system_error(errno, directory_ / temporary_, "rename to its token"));
    state_ = state::committed;
    // The package is visible; a failure here means only that the rename may not survive a power loss.
    if (auto synced = sync_directory(dir_fd_, directory_); !synced) {
      error_ = synced.error();
      return std::move(synced).error();
    }
    return size_;
  }

  void abandon() noexcept override {
    if (state_ != state::open) return;
    discard();
    state_ = state::abandoned;
  }

  std::uint64_t size() const noexcept override { return size_; }

 private:
  enum class state { open, committed, abandoned, failed };

  result<void> check_open() const {
    switch (state_) {
      case state::open: return {};
      case state::failed: return error_;
      case state::committed: return error(errc::invalid_argument, "results writer: already committed");
      case state::abandoned: return error(errc::invalid_argument, "results writer: already abandoned");
    }
    return errc::internal;
  }

  void discard() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    ::unlinkat(dir_fd_, temporary_.c_str(), 0);
  }

  error fail(error e) {
    discard();
    state_ = state::failed;
    error_ = e;
    return e;
  }

  int dir_fd_;
  std::filesystem::path directory_;
  std::string temporary_;
  std::string token_;
  int fd_;
  std::uint64_t size_ = 0;
  state state_ = state::open;
  error error_{errc::internal};
};

class files_reader final : public results_reader {
 public:
  files_reader(std::filesystem::path path, int fd, std::uint64_t size) : path_(std::move(path)), fd_(fd), size_(size) {}
  ~files_reader() override { ::close(fd_); }

  std::uint64_t size() const noexcept override { return size_; }

  result<std::size_t> read(std::span<char> buffer) override {
    std::size_t done = 0;
    while (done < buffer.size()) {
      ssize_t n = ::pread(fd_, buffer.data() + done, buffer.size() - done, static_cast<off_t>(offset_));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return system_error(errno, path_, "read");
      if (n == 0) break;
      done += static_cast<std::size_t>(n);
      offset_ += static_cast<std::uint64_t>(n);
    }
    return done;
  }

 private:
  std::filesystem::path path_;
  int fd_;
  std::uint64_t size_;
  std::uint64_t offset_ = 0;
};

// Removes every .partial-* entry of the directory; returns how many.
result<std::size_t> remove_partials(int dir_fd, const std::filesystem::path& directory) {
  int fd = ::dup(dir_fd);
  if (fd < 0) return system_error(errno, directory, "dup");
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    int cause = errno;
    ::close(fd);
    return system_error(cause, directory, "opendir");
  }
  ::rewinddir(dir);
  std::size_t removed = 0;
  result<std::size_t> outcome = removed;
  errno = 0;
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name.starts_with(partial_prefix)) {
      if (::unlinkat(dir_fd, entry->d_name, 0) == 0) {
        ++removed;
      } else if (errno != ENOENT) {
        outcome = system_error(errno, directory / name, "removal of a partial package");
        break;
      }
    }
    errno = 0;
  }
  if (outcome && errno != 0) outcome = system_error(errno, directory, "readdir");
  ::closedir(dir);
  if (!outcome) return outcome;
  return removed;
}

}  // namespace

result<std::unique_ptr<results_files_store>> results_files_store::open_directory(results_files_options options) {
  if (options.directory.empty()) return error(errc::invalid_argument, "results store: directory must not be empty");
  const std::filesystem::path& directory = options.directory;
  std::error_code ec;
  const bool created = std::filesystem::create_directories(directory, ec);
  if (ec) return error(errc::storage_io, directory.string() + ": cannot be created: " + ec.message());
  if (created) {
    std::filesystem::permissions(directory, std::filesystem::perms::owner_all, std::filesystem::perm_options::replace, ec);
    if (ec) return error(errc::storage_io, directory.string() + ": chmod 0700: " + ec.message());
  }
  const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return system_error(errno, directory, "open of the directory");
  const int lock_fd = ::openat(dir_fd, lock_name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    int cause = errno;
    ::close(dir_fd);
    return system_error(cause, directory / lock_name, "open");
  }
  // From here the store owns both descriptors: its destructor closes them.
  std::unique_ptr<results_files_store> store(new results_files_store(directory, dir_fd, lock_fd));
  while (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK)
      return error(errc::storage_locked, (directory / lock_name).string() + ": the results store has another owner");
    return system_error(errno, directory / lock_name, "flock");
  }
  auto removed = remove_partials(dir_fd, directory);
  if (!removed) return std::move(removed).error();
  store->partials_removed_ = *removed;
  OPENDSR_TRY(sync_directory(dir_fd, directory));
  if (created) {
    // Make the new directory's own entry durable in its parent.
    const std::filesystem::path parent = std::filesystem::absolute(directory, ec).parent_path();
    if (int parent_fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); parent_fd >= 0) {
      const int synced = ::fsync(parent_fd);
      const int cause = errno;
      ::close(parent_fd);
      if (synced != 0) return system_error(cause, parent, "fsync of the parent directory");
    }
  }
  return store;
}

results_files_store::results_files_store(std::filesystem::path directory, int dir_fd, int lock_fd)
    : directory_(std::move(directory)), dir_fd_(dir_fd), lock_fd_(lock_fd) {}

results_files_store::~results_files_store() {
  ::close(lock_fd_);
  ::close(dir_fd_);
}

result<std::unique_ptr<results_writer>> results_files_store::begin(std::string_view token) {
  if (!is_results_token(token)) return bad_token();
  for (int attempt = 0;; ++attempt) {
    auto suffix = random_suffix();
    if (!suffix) return std::move(suffix).error();
    std::string temporary = std::string(partial_prefix) + std::string(token) + "-" + *suffix;
    const int fd = ::openat(dir_fd_, temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
      return std::unique_ptr<results_writer>(
          std::make_unique<files_writer>(dir_fd_, directory_, std::move(temporary), std::string(token), fd));
    if (errno == EINTR || (errno == EEXIST && attempt < 3)) continue;
    return system_error(errno, directory_ / temporary, "create");
  }
}

result<std::unique_ptr<results_reader>> results_files_store::open(std::string_view token) {
  if (!is_results_token(token)) return bad_token();
  const std::string name(token);
  int fd;
  do {
    fd = ::openat(dir_fd_, name.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == ENOENT) return error(errc::not_found, "results store: no package under this token");
    return system_error(errno, directory_ / name, "open");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int cause = errno;
    ::close(fd);
    return system_error(cause, directory_ / name, "fstat");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return error(errc::storage_corrupt, (directory_ / name).string() + ": not a regular file");
  }
  return std::unique_ptr<results_reader>(
      std::make_unique<files_reader>(directory_ / name, fd, static_cast<std::uint64_t>(st.st_size)));
}

result<bool> results_files_store::remove(std::string_view token) {
  if (!is_results_token(token)) return bad_token();
  const std::string name(token);
  if (::unlinkat(dir_fd_, name.c_str(), 0) != 0) {
    if (errno == ENOENT) return false;
    return system_error(errno, directory_ / name, "remove");
  }
  OPENDSR_TRY(sync_directory(dir_fd_, directory_));
  return true;
}

result<std::vector<std::string>> results_files_store::list() {
  std::vector<std::string> tokens;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(directory_, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (is_results_token(name)) tokens.push_back(std::move(name));
  }
  if (ec) return error(errc::storage_io, directory_.string() + ": cannot be listed: " + ec.message());
  return tokens;
}

}  // namespace opendsr
