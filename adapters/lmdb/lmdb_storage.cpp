#include <opendsr/lmdb_storage.hpp>

#include "lmdb/lmdb_env.hpp"
#include "storage_keys.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace opendsr {
namespace detail {
namespace {

MDB_val to_val(std::string_view bytes) {
  return {bytes.size(), const_cast<char*>(bytes.data())};
}

std::string_view to_view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

// The get() of both transaction kinds: 0 with the value or nullopt, or an LMDB error.
int lmdb_get(MDB_txn* txn, MDB_dbi dbi, std::string_view key,
             std::optional<std::string_view>& out) {
  MDB_val k = to_val(key);
  MDB_val v;
  const int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) {
    out.reset();
    return 0;
  }
  if (rc == 0) out = to_view(v);
  return rc;
}

// The scan() of both transaction kinds; returns 0 or an LMDB error.
int lmdb_scan(MDB_txn* txn, MDB_dbi dbi, std::string_view prefix, std::string_view from,
              const scan_visitor& visit) {
  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(txn, dbi, &cursor); rc != 0) return rc;
  struct closer {
    MDB_cursor* c;
    ~closer() { mdb_cursor_close(c); }
  } close{cursor};
  const std::string_view start = scan_start(prefix, from);
  MDB_val k = to_val(start);
  MDB_val v;
  // LMDB refuses to seek to an empty key; the first key is where an empty start leads.
  int rc = mdb_cursor_get(cursor, &k, &v, start.empty() ? MDB_FIRST : MDB_SET_RANGE);
  for (; rc == 0; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    const std::string_view key = to_view(k);
    if (!key.starts_with(prefix) || !visit(key, to_view(v))) return 0;
  }
  return rc == MDB_NOTFOUND ? 0 : rc;
}

class lmdb_read_transaction final : public read_transaction {
 public:
  lmdb_read_transaction(lmdb_env& env, MDB_txn* txn, std::thread::id began_on)
      : env_(env), txn_(txn), began_on_(began_on) {}
  ~lmdb_read_transaction() override { env_.end_txn(txn_, began_on_); }

  result<std::optional<std::string_view>> get(std::string_view key) override {
    OPENDSR_TRY(check_key(key));
    std::optional<std::string_view> value;
    if (int rc = lmdb_get(txn_, env_.dbi(), key, value); rc != 0) return env_.fail(rc, "get");
    return value;
  }

  result<void> scan(std::string_view prefix, std::string_view from,
                    const scan_visitor& visit) override {
    OPENDSR_TRY(check_scan_bounds(prefix, from));
    if (int rc = lmdb_scan(txn_, env_.dbi(), prefix, from, visit); rc != 0)
      return env_.fail(rc, "scan");
    return {};
  }

 private:
  lmdb_env& env_;
  MDB_txn* txn_;
  std::thread::id began_on_;
};

// The writes of a transaction, kept so that it can be replayed into a new LMDB transaction
// after the map grew. Each record: kind, key size, value size, key, value. The bytes live in a
// buffer the environment lends to its one writer, so its capacity carries over between
// transactions instead of being grown again by each.
class write_log {
 public:
  // REQUIRES: the caller holds the writer until end().
  explicit write_log(std::string& buffer) : bytes_(buffer) { bytes_.clear(); }
  write_log(const write_log&) = delete;
  write_log& operator=(const write_log&) = delete;

  void put(std::string_view key, std::string_view value) { append('p', key, value); }
  void erase(std::string_view key) { append('e', key, {}); }

  // Hands the buffer back: keeps one of ordinary size for the next writer, frees a huge one.
  // REQUIRES: called once, while the writer is still held; the log is not used after.
  void end() {
    if (bytes_.capacity() > kept_capacity) std::string().swap(bytes_);
  }

