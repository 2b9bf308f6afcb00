// Reuse of signatures over unchanged bytes.
//
// OpenDSR signatures are RSASSA-PKCS1-v1_5, which is deterministic: the same key and the same
// bytes always give the same signature. A status read of a request that has not changed renders
// the same bytes, so its signature (about 1 ms of CPU) can be looked up instead of computed.
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/signer.hpp>

#include <array>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace opendsr::detail {

// A bounded map from body bytes to their signature, evicting the oldest entry first. Entries are
// found by a fast hash and confirmed by comparing the whole body, so a hit is exact.
// Memory: at most `capacity` entries of the body plus about 400 bytes each.
// Thread safety: sign() may be called from any thread concurrently.
class signature_cache {
 public:
  // A capacity of 0 disables the cache: every call signs.
  explicit signature_cache(std::size_t capacity);

  // Returns the signature of body by `by`: a remembered one if these bytes were signed before.
  // REQUIRES: every call passes the same signer (the cache does not key on it).
  result<std::string> sign(const signer& by, std::string_view body);

 private:
  static constexpr std::size_t shard_count = 16;
  struct entry {
    std::string body;
    std::string signature;
  };
  struct shard {
    std::mutex mutex;
    std::unordered_multimap<std::size_t, entry> signatures;  // by std::hash of the body
    // Oldest first. Pointers to elements survive a rehash; iterators would not.
    std::deque<std::pair<std::size_t, const entry*>> order;
  };
  std::size_t per_shard_;
  std::array<shard, shard_count> shards_;
};

}  // namespace opendsr::detail
