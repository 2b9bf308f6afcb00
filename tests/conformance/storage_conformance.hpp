// The storage conformance suite: every storage adapter instantiates it to prove it meets the
// contract of <opendsr/storage.hpp>. The tests live in storage_conformance.cpp; an adapter adds
// one source file to the storage_conformance executable (tests/conformance/meson.build):
//
//   #include "storage_conformance.hpp"
//   #include <opendsr/memory_storage.hpp>
//
//   namespace opendsr::conformance {
//   INSTANTIATE_TEST_SUITE_P(memory, storage_conformance,
//       ::testing::Values(storage_factory{
//           .name = "memory",
//           .durable = false,
//           .open = [](const std::filesystem::path&) -> result<std::unique_ptr<storage>> {
//             return std::unique_ptr<storage>(std::make_unique<memory_storage>());
//           }}),
//       factory_name);
//   }  // namespace opendsr::conformance
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

namespace opendsr::conformance {

struct storage_factory {
  // Names the instantiation in test names: letters, digits and '_' only.
  std::string name;
  // True iff the store keeps what was committed when it is destroyed and opened again in the
  // same directory; the reopen tests are skipped otherwise.
  bool durable = false;
  // Opens the store kept in `dir`, creating it when `dir` is empty. Each test gets a fresh empty
  // directory on the same file system as the system's temporary directory, and removes it after.
  std::function<result<std::unique_ptr<storage>>(const std::filesystem::path& dir)> open;
};

// Prints a factory in gtest messages by its name.
inline void PrintTo(const storage_factory& factory, std::ostream* out) { *out << factory.name; }

// For INSTANTIATE_TEST_SUITE_P: names each instantiation after its factory.
inline std::string factory_name(const ::testing::TestParamInfo<storage_factory>& info) {
  return info.param.name;
}

class storage_conformance : public ::testing::TestWithParam<storage_factory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Destroys the store and opens it again from its directory.
  void reopen();

  storage& store() { return *store_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<storage> store_;
};

}  // namespace opendsr::conformance
