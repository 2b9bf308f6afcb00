// The storage seam: a transactional, ordered key-value store of bytes.
//
// The engine owns the key schema and every invariant (dedup, conflict index, group counts,
// outbox, timers); an adapter only stores bytes. A conforming adapter passes the suite in
// tests/conformance/ (docs/writing-a-storage-adapter.md).
//
// Contract
// - Keys are 1 to max_key_size bytes; any other length is errc::invalid_argument. Values are 0 or
//   more bytes. Keys order by unsigned bytewise comparison (memcmp, shorter prefix first).
// - A read transaction sees one snapshot: the state as of the last commit before it began,
//   unaffected by commits made while it lives.
// - A write transaction sees its own writes. commit() makes all of them visible at once, or none.
//   Destroying a write transaction that was not committed aborts it and leaves nothing behind.
// - commit() may return errc::storage_conflict (stores with concurrent writers, such as several
//   engine nodes sharing one database): the caller re-runs the whole transaction from the start.
//   A conflict leaves nothing behind. put() and erase() may return it too, when the adapter had
//   to restart the transaction and could not (LMDB growing its map while readers stay open).
// - A write transaction whose call failed (other than errc::invalid_argument for a bad key or
//   scan bound) may be over: abandon it. After commit() returns, any call but destruction fails
//   with errc::invalid_argument.
// - Durable adapters: once commit() returns success, the writes survive a crash of the process.
//
// Thread safety: storage's methods may be called from any thread concurrently. A transaction is
// used by one thread at a time; a write transaction is used and destroyed on the thread that
// began it. begin_write() may block until the previous write transaction ends (one writer at a
// time suffices).
// Ownership: transactions are owned by the caller and must be destroyed before the storage.
#pragma once

#include <opendsr/result.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

namespace opendsr {

// Called for each key/value visited by a scan; returns false to stop the scan early.
// The views are valid only during the call.
using scan_visitor = std::function<bool(std::string_view key, std::string_view value)>;

class read_transaction {
 public:
  virtual ~read_transaction() = default;
  read_transaction() = default;
  read_transaction(const read_transaction&) = delete;
  read_transaction& operator=(const read_transaction&) = delete;

  // Returns the value stored under key, or nullopt if there is none. The view stays valid until
  // this transaction next writes, commits or is destroyed.
  virtual result<std::optional<std::string_view>> get(std::string_view key) = 0;

  // Visits, in ascending key order, each key that starts with `prefix` and is not less than
  // `from` (an empty `from` starts at the prefix), until the visitor returns false or the keys
  // with that prefix run out. An empty prefix visits the whole store. A prefix or `from` longer
  // than max_key_size is errc::invalid_argument. The visitor may read through this transaction
  // but must not write through it.
  virtual result<void> scan(std::string_view prefix, std::string_view from,
                            const scan_visitor& visit) = 0;
};

class write_transaction : public read_transaction {
 public:
  // Stores value under key, replacing any previous value.
  virtual result<void> put(std::string_view key, std::string_view value) = 0;

  // Removes key. Returns true iff it was present.
  virtual result<bool> erase(std::string_view key) = 0;

  // Makes every write of this transaction visible and (for durable adapters) durable, atomically.
  // After commit() returns, successfully or not, the transaction may only be destroyed.
  virtual result<void> commit() = 0;
};

class storage {
 public:
  // The largest key every adapter must accept (LMDB's default limit).
  static constexpr std::size_t max_key_size = 511;

  virtual ~storage() = default;
  storage() = default;
  storage(const storage&) = delete;
  storage& operator=(const storage&) = delete;

  virtual result<std::unique_ptr<read_transaction>> begin_read() = 0;
  virtual result<std::unique_ptr<write_transaction>> begin_write() = 0;
};

}  // namespace opendsr
