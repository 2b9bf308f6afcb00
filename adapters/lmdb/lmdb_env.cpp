#include "lmdb/lmdb_env.hpp"

#include <algorithm>
#include <cerrno>
#include <string>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace opendsr::detail {

namespace fs = std::filesystem;

error lmdb_error(int rc, const fs::path& path, std::string_view operation) {
  errc code = errc::storage_io;
  switch (rc) {
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case MDB_READERS_FULL:
    case MDB_DBS_FULL:
    case MDB_TLS_FULL:
    case MDB_CURSOR_FULL:
    case MDB_PAGE_FULL:
    case ENOSPC:
      code = errc::storage_full;
      break;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
      code = errc::storage_corrupt;
      break;
    case EAGAIN:
    case EBUSY:
      code = errc::storage_locked;
      break;
    case MDB_BAD_VALSIZE:
    case EINVAL:
      code = errc::invalid_argument;
      break;
    case MDB_BAD_TXN:
    case MDB_BAD_RSLOT:
    case MDB_BAD_DBI:
      code = errc::internal;
      break;
    default:  // EACCES, EROFS, EIO, ENOMEM, MDB_PANIC, MDB_MAP_RESIZED, ...
      break;
  }
  return error(code, "LMDB store " + path.string() + ": " + std::string(operation) +
                         " failed: " + mdb_strerror(rc));
}

namespace {

std::size_t round_up(std::size_t n, std::size_t unit) { return (n + unit - 1) / unit * unit; }

result<void> check(const lmdb_options& o) {
  if (o.path.empty()) return error(errc::invalid_argument, "lmdb_options::path is empty");
  if (o.initial_map_size == 0 || o.initial_map_size > o.max_map_size)
    return error(errc::invalid_argument,
                 "lmdb_options: initial_map_size must be at least 1 and at most max_map_size");
  if (o.max_readers == 0) return error(errc::invalid_argument, "lmdb_options::max_readers is 0");
  if (o.growth_wait.count() < 0)
    return error(errc::invalid_argument, "lmdb_options::growth_wait is negative");
  return {};
}

}  // namespace

result<std::unique_ptr<lmdb_env>> lmdb_env::open(lmdb_options options) {
  OPENDSR_TRY(check(options));
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  options.initial_map_size = round_up(options.initial_map_size, page);
  options.max_map_size = round_up(options.max_map_size, page);
  // The destructor releases whatever open_files() acquired before it failed.
  std::unique_ptr<lmdb_env> env(new lmdb_env(std::move(options)));
  OPENDSR_TRY(env->open_files());
  return env;
}

result<void> lmdb_env::open_files() {
  const fs::path& dir = options_.path;
  std::error_code ec;
  if (fs::create_directories(dir, ec)) {
    // New directories hold personal data: owner only.
    fs::permissions(dir, fs::perms::owner_all, ec);
  }
  if (ec) return error(errc::storage_io, "LMDB store " + dir.string() + ": cannot create the directory: " + ec.message());
  if (!fs::is_directory(dir, ec))
    return error(errc::storage_io, "LMDB store " + dir.string() + ": not a directory");

  const fs::path lock_path = dir / "opendsr.lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return fail(errno, "opening " + lock_path.filename().string() + " (is the directory writable?)");
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return error(errc::storage_locked, "LMDB store " + dir.string() +
                                             " is in use by another opendsr process (or another "
                                             "storage object of this one)");
    return fail(errno, "locking opendsr.lock");
  }

  if (int rc = mdb_env_create(&env_); rc != 0) return fail(rc, "creating the environment");
  if (int rc = mdb_env_set_maxreaders(env_, options_.max_readers); rc != 0)
    return fail(rc, "setting max_readers");
  if (int rc = mdb_env_set_mapsize(env_, options_.initial_map_size); rc != 0)
    return fail(rc, "setting the map size");
  // MDB_WRITEMAP: a write transaction builds its pages in the map, in the free pages it reuses,
  // never in heap buffers. Without it LMDB 0.9 recycles its freed page buffers (me_dpages in
  // mdb_page_malloc) without clearing them and copies only the used parts of a page into one
  // (mdb_page_copy), so every later commit could write bytes of erased records, left in those
  // buffers, back into the file after scrub_free_pages() had cleared them. With it the free
  // space of a page written later holds the old content of the free page it reuses, which a
  // scrub has zeroed. Consequences: on Linux LMDB extends data.mdb to the map size (a sparse
  // file; only written pages take disk), and commits are flushed with msync. The adapter uses
  // no nested transaction, which MDB_WRITEMAP forbids.
  unsigned flags = MDB_NOTLS | MDB_WRITEMAP;
  if (options_.sync == sync_mode::no_sync) flags |= MDB_NOSYNC;
  if (int rc = mdb_env_open(env_, dir.c_str(), flags, 0600); rc != 0) return fail(rc, "opening");
  if (int rc = mdb_reader_check(env_, &stale_readers_cleared_); rc != 0)
    return fail(rc, "clearing stale readers");

  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, 0, &txn); rc != 0) return fail(rc, "beginning a write");
  if (int rc = mdb_dbi_open(txn, nullptr, 0, &dbi_); rc != 0) {
    mdb_txn_abort(txn);
    return fail(rc, "opening the database");
  }
  if (int rc = mdb_txn_commit(txn); rc != 0) return fail(rc, "committing");

  MDB_envinfo info;
  if (int rc = mdb_env_info(env_, &info); rc != 0) return fail(rc, "reading the map size");
  map_size_ = info.me_mapsize;
  return {};
}

