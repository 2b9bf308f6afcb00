// lmdb_storage: the storage seam on LMDB, the durable embedded default.
//
// It meets the whole contract of <opendsr/storage.hpp>: snapshot reads (LMDB's MVCC), one writer
// at a time, atomic commits, and with sync_mode::durable (the default) a commit that returned
// success survives a crash of the process or the machine. Transactions are not tied to threads
// (MDB_NOTLS), so a read transaction may move between threads.
//
// Decisions
// - The directory: open() creates it (and missing parents) when absent. It holds LMDB's
//   data.mdb and lock.mdb and our opendsr.lock. A directory that cannot be created or written is
//   errc::storage_io, and the message names the path.
// - One owner: open() takes an exclusive flock(2) on <path>/opendsr.lock, so a second opendsrd
//   (or a second lmdb_storage in the same process, which LMDB forbids) on the same directory
//   fails at once with errc::storage_locked. Read-only LMDB tools (mdb_stat, mdb_dump) that do
//   not take that lock may still read the store.
// - Stale readers: open() clears the reader slots of processes that died inside a read
//   transaction (mdb_reader_check), so their snapshots no longer pin old pages.
// - Growth: the map starts at initial_map_size. When a write transaction finds it full
//   (MDB_MAP_FULL), the transaction keeps a log of its own puts and erases, so the adapter aborts
//   it, doubles the map (at most to max_map_size), begins it again and replays the log; the
//   caller sees nothing but a slower call. The writer stays held throughout, so the replayed
//   transaction sees exactly the state its caller read. LMDB may change the map size only while
//   no transaction of the process is open: the growing writer waits, up to growth_wait, for every
//   read transaction to end, and meanwhile a thread that holds no transaction waits to begin one,
//   so a steady stream of short readers cannot starve the growth (keep read transactions short).
//   - At max_map_size: errc::storage_full. The transaction is over; the store works on.
//   - Readers still open after growth_wait: errc::storage_conflict (retryable; the transaction is
//     over, re-run it).
//   - The growing thread itself holds another open transaction, which would wait for itself:
//     errc::invalid_argument at once. Never begin a write while the same thread holds a read.
// - MDB_WRITEMAP: write transactions build pages in the map, never in LMDB's recycled heap
//   buffers, which in LMDB's default mode carry bytes of erased records into later commits
//   (docs/erasure-at-rest.md). Consequences: data.mdb's size is the map size (a sparse file:
//   only written pages take disk); commits are flushed with msync; and when the file system is
//   full, a write to a page it has not allocated yet raises SIGBUS instead of ENOSPC (the store
//   stays valid; keep free space monitored).
// - Errors: every LMDB error becomes an errc at this edge, with a message that names the path
//   and the operation, never a key or value. A write transaction that fails is over: its later
//   calls return the same error.
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

namespace opendsr {

enum class sync_mode {
  // fsync on every commit: an acknowledged commit survives a power loss.
  durable,
  // UNSAFE, for tests and benchmarks only: commits are not flushed (MDB_NOSYNC). A crash of the
  // operating system or machine may lose recent commits or corrupt the store; a crash of the
  // process alone loses nothing.
  no_sync,
};

struct lmdb_options {
  // The directory holding the store. REQUIRES: not empty.
  std::filesystem::path path;
  // The map's first size in bytes, rounded up to the page size. On Linux the map costs address
  // space, not disk: data.mdb is extended to the map size, sparse, and takes disk only as pages
  // are written. Default: 1 GiB.
  std::size_t initial_map_size = std::size_t{1} << 30;
  // The size the map never grows past; past it writes fail with errc::storage_full.
  // REQUIRES: >= initial_map_size. Default: 256 GiB.
  std::size_t max_map_size = std::size_t{256} << 30;
  // Default: durable. no_sync is unsafe; see sync_mode.
  sync_mode sync = sync_mode::durable;
  // The most read transactions open at once across every process using the store; one more
  // fails with errc::storage_full. REQUIRES: >= 1. Default: 126 (LMDB's default).
  unsigned max_readers = 126;
  // How long a write that must grow the map waits for open read transactions to end.
  // Default: 10 s.
  std::chrono::milliseconds growth_wait{10'000};
};

namespace detail {
class lmdb_env;
}  // namespace detail

class lmdb_storage final : public storage {
 public:
  // Opens (creating when absent) the store in options.path.
  // Errors: invalid_argument (options), storage_io (directory missing and not creatable, not
  // writable, I/O), storage_locked (another owner holds it), storage_corrupt (not an LMDB store,
  // or written by an incompatible LMDB).
  static result<std::unique_ptr<lmdb_storage>> open(lmdb_options options);

