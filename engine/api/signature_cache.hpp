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

namespace opendsr::detail {

// A bounded map from SHA-256(body) to the signature of body, evicting the oldest entry first.
// Memory: at most `capacity` entries of about 400 bytes each.
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
  struct shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::string> signatures;  // digest bytes -> signature
    std::deque<std::string> order;                            // digests, oldest first
  };
  std::size_t per_shard_;
  std::array<shard, shard_count> shards_;
};

}  // namespace opendsr::detail