  // Calls apply(kind, key, value) for each record in order; stops at and returns the first
  // non-zero result.
  template <class F>
  int replay(F&& apply) const {
    for (std::size_t at = 0; at < bytes_.size();) {
      const char kind = bytes_[at];
      std::uint32_t key_size;
      std::uint64_t value_size;
      std::memcpy(&key_size, bytes_.data() + at + 1, sizeof key_size);
      std::memcpy(&value_size, bytes_.data() + at + 1 + sizeof key_size, sizeof value_size);
      at += header_size;
      const std::string_view key(bytes_.data() + at, key_size);
      const std::string_view value(bytes_.data() + at + key_size, value_size);
      at += key_size + value_size;
      if (int rc = apply(kind, key, value); rc != 0) return rc;
    }
    return 0;
  }

 private:
  static constexpr std::size_t header_size = 1 + sizeof(std::uint32_t) + sizeof(std::uint64_t);
  static constexpr std::size_t kept_capacity = std::size_t{4} << 20;

  void append(char kind, std::string_view key, std::string_view value) {
    const auto key_size = static_cast<std::uint32_t>(key.size());
    const auto value_size = static_cast<std::uint64_t>(value.size());
    char header[header_size];
    header[0] = kind;
    std::memcpy(header + 1, &key_size, sizeof key_size);
    std::memcpy(header + 1 + sizeof key_size, &value_size, sizeof value_size);
    bytes_.append(header, header_size).append(key).append(value);
  }

  std::string& bytes_;
};

class lmdb_write_transaction final : public write_transaction {
 public:
  // Takes the writer and begins the LMDB transaction.
  static result<std::unique_ptr<write_transaction>> begin(lmdb_env& env) {
    env.acquire_writer();
    std::unique_ptr<lmdb_write_transaction> txn(new lmdb_write_transaction(env));
    auto begun = env.begin_txn(0);
    if (!begun) return std::move(begun).error();  // ~txn releases the writer
    txn->txn_ = *begun;
    txn->holds_gate_ = true;
    return std::unique_ptr<write_transaction>(std::move(txn));
  }

  ~lmdb_write_transaction() override { finish(); }

  result<std::optional<std::string_view>> get(std::string_view key) override {
    OPENDSR_TRY(check_usable());
    OPENDSR_TRY(check_key(key));
    std::optional<std::string_view> value;
    if (int rc = lmdb_get(txn_, env_.dbi(), key, value); rc != 0) return fail(rc, "get");
    return value;
  }

  result<void> scan(std::string_view prefix, std::string_view from,
                    const scan_visitor& visit) override {
    OPENDSR_TRY(check_usable());
    OPENDSR_TRY(check_scan_bounds(prefix, from));
    if (int rc = lmdb_scan(txn_, env_.dbi(), prefix, from, visit); rc != 0)
      return fail(rc, "scan");
    return {};
  }

  result<void> put(std::string_view key, std::string_view value) override {
    OPENDSR_TRY(check_usable());
    OPENDSR_TRY(check_key(key));
    for (;;) {
      const int rc = put_lmdb(key, value);
      if (rc == 0) break;
      if (rc != MDB_MAP_FULL) return fail(rc, "put");
      OPENDSR_TRY(restart_in_a_bigger_map());
    }
    log_.put(key, value);
    return {};
  }

  result<bool> erase(std::string_view key) override {
    OPENDSR_TRY(check_usable());
    OPENDSR_TRY(check_key(key));
    for (;;) {
      const int rc = erase_lmdb(key);
      if (rc == MDB_NOTFOUND) return false;
      if (rc == 0) break;
      if (rc != MDB_MAP_FULL) return fail(rc, "erase");
      OPENDSR_TRY(restart_in_a_bigger_map());
    }
    log_.erase(key);
    return true;
  }

  result<void> commit() override {
    OPENDSR_TRY(check_usable());
    for (;;) {
      // mdb_txn_commit frees the transaction whether it succeeds or not.
      const int rc = mdb_txn_commit(std::exchange(txn_, nullptr));
      if (rc == 0) {
        finish();
        committed_ = true;
        return {};
      }
      if (rc != MDB_MAP_FULL) return fail(rc, "commit");
      OPENDSR_TRY(restart_in_a_bigger_map());
    }
  }