  ~lmdb_storage() override;

  result<std::unique_ptr<read_transaction>> begin_read() override;
  result<std::unique_ptr<write_transaction>> begin_write() override;

  // What scrub_free_pages() did.
  struct scrub_report {
    // Free pages overwritten with zeros (and flushed with fdatasync) by this call.
    std::uint64_t pages_scrubbed = 0;
    // Free pages left as they were because LMDB may not reuse them yet and they may hold erased
    // bytes: a read transaction's snapshot (of this or another process) may still see them. Not
    // counted: the few pages the scrub's own commit frees (copies of pages in use, whose free
    // space the scrub cleared first), which hold only records live at the scrub. 0 when no
    // reader was open. A later scrub, once the readers have ended, zeroes them.
    std::uint64_t pages_held = 0;
    // Pages in use whose free space (the unused bytes inside a branch or leaf page, which hold
    // whatever the page LMDB reused held and the bytes of records deleted from it: leftovers of
    // other pages, erased records among them), or overflow runs whose tail after the value, was
    // overwritten with zeros.
    std::uint64_t pages_cleared = 0;
  };

  // Overwrites with zeros every page on LMDB's free list that no snapshot can see any more, and
  // the free space inside the pages in use, so that the bytes of erased keys and values do not
  // stay in data.mdb. LMDB copies pages on write and has no secure delete: without this, a
  // deleted value stays readable in the file (`strings data.mdb`). docs/erasure-at-rest.md says
  // what this does and does not guarantee (open snapshots, the file system and SSDs, backups).
  //
  // When the last commit freed pages (an erasure just committed), the scrub first commits a
  // write transaction that changes no key (a put and erase of an absent key, or a put of an
  // existing key's own value), so that those pages become reusable. Then, holding LMDB's write
  // lock, it writes zeros with pwrite(2) over the reusable free pages, over the non-zero free
  // space of the branch and leaf pages in use and over the tails of overflow runs, and flushes
  // them. With no reader open (pages_held == 0), no byte of a record erased before the call is
  // left in data.mdb, whatever other write transactions committed after the erasure, and no
  // later commit writes one back (the store is opened with MDB_WRITEMAP; see above). Every key
  // and value reads back as before; the store does not grow (beyond the pages that one commit
  // may take when no free page is reusable). Crash-safe: only free pages that neither meta page
  // nor any reader's snapshot reaches, exactly those LMDB itself would overwrite next, and the
  // unused bytes of pages in use, which nothing reads, are written; a crash midway leaves a
  // valid store.
  // A store whose free list is empty returns {0, 0, 0} at once, without a commit or a write.
  // Cost: reads the whole file once; at most one commit.
  // Thread safety: as begin_write(): waits for the current writer. REQUIRES: the calling thread
  // holds no transaction of this storage (a write would wait for itself; a read would hold its
  // pages).
  // Errors: as begin_write() and commit(); storage_io when writing or flushing zeros fails (the
  // store stays valid; a later call scrubs the pages); storage_corrupt if the free list names a
  // page outside the file.
  result<scrub_report> scrub_free_pages();

  // The current map size in bytes.
  std::size_t map_size() const;
  // How many stale reader slots open() cleared.
  int stale_readers_cleared() const noexcept;

 private:
  explicit lmdb_storage(std::unique_ptr<detail::lmdb_env> env);
  std::unique_ptr<detail::lmdb_env> env_;
};

}  // namespace opendsr
