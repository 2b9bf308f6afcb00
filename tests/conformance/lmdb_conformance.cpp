#include "storage_conformance.hpp"

#include <opendsr/lmdb_storage.hpp>

namespace opendsr::conformance {
namespace {

storage_factory lmdb_factory(std::string name, sync_mode sync) {
  return {.name = std::move(name),
          .durable = true,
          .open = [sync](const std::filesystem::path& dir) -> result<std::unique_ptr<storage>> {
            // A small first map, so the suite's large values and many keys also grow it.
            auto opened = lmdb_storage::open(
                {.path = dir, .initial_map_size = std::size_t{1} << 20, .sync = sync});
            if (!opened) return std::move(opened).error();
            return std::unique_ptr<storage>(std::move(*opened));
          }};
}

INSTANTIATE_TEST_SUITE_P(lmdb, storage_conformance,
                         ::testing::Values(lmdb_factory("lmdb_durable", sync_mode::durable),
                                           lmdb_factory("lmdb_no_sync", sync_mode::no_sync)),
                         factory_name);

}  // namespace
}  // namespace opendsr::conformance
