// memory_storage: the storage seam held in process memory. Nothing survives the object; use it
// for tests, simulations, benchmarks and embedders that keep their state elsewhere.
//
// It meets the whole contract of <opendsr/storage.hpp>: snapshot reads, one writer at a time
// (begin_write() blocks until the previous write transaction commits or is destroyed), atomic
// commits; commit() never returns errc::storage_conflict.
//
// Cost model: a commit with no read transaction open on the latest state applies its writes in
// place (O(w log n) for w writes into n keys). A commit while a reader still holds the latest
// state stacks the writes as a new immutable layer over it (O(w)), and later commits fold the
// layers back once no reader holds them, so a reader never forces a copy of the store. Reads
// walk one layer per snapshot that was still held at a commit (usually one).
//
// Thread safety and ownership: as for every storage (see <opendsr/storage.hpp>).
#pragma once

#include <opendsr/storage.hpp>

#include <memory>

namespace opendsr {
namespace detail {
class memory_state;
}  // namespace detail

class memory_storage final : public storage {
 public:
  memory_storage();
  ~memory_storage() override;

  result<std::unique_ptr<read_transaction>> begin_read() override;
  result<std::unique_ptr<write_transaction>> begin_write() override;

 private:
  std::unique_ptr<detail::memory_state> state_;
};

}  // namespace opendsr