 private:
  // REQUIRES: the caller holds env's writer.
  explicit lmdb_write_transaction(lmdb_env& env)
      : env_(env), began_on_(std::this_thread::get_id()), log_(env.writer_log()) {}

  int put_lmdb(std::string_view key, std::string_view value) {
    MDB_val k = to_val(key);
    MDB_val v = to_val(value);
    return mdb_put(txn_, env_.dbi(), &k, &v, 0);
  }

  int erase_lmdb(std::string_view key) {
    MDB_val k = to_val(key);
    return mdb_del(txn_, env_.dbi(), &k, nullptr);
  }

  result<void> check_usable() const {
    if (failed_) return *failed_;
    if (committed_)
      return error(errc::invalid_argument, "the write transaction was already committed");
    return {};
  }

  // Ends the LMDB transaction (aborting it if still open) and releases the writer. Idempotent.
  void finish() {
    if (holds_gate_) {
      env_.end_txn(std::exchange(txn_, nullptr), began_on_);
      holds_gate_ = false;
    }
    if (holds_writer_) {
      log_.end();
      env_.release_writer();
      holds_writer_ = false;
    }
  }

  // Ends the transaction for good with the error for LMDB status rc.
  error fail(int rc, std::string_view operation) { return fail(env_.fail(rc, operation)); }
  error fail(error e) {
    finish();
    failed_ = e;
    return e;
  }

  // The map is full: abort, grow the map, begin again and replay this transaction's writes,
  // all while holding the writer, so the state it read is still the state it writes over.
  result<void> restart_in_a_bigger_map() {
    for (;;) {
      env_.end_txn(std::exchange(txn_, nullptr), began_on_);
      holds_gate_ = false;
      if (auto grown = env_.grow_map(); !grown) return fail(std::move(grown).error());
      auto begun = env_.begin_txn(0);
      if (!begun) return fail(std::move(begun).error());
      txn_ = *begun;
      holds_gate_ = true;
      const int rc = log_.replay([&](char kind, std::string_view key, std::string_view value) {
        const int r = kind == 'p' ? put_lmdb(key, value) : erase_lmdb(key);
        return r == MDB_NOTFOUND ? 0 : r;
      });
      if (rc == 0) return {};
      if (rc != MDB_MAP_FULL) return fail(rc, "replaying a transaction after growing the map");
    }
  }

  lmdb_env& env_;
  const std::thread::id began_on_;
  MDB_txn* txn_ = nullptr;  // null while restarting and once finished
  bool holds_gate_ = false;  // txn_ (or a commit in progress) counts in env_'s open transactions
  bool holds_writer_ = true;
  bool committed_ = false;
  std::optional<error> failed_;
  write_log log_;
};

// --- Scrubbing the free list ------------------------------------------------------------
//
// LMDB's free list is the FREE_DBI (dbi 0): one record per transaction that freed pages, keyed
// by that transaction's id (a size_t), whose value is an MDB_IDL: a count n, then n page
// numbers. A write transaction with id T may reuse the pages of a record whose key is less than
// the oldest snapshot still referenced, min(T - 1, every live reader's txnid) (mdb_find_oldest
// and mdb_page_alloc in mdb.c); the pages of record T - 1, freed by the last commit, are still
// reachable from the previous meta page, and those of a reader's snapshot from that reader.

// A page number as the free list stores it: LMDB 0.9's pgno_t (MDB_ID, a size_t; midl.h is not
// installed). Builds with MDB_VL32 (32-bit with 64-bit files) are not supported.
using pgno_t = std::size_t;

constexpr MDB_dbi free_dbi = 0;

