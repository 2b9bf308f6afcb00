// A fault-injecting storage decorator: commits fail on demand, with a chosen error, for a chosen
// number of times or at random. It counts write transactions and commits, so a test can see how
// often an operation ran its transaction.
#pragma once

#include <opendsr/storage_wrapper.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <utility>

namespace opendsr::testing {

class faulty_storage final : public storage_wrapper {
 public:
  using storage_wrapper::storage_wrapper;

  // Decides the outcome of each commit before it reaches the target: an error to return instead
  // (the transaction is then aborted and leaves nothing), or success to let the commit through.
  using commit_policy = std::function<result<void>()>;

  // The next n commits fail with code; later ones pass.
  void fail_next_commits(std::size_t n, errc code) {
    policy_ = [n, code]() mutable -> result<void> {
      if (n == 0) return {};
      --n;
      return error(code, "injected fault");
    };
  }
  void set_policy(commit_policy p) { policy_ = std::move(p); }

  std::size_t write_transactions() const noexcept { return writes_; }
  std::size_t commits() const noexcept { return commits_; }

  result<std::unique_ptr<write_transaction>> begin_write() override {
    auto txn = storage_wrapper::begin_write();
    if (!txn) return std::move(txn).error();
    ++writes_;
    return std::unique_ptr<write_transaction>(std::make_unique<txn_type>(std::move(*txn), *this));
  }

 private:
  class txn_type final : public write_transaction_wrapper {
   public:
    txn_type(std::unique_ptr<write_transaction> target, faulty_storage& owner)
        : write_transaction_wrapper(std::move(target)), owner_(owner) {}
    result<void> commit() override {
      if (owner_.policy_)
        if (auto injected = owner_.policy_(); !injected) return injected;  // aborted when destroyed
      ++owner_.commits_;
      return write_transaction_wrapper::commit();
    }

   private:
    faulty_storage& owner_;
  };

  commit_policy policy_;
  std::size_t writes_ = 0;
  std::size_t commits_ = 0;
};

}  // namespace opendsr::testing
