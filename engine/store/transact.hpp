// Running a write transaction with retries on storage conflicts.
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>

namespace opendsr::detail {

// Runs body(write_transaction&) -> result<void> in a new write transaction and commits it. When
// any step reports errc::storage_conflict, everything runs again from the start, up to `attempts`
// times in all. Returns body's own error (the transaction is aborted, nothing is kept), the
// commit's error, or success.
// REQUIRES: what body does depends only on what it reads in the transaction and on its inputs;
// it resets whatever it fills outside the transaction, since it may run more than once.
template <class Body>
result<void> run_write(storage& store, unsigned attempts, Body&& body) {
  for (unsigned attempt = 1;; ++attempt) {
    result<void> outcome = [&]() -> result<void> {
      auto txn = store.begin_write();
      if (!txn) return std::move(txn).error();
      OPENDSR_TRY(body(**txn));
      return (*txn)->commit();
    }();
    if (outcome || outcome.error().code() != errc::storage_conflict || attempt >= attempts) return outcome;
  }
}

}  // namespace opendsr::detail