// The smallest txnid of a live reader slot of the environment (any process), or
// numeric_limits::max() if none. Reads the table as mdb_find_oldest does, through the one
// public view of it, mdb_reader_list: "pid thread txnid" lines, "-" for an idle slot.
std::size_t oldest_reader(MDB_env* env) {
  std::size_t oldest = std::numeric_limits<std::size_t>::max();
  mdb_reader_list(
      env,
      [](const char* line, void* ctx) -> int {
        int pid = 0;
        std::size_t thread = 0;
        std::size_t txnid = 0;
        if (std::sscanf(line, "%d %zx %zu", &pid, &thread, &txnid) == 3) {
          auto& min = *static_cast<std::size_t*>(ctx);
          min = std::min(min, txnid);
        }
        return 0;
      },
      &oldest);
  return oldest;
}

// Visits each free-list record of txn: visit(txnid, page numbers, count). Returns 0 or an LMDB
// error.
template <class F>
int for_each_free_record(MDB_txn* txn, F&& visit) {
  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(txn, free_dbi, &cursor); rc != 0) return rc;
  struct closer {
    MDB_cursor* c;
    ~closer() { mdb_cursor_close(c); }
  } close{cursor};
  MDB_val k;
  MDB_val v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
  for (; rc == 0; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    if (k.mv_size != sizeof(std::size_t) || v.mv_size < sizeof(pgno_t)) return MDB_CORRUPTED;
    std::size_t txnid;
    std::memcpy(&txnid, k.mv_data, sizeof txnid);
    pgno_t count;
    std::memcpy(&count, v.mv_data, sizeof count);
    if (v.mv_size < (count + 1) * sizeof(pgno_t)) return MDB_CORRUPTED;
    visit(txnid, static_cast<const char*>(v.mv_data) + sizeof(pgno_t), count);
  }
  return rc == MDB_NOTFOUND ? 0 : rc;
}

// Writes zeros over pages [first, first + count) of fd, never past its end. Returns 0 or errno.
int zero_pages(int fd, std::size_t first, std::size_t count, std::size_t page_size,
               off_t file_size) {
  static constexpr std::size_t chunk = std::size_t{1} << 20;
  static const std::vector<char> zeros(chunk, 0);
  auto at = static_cast<off_t>(first * page_size);
  const off_t end = std::min(file_size, static_cast<off_t>((first + count) * page_size));
  while (at < end) {
    const auto n = static_cast<std::size_t>(std::min<off_t>(end - at, chunk));
    const ssize_t written = ::pwrite(fd, zeros.data(), n, at);
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    at += written;
  }
  return 0;
}

// The header LMDB 0.9 puts at the start of every page (MDB_page in mdb.c; data format version
// 1, the same in every 0.9 release): page number, padding, flags, then either the bounds of a
// branch or leaf page's free space (lower: end of the slot array; upper: start of the records)
// or an overflow run's page count.
static_assert(MDB_VERSION_MAJOR == 0 && MDB_VERSION_MINOR == 9,
              "the page layout read by the scrub is LMDB 0.9's; check it before upgrading");
struct page_header {
  std::uint64_t pgno;
  std::uint16_t pad;
  std::uint16_t flags;
  std::uint16_t lower;
  std::uint16_t upper;
};
static_assert(sizeof(page_header) == 16);
constexpr std::uint16_t p_branch = 0x01;
constexpr std::uint16_t p_leaf = 0x02;
constexpr std::uint16_t p_overflow = 0x04;
// A leaf node (MDB_node): data size (lo, hi), flags, key size, then the key and the data; with
// f_bigdata the data is the number of the first page of the overflow run holding the value.
constexpr std::size_t node_header = 8;
constexpr std::uint16_t f_bigdata = 0x01;

// A value on an overflow run: the run's first page and the value's size.
struct overflow_value {
  pgno_t first;
  std::size_t size;
};