lmdb_env::~lmdb_env() {
  if (env_ != nullptr) mdb_env_close(env_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

result<MDB_txn*> lmdb_env::begin_txn(unsigned flags) {
  const auto self = std::this_thread::get_id();
  {
    std::unique_lock lock(gate_);
    grown_.wait(lock, [&] { return !growing_ || open_by_thread_.contains(self); });
    ++open_txns_;
    ++open_by_thread_[self];
  }
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, flags, &txn); rc != 0) {
    end_txn(nullptr, self);
    return fail(rc, flags & MDB_RDONLY ? "beginning a read" : "beginning a write");
  }
  return txn;
}

void lmdb_env::end_txn(MDB_txn* txn, std::thread::id began_on) noexcept {
  if (txn != nullptr) mdb_txn_abort(txn);
  std::lock_guard lock(gate_);
  if (auto it = open_by_thread_.find(began_on); it != open_by_thread_.end() && --it->second == 0)
    open_by_thread_.erase(it);
  if (--open_txns_ == 0) idle_.notify_all();
}

void lmdb_env::acquire_writer() {
  std::unique_lock lock(writer_mutex_);
  writer_free_.wait(lock, [&] { return !writing_; });
  writing_ = true;
}

void lmdb_env::release_writer() noexcept {
  {
    std::lock_guard lock(writer_mutex_);
    writing_ = false;
  }
  writer_free_.notify_one();
}

result<void> lmdb_env::grow_map() {
  const std::string where = "LMDB store " + options_.path.string();
  std::unique_lock lock(gate_);
  if (auto it = open_by_thread_.find(std::this_thread::get_id()); it != open_by_thread_.end())
    return error(errc::invalid_argument,
                 where + ": the map must grow, which needs every transaction of the process "
                         "ended, but the writing thread itself holds " +
                     std::to_string(it->second) + " open; end them before writing");
  growing_ = true;
  const bool idle = idle_.wait_for(lock, options_.growth_wait, [&] { return open_txns_ == 0; });
  growing_ = false;
  grown_.notify_all();  // the growth (below) finishes under gate_, before anyone begins
  if (!idle)
    return error(errc::storage_conflict,
                 where + ": the map must grow, but " + std::to_string(open_txns_) +
                     " read transactions stayed open for " +
                     std::to_string(options_.growth_wait.count()) + " ms; re-run the transaction");
  const std::size_t current = map_size_.load();
  if (current >= options_.max_map_size)
    return error(errc::storage_full, where + " is full: the map reached max_map_size (" +
                                         std::to_string(options_.max_map_size) + " bytes)");
  const std::size_t next = std::min(options_.max_map_size, current * 2);
  if (int rc = mdb_env_set_mapsize(env_, next); rc != 0) return fail(rc, "growing the map");
  map_size_ = next;
  return {};
}

}  // namespace opendsr::detail
