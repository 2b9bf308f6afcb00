// Forwarding wrappers for the storage seam, so a decorator (fault injection, metrics, tracing)
// overrides only the calls it cares about and inherits the rest.
//
// Ownership
// - storage_wrapper refers to its target and does not own it: the target must outlive the
//   wrapper and every transaction begun through it.
// - read_transaction_wrapper and write_transaction_wrapper own the transaction they wrap (a
//   transaction has one owner, and the decorator's transaction replaces it for the caller).
// Thread safety: a wrapper adds none and takes none away; it is as safe as its target.
//
// Example: a storage whose commits fail with errc::storage_conflict.
//   class conflicting_storage : public storage_wrapper {
//     using storage_wrapper::storage_wrapper;
//     result<std::unique_ptr<write_transaction>> begin_write() override {
//       auto txn = storage_wrapper::begin_write();
//       if (!txn) return std::move(txn).error();
//       return std::unique_ptr<write_transaction>(std::make_unique<txn_type>(std::move(*txn)));
//     }
//   };
// where txn_type derives from write_transaction_wrapper and overrides commit().
#pragma once

#include <opendsr/storage.hpp>

#include <memory>
#include <utility>

namespace opendsr {

namespace detail {

// Forwards the read calls to an owned target; the base of both transaction wrappers.
template <class Transaction>
class forwarding_reads : public Transaction {
 public:
  // REQUIRES: target is not null.
  explicit forwarding_reads(std::unique_ptr<Transaction> target) : target_(std::move(target)) {}

  result<std::optional<std::string_view>> get(std::string_view key) override {
    return target_->get(key);
  }
  result<void> scan(std::string_view prefix, std::string_view from,
                    const scan_visitor& visit) override {
    return target_->scan(prefix, from, visit);
  }

  Transaction& target() noexcept { return *target_; }

 private:
  std::unique_ptr<Transaction> target_;
};

}  // namespace detail

class read_transaction_wrapper : public detail::forwarding_reads<read_transaction> {
 public:
  using forwarding_reads::forwarding_reads;
};

class write_transaction_wrapper : public detail::forwarding_reads<write_transaction> {
 public:
  using forwarding_reads::forwarding_reads;

  result<void> put(std::string_view key, std::string_view value) override {
    return target().put(key, value);
  }
  result<bool> erase(std::string_view key) override { return target().erase(key); }
  result<void> commit() override { return target().commit(); }
};

class storage_wrapper : public storage {
 public:
  explicit storage_wrapper(storage& target) noexcept : target_(&target) {}

  result<std::unique_ptr<read_transaction>> begin_read() override { return target_->begin_read(); }
  result<std::unique_ptr<write_transaction>> begin_write() override {
    return target_->begin_write();
  }

  storage& target() noexcept { return *target_; }

 private:
  storage* target_;
};

}  // namespace opendsr