// Appends the overflow values of leaf page `page` to `out`. REQUIRES: a leaf page whose bounds
// were checked; a node that does not fit in the page is skipped.
void collect_overflow_values(const char* page, std::size_t page_size, const page_header& h,
                             std::vector<overflow_value>& out) {
  const std::size_t keys = (h.lower - sizeof h) / sizeof(std::uint16_t);
  for (std::size_t i = 0; i < keys; ++i) {
    std::uint16_t at;
    std::memcpy(&at, page + sizeof h + i * sizeof at, sizeof at);
    if (at < h.upper || at + node_header > page_size) continue;
    std::uint16_t lo, hi, flags, key_size;
    std::memcpy(&lo, page + at, 2);
    std::memcpy(&hi, page + at + 2, 2);
    std::memcpy(&flags, page + at + 4, 2);
    std::memcpy(&key_size, page + at + 6, 2);
    if (!(flags & f_bigdata) || at + node_header + key_size + sizeof(pgno_t) > page_size) continue;
    pgno_t first;
    std::memcpy(&first, page + at + node_header + key_size, sizeof first);
    out.push_back({first, std::size_t{lo} | std::size_t{hi} << 16});
  }
}

// Writes zeros over [from, to) of fd where it holds anything else; counts one in `cleared` if
// it wrote. Returns 0 or errno.
int clear_range(int fd, off_t from, off_t to, std::uint64_t& cleared) {
  static constexpr std::size_t chunk = 65536;
  static const std::vector<char> zeros(chunk, 0);
  std::vector<char> buffer(chunk);
  bool wrote = false;
  for (off_t at = from; at < to;) {
    const auto n = static_cast<std::size_t>(std::min<off_t>(to - at, chunk));
    const ssize_t got = ::pread(fd, buffer.data(), n, at);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return errno;
    if (got == 0) return EIO;
    const auto m = static_cast<std::size_t>(got);
    if (!std::all_of(buffer.data(), buffer.data() + m, [](char c) { return c == 0; })) {
      const ssize_t written = ::pwrite(fd, zeros.data(), m, at);
      if (written < 0 && errno == EINTR) continue;
      if (written < 0) return errno;
      if (written == 0) return EIO;
      wrote = true;
      at += written;
      continue;
    }
    at += got;
  }
  if (wrote) ++cleared;
  return 0;
}

