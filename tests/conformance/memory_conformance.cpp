#include "storage_conformance.hpp"

#include <opendsr/memory_storage.hpp>

namespace opendsr::conformance {

INSTANTIATE_TEST_SUITE_P(
    memory, storage_conformance,
    ::testing::Values(storage_factory{
        .name = "memory",
        .durable = false,
        .open = [](const std::filesystem::path&) -> result<std::unique_ptr<storage>> {
          return std::unique_ptr<storage>(std::make_unique<memory_storage>());
        }}),
    factory_name);

}  // namespace opendsr::conformance
