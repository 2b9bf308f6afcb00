// The LMDB environment behind lmdb_storage: the owner lock, the map and its growth, the one
// writer, and the translation of LMDB status codes into opendsr errors.
#pragma once

#include <opendsr/error.hpp>
#include <opendsr/lmdb_storage.hpp>
#include <opendsr/result.hpp>

#include <lmdb.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

namespace opendsr::detail {

// The opendsr error for LMDB status `rc` (an MDB_* code or an errno value) returned by
// `operation` on the store at `path`. Never names a key or value.
error lmdb_error(int rc, const std::filesystem::path& path, std::string_view operation);

class lmdb_env {
 public:
  static result<std::unique_ptr<lmdb_env>> open(lmdb_options options);
  ~lmdb_env();
  lmdb_env(const lmdb_env&) = delete;
  lmdb_env& operator=(const lmdb_env&) = delete;

  MDB_env* handle() const noexcept { return env_; }
  MDB_dbi dbi() const noexcept { return dbi_; }
  error fail(int rc, std::string_view operation) const { return lmdb_error(rc, options_.path, operation); }

  // Begins an LMDB transaction (flags: 0 or MDB_RDONLY) and counts it as open on this thread
  // until end_txn(). Waits only while the map is being resized.
  result<MDB_txn*> begin_txn(unsigned flags);
  // Aborts (or, after a commit, just forgets) a transaction begun on thread `began_on`.
  // REQUIRES: txn came from begin_txn(); pass nullptr if mdb_txn_commit() already freed it.
  void end_txn(MDB_txn* txn, std::thread::id began_on) noexcept;

  // The one writer of this process: blocks until no other write transaction is open.
  void acquire_writer();
  void release_writer() noexcept;
  // The buffer the writer keeps its replay log in, reused from one write transaction to the next.
  // REQUIRES: the caller holds the writer.
  std::string& writer_log() noexcept { return writer_log_; }

  // Doubles the map, up to max_map_size, once no transaction of this process is open.
  // REQUIRES: the caller holds the writer and has no LMDB transaction open.
  // Errors: storage_full at max_map_size; storage_conflict if transactions stayed open for
  // growth_wait; invalid_argument if the calling thread itself holds one.
  result<void> grow_map();

  std::size_t map_size() const noexcept { return map_size_.load(); }
  int stale_readers_cleared() const noexcept { return stale_readers_cleared_; }

 private:
  explicit lmdb_env(lmdb_options options) : options_(std::move(options)) {}
  result<void> open_files();

  lmdb_options options_;
  int lock_fd_ = -1;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  std::atomic<std::size_t> map_size_{0};
  int stale_readers_cleared_ = 0;

  // Open transactions of this process, in all and per thread that began them. The map is
  // resized while gate_ is held. While a growth waits for open transactions to end, a thread
  // that holds none may not begin one (growing_), so a steady stream of short readers cannot
  // starve the growth; a thread that already holds one may, since holding it back would only
  // make the growth wait for it.
  std::mutex gate_;
  std::condition_variable idle_;
  std::condition_variable grown_;
  bool growing_ = false;
  std::size_t open_txns_ = 0;
  std::unordered_map<std::thread::id, std::size_t> open_by_thread_;

  std::mutex writer_mutex_;
  std::condition_variable writer_free_;
  bool writing_ = false;
  std::string writer_log_;
};

}  // namespace opendsr::detail