// Writes zeros over the free space inside each branch and leaf page in use, and over the
// bytes after the value on the last page of each overflow run in use, where they hold anything
// else. LMDB builds a modified page in a page it reuses (with MDB_WRITEMAP a free page of the
// file; without it a heap buffer it reuses) and copies only the used parts into it, and
// mdb_node_del leaves a deleted record's bytes in the free space, so those bytes carry leftovers
// of other pages, erased records among them. Nothing reads them: zeroing them changes no
// reader's view, and a torn write leaves the page's used bytes as they were.
// REQUIRES: the caller holds LMDB's write lock, so no page in use changes; is_free covers
// pages [0, last]. Returns 0 or errno; counts the pages cleared.
int clear_free_space(int fd, std::size_t page_size, std::size_t last,
                     const std::vector<bool>& is_free, std::uint64_t& cleared) {
  static const std::vector<char> zeros(65536, 0);
  // Pages are read with pread in chunks (LMDB 0.9 does not expose its map's address).
  constexpr std::size_t chunk_pages = 256;
  std::vector<char> chunk(chunk_pages * page_size);
  std::size_t chunk_first = 0;
  std::size_t chunk_count = 0;  // pages of the chunk read so far
  std::vector<overflow_value> overflow;
  for (std::size_t p = 2; p <= last;) {  // pages 0 and 1 are the meta pages
    if (is_free[p]) {
      ++p;
      continue;
    }
    if (p < chunk_first || p >= chunk_first + chunk_count) {
      chunk_first = p;
      chunk_count = std::min(chunk_pages, last + 1 - p);
      const std::size_t want = chunk_count * page_size;
      std::size_t got = 0;
      while (got < want) {
        const ssize_t n = ::pread(fd, chunk.data() + got, want - got,
                                  static_cast<off_t>(chunk_first * page_size + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) return EIO;  // the file is shorter than its last page: leave it be
        got += static_cast<std::size_t>(n);
      }
    }
    const char* page = chunk.data() + (p - chunk_first) * page_size;
    page_header h;
    std::memcpy(&h, page, sizeof h);
    if (h.pgno != p) {  // not a page header: leave it alone
      ++p;
      continue;
    }
    if (h.flags == p_overflow) {  // a run of pages holding one value: its tail is cleared below
      std::uint32_t run;
      std::memcpy(&run, page + offsetof(page_header, lower), sizeof run);
      p += std::max<std::uint32_t>(run, 1);
      continue;
    }
    const std::size_t at = p * page_size;
    ++p;
    if ((h.flags != p_branch && h.flags != p_leaf) || h.lower < sizeof h || h.lower > h.upper ||
        h.upper > page_size || static_cast<std::size_t>(h.upper - h.lower) > zeros.size())
      continue;
    if (h.flags == p_leaf) collect_overflow_values(page, page_size, h, overflow);
    const char* gap = page + h.lower;
    const std::size_t n = h.upper - h.lower;
    if (std::all_of(gap, gap + n, [](char c) { return c == 0; })) continue;
    for (;;) {
      const ssize_t written = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(at + h.lower));
      if (written >= 0 && static_cast<std::size_t>(written) == n) break;
      if (written < 0 && errno != EINTR) return errno;
      if (written >= 0) return EIO;  // a short write inside the file: not expected
    }
    ++cleared;
  }
  // The tails of the overflow runs: the run's header gives its length; the value starts right
  // after the header of its first page.
  for (const overflow_value& v : overflow) {
    if (v.first < 2 || v.first > last || is_free[v.first]) continue;
    page_header h;
    const ssize_t n = ::pread(fd, &h, sizeof h, static_cast<off_t>(v.first * page_size));
    if (n < 0) return errno;
    if (static_cast<std::size_t>(n) != sizeof h || h.pgno != v.first || h.flags != p_overflow)
      continue;
    std::uint32_t run;
    std::memcpy(&run, reinterpret_cast<const char*>(&h) + offsetof(page_header, lower), sizeof run);
    const std::size_t end = std::min(v.first + run, last + 1) * page_size;
    const std::size_t from = v.first * page_size + sizeof h + v.size;
    if (from >= end) continue;
    if (int e = clear_range(fd, static_cast<off_t>(from), static_cast<off_t>(end), cleared); e != 0)
      return e;
  }
  return 0;
}

}  // namespace
}  // namespace detail

result<std::unique_ptr<lmdb_storage>> lmdb_storage::open(lmdb_options options) {
  auto env = detail::lmdb_env::open(std::move(options));
  if (!env) return std::move(env).error();
  return std::unique_ptr<lmdb_storage>(new lmdb_storage(std::move(*env)));
}

lmdb_storage::lmdb_storage(std::unique_ptr<detail::lmdb_env> env) : env_(std::move(env)) {}

lmdb_storage::~lmdb_storage() = default;

result<std::unique_ptr<read_transaction>> lmdb_storage::begin_read() {
  auto txn = env_->begin_txn(MDB_RDONLY);
  if (!txn) return std::move(txn).error();
  return std::unique_ptr<read_transaction>(std::make_unique<detail::lmdb_read_transaction>(
      *env_, *txn, std::this_thread::get_id()));
}

result<std::unique_ptr<write_transaction>> lmdb_storage::begin_write() {
  return detail::lmdb_write_transaction::begin(*env_);
}

