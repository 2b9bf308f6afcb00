#include <opendsr/lmdb_storage.hpp>

#include "lmdb/lmdb_env.hpp"
#include "storage_keys.hpp"

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

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

std::size_t lmdb_storage::map_size() const { return env_->map_size(); }

int lmdb_storage::stale_readers_cleared() const noexcept { return env_->stale_readers_cleared(); }

}  // namespace opendsr
