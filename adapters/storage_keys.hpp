// Checks and helpers every storage adapter shares: the key limits of the storage contract and
// the start of a prefix scan.
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>

#include <string>
#include <string_view>

namespace opendsr::detail {

// Returns an errc::invalid_argument error unless key is 1 to storage::max_key_size bytes.
inline result<void> check_key(std::string_view key) {
  if (key.empty()) return error(errc::invalid_argument, "storage key is empty");
  if (key.size() > storage::max_key_size)
    return error(errc::invalid_argument, "storage key is " + std::to_string(key.size()) +
                                             " bytes; the limit is " +
                                             std::to_string(storage::max_key_size));
  return {};
}

// Returns an errc::invalid_argument error if the prefix or the start key of a scan is longer than
// storage::max_key_size (no stored key could match it; a longer one is a caller's bug).
inline result<void> check_scan_bounds(std::string_view prefix, std::string_view from) {
  for (std::string_view bound : {prefix, from}) {
    if (bound.size() > storage::max_key_size)
      return error(errc::invalid_argument, "storage scan bound is " + std::to_string(bound.size()) +
                                               " bytes; the limit is " +
                                               std::to_string(storage::max_key_size));
  }
  return {};
}

// The least key a scan of `prefix` from `from` may visit. Keys that start with a prefix form one
// contiguous run in bytewise order, so a scan seeks here and stops at the first key that does not
// start with the prefix.
inline std::string_view scan_start(std::string_view prefix, std::string_view from) noexcept {
  return from > prefix ? from : prefix;
}

}  // namespace opendsr::detail