namespace detail {
namespace {

// One pass over the file while holding LMDB's write lock (txn, a write transaction of this
// process's one writer): with zero_free, writes zeros over the free pages no snapshot can see;
// always, clears the free space inside the pages in use. Adds to report; flushes what it wrote.
// own: the id of the scrub's own commit in this call, or 0. The pages it freed are still held
// (the previous meta page reaches them), but they are not counted in pages_held: they were
// pages in use whose free space the pass before that commit cleared, so they hold only records
// that were live after the erasure.
result<void> scrub_pass(lmdb_env& env, MDB_txn* txn, bool zero_free, std::size_t own,
                        lmdb_storage::scrub_report& report) {
  MDB_env* handle = env.handle();
  const auto self = std::this_thread::get_id();
  // The oldest snapshot still referenced (mdb_find_oldest): records older than it are reusable.
  const std::size_t oldest = std::min<std::size_t>(mdb_txn_id(txn) - 1, oldest_reader(handle));
  std::vector<pgno_t> reusable;
  std::vector<pgno_t> held;
  std::vector<pgno_t> held_clean;  // freed by our own commit
  auto append = [](std::vector<pgno_t>& to, const char* ids, pgno_t count) {
    const std::size_t at = to.size();
    to.resize(at + count);
    std::memcpy(to.data() + at, ids, count * sizeof(pgno_t));
  };
  // LMDB opens cursors on the free list in read-only transactions only. This one sees the state
  // the write transaction began with: no commit can come between them while we hold the lock.
  auto reading = env.begin_txn(MDB_RDONLY);
  if (!reading) return std::move(reading).error();
  const int rc = for_each_free_record(*reading, [&](std::size_t txnid, const char* ids, pgno_t count) {
    append(txnid < oldest ? reusable : txnid == own ? held_clean : held, ids, count);
  });
  env.end_txn(*reading, self);
  if (rc != 0) return env.fail(rc, "reading the free list");

  MDB_stat stat;
  if (int r = mdb_env_stat(handle, &stat); r != 0) return env.fail(r, "reading the page size");
  MDB_envinfo info;
  if (int r = mdb_env_info(handle, &info); r != 0) return env.fail(r, "reading the last page");
  int fd = -1;
  if (int r = mdb_env_get_fd(handle, &fd); r != 0) return env.fail(r, "getting data.mdb's descriptor");
  struct stat file;
  if (::fstat(fd, &file) != 0) return env.fail(errno, "scrubbing (fstat)");
  const std::size_t psize = stat.ms_psize;
  const std::size_t last = info.me_last_pgno;
  // Pages 0 and 1 are the meta pages and are never free; every page is within the file.
  auto out_of_range = [&](pgno_t p) { return p < 2 || p > last; };
  if ((last + 1) * psize > static_cast<std::size_t>(file.st_size) ||
      std::any_of(reusable.begin(), reusable.end(), out_of_range) ||
      std::any_of(held.begin(), held.end(), out_of_range) ||
      std::any_of(held_clean.begin(), held_clean.end(), out_of_range))
    return env.fail(MDB_CORRUPTED, "reading the free list");

  std::uint64_t written = 0;
  if (zero_free) {
    std::sort(reusable.begin(), reusable.end());
    reusable.erase(std::unique(reusable.begin(), reusable.end()), reusable.end());
    for (std::size_t i = 0; i < reusable.size();) {
      std::size_t j = i + 1;
      while (j < reusable.size() && reusable[j] == reusable[j - 1] + 1) ++j;
      if (int e = zero_pages(fd, reusable[i], j - i, psize, file.st_size); e != 0)
        return env.fail(e, "scrubbing free pages (pwrite)");
      i = j;
    }
    report.pages_scrubbed += reusable.size();
    report.pages_held = held.size();
    written += reusable.size();
  }

  std::vector<bool> is_free(last + 1, false);
  for (pgno_t p : reusable) is_free[p] = true;
  for (pgno_t p : held) is_free[p] = true;
  for (pgno_t p : held_clean) is_free[p] = true;
  std::uint64_t cleared = 0;
  if (int e = clear_free_space(fd, psize, last, is_free, cleared); e != 0)
    return env.fail(e, "clearing the free space of pages in use (pwrite)");
  report.pages_cleared += cleared;
  written += cleared;

  if (written > 0 && ::fdatasync(fd) != 0) return env.fail(errno, "scrubbing (fdatasync)");
  return {};
}

// Changes no key but makes txn dirty, so that committing it advances the transaction id: puts
// and erases a key that is absent, or puts an existing key's own value back. Returns 0 or an
// LMDB error.
int touch(MDB_txn* txn, MDB_dbi dbi) {
  std::string key(storage::max_key_size, '\xff');
  MDB_val k = to_val(key);
  MDB_val v{0, nullptr};
  int rc = mdb_put(txn, dbi, &k, &v, MDB_NOOVERWRITE);
  if (rc == 0) return mdb_del(txn, dbi, &k, nullptr);
  if (rc != MDB_KEYEXIST) return rc;
  const std::string same(to_view(v));  // v points at the stored value
  MDB_val again = to_val(same);
  return mdb_put(txn, dbi, &k, &again, 0);
}

}  // namespace
}  // namespace detail

result<lmdb_storage::scrub_report> lmdb_storage::scrub_free_pages() {
  detail::lmdb_env& env = *env_;
  const auto self = std::this_thread::get_id();
  // This process's one writer, for the whole scrub: no write of ours comes between its steps.
  env.acquire_writer();
  struct writer_guard {
    detail::lmdb_env& env;
    ~writer_guard() { env.release_writer(); }
  } release{env};

  // 1. Is there anything to scrub, and did the last commit free pages? A read transaction's id
  // is the last committed one.
  std::size_t records = 0;
  std::size_t newest = 0;
  std::size_t last_commit = 0;
  {
    auto txn = env.begin_txn(MDB_RDONLY);
    if (!txn) return std::move(txn).error();
    last_commit = mdb_txn_id(*txn);
    const int rc = detail::for_each_free_record(*txn, [&](std::size_t txnid, const char*, detail::pgno_t) {
      ++records;
      newest = std::max(newest, txnid);
    });
    env.end_txn(*txn, self);
    if (rc != 0) return env.fail(rc, "reading the free list");
  }
  scrub_report report;
  if (records == 0) return report;

  // 2. The pages the last commit freed become reusable only after one more commit: commit one
  // that changes no key. Its commit frees the pages it copies (the path to the key it touches),
  // which stay held: clear their free space first, so that they hold live records only.
  std::size_t own = 0;
  if (newest >= last_commit) {
    for (;;) {
      auto begun = env.begin_txn(0);
      if (!begun) return std::move(begun).error();
      MDB_txn* txn = *begun;
      if (auto pass = detail::scrub_pass(env, txn, false, 0, report); !pass) {
        env.end_txn(txn, self);
        return std::move(pass).error();
      }
      own = mdb_txn_id(txn);
      int rc = detail::touch(txn, env.dbi());
      if (rc == 0) {
        rc = mdb_txn_commit(txn);  // frees txn whatever it returns
        env.end_txn(nullptr, self);
      } else {
        env.end_txn(txn, self);
      }
      if (rc == 0) break;
      if (rc != MDB_MAP_FULL) return env.fail(rc, "committing a scrub");
      OPENDSR_TRY(env.grow_map());
    }
  }

  // 3. Holding LMDB's write lock (a write transaction, never committed), so that no writer
  // reuses a page while it is being zeroed: zero the reusable free pages, and clear the free
  // space of the pages step 2 wrote.
  auto begun = env.begin_txn(0);
  if (!begun) return std::move(begun).error();
  struct txn_guard {
    detail::lmdb_env& env;
    MDB_txn* txn;
    std::thread::id began_on;
    ~txn_guard() { env.end_txn(txn, began_on); }
  } abort{env, *begun, self};
  // Step 2's commit must be on disk before the pages it made reusable are zeroed, even with
  // sync_mode::no_sync: otherwise a machine crash could bring back a meta page that reaches them.
  if (int rc = mdb_env_sync(env.handle(), 1); rc != 0) return env.fail(rc, "flushing before a scrub");
  OPENDSR_TRY(detail::scrub_pass(env, *begun, true, own, report));
  return report;
}

std::size_t lmdb_storage::map_size() const { return env_->map_size(); }

int lmdb_storage::stale_readers_cleared() const noexcept { return env_->stale_readers_cleared(); }

}  // namespace opendsr
